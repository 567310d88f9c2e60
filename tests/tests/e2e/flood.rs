//! Output floods and stuck readers cannot stall the master: an app running
//! `yes` gets its share of the loop and no more, a stderr nobody reads
//! loses lines (counted, marked) instead of the loop, and one connection
//! following a log twice gets each line once.
//!
//! `ALLY_E2E_MASTER=/path/to/ally-master` (and `ALLY_E2E_CTL`, for a
//! build whose protocol differs) runs these against another build of the
//! master, to see them fail without the fixes they guard.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ally_proto::frame;
use ally_proto::{ControlRequest, ControlResponse};
use ally_tests::bins::{Bins, bins};
use ally_tests::cmd::run;
use ally_tests::control::welcomed;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::script::{NEVER_READY, START_LINES, signal_script, write_script};
use ally_tests::vitals::rss_kib;

/// Longest an `ally-ctl list` may take (process start included) while two
/// apps flood their output. A master starved by the floods never answers
/// while they last (they never end), so the bound tells starvation from a
/// busy machine; the typical figure is printed, and `make bench` measures
/// it.
const LIST_LATENCY: Duration = Duration::from_secs(3);

/// Most resident memory the master may use meanwhile.
const MAX_RSS_KIB: u64 = 32 << 10;

/// How long the flood runs.
const FLOOD: Duration = Duration::from_secs(10);

/// The stop timeout of every app here; SIGTERM must end the master within
/// it, plus a margin for the master's own exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

const T: Duration = Duration::from_secs(20);

/// The binaries, with the master and ally-ctl replaced by
/// `ALLY_E2E_MASTER` and `ALLY_E2E_CTL` if set.
fn bins_under_test() -> Bins {
    let mut bins = bins().clone();
    if let Some(master) = std::env::var_os("ALLY_E2E_MASTER") {
        bins.master = master.into();
    }
    if let Some(ctl) = std::env::var_os("ALLY_E2E_CTL") {
        bins.ctl = ctl.into();
    }
    bins
}

/// An app that says one line, sleeps and is ready at once: reloads of it
/// succeed.
fn quiet_app(dir: &TestDir) -> AppConfig {
    let script = write_script(dir.path(), "quiet", "echo quiet up\nexec sleep 3600\n");
    AppConfig::new("quiet", &script)
        .line("ready = \"immediate\"")
        .stop_timeout("3s")
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// `ally-ctl list`, timed, with a bound well above [`LIST_LATENCY`] so a
/// stalled master fails the test instead of hanging it.
fn timed_list(master: &Master, ctl: &Path) -> Duration {
    let mut cmd = Command::new(ctl);
    cmd.arg("--socket").arg(master.socket()).arg("list");
    let out = run(&mut cmd, Duration::from_secs(5));
    master.assert_exit(&out, 0);
    out.elapsed
}

#[test]
fn two_yes_floods_leave_the_master_answering_small_and_stoppable() {
    let yes = Path::new("/usr/bin/yes");
    assert!(yes.exists(), "this test needs {}", yes.display());
    let dir = TestDir::new("yes_flood");
    let logs: Vec<_> = ["yes1", "yes2"]
        .iter()
        .map(|name| dir.path().join(format!("{name}.log")))
        .collect();
    let mut apps: Vec<AppConfig> = ["yes1", "yes2"]
        .iter()
        .zip(&logs)
        .map(|(name, log)| {
            // Niced: two busy loops on a two-core machine would otherwise
            // measure how the kernel shares the cores with the test and
            // ally-ctl, not the master's loop. They still flood at full
            // speed whenever a core is free.
            let mut app = AppConfig::new(name, Path::new("/usr/bin/nice"))
                .ready_timeout(NEVER_READY)
                .stop_timeout("3s")
                .log(Some(&log.to_string_lossy()));
            app.command.extend(
                ["-n", "19"]
                    .map(String::from)
                    .into_iter()
                    .chain([yes.display().to_string()]),
            );
            app
        })
        .collect();
    apps.push(quiet_app(&dir));
    let bins = bins_under_test();
    let mut master = Master::start_with(&bins, &dir, &config_toml(&apps));
    master.wait_main("quiet", None, T);
    // Both floods have begun.
    assert!(
        wait_until(T, || logs.iter().all(|l| file_size(l) > 0)),
        "the yes apps' logs stay empty\n{}",
        master.log_tail()
    );
    let sizes_before: Vec<u64> = logs.iter().map(|l| file_size(l)).collect();
    let started = Instant::now();
    let (mut slowest, mut lists, mut max_rss) = (Duration::ZERO, 0, 0);
    let mut reloaded = false;
    while started.elapsed() < FLOOD {
        let took = timed_list(&master, &bins.ctl);
        lists += 1;
        slowest = slowest.max(took);
        max_rss = max_rss.max(rss_kib(master.pid()));
        assert!(
            took < LIST_LATENCY,
            "`ally-ctl list` took {took:?} under the flood\n{}",
            master.log_tail()
        );
        assert!(
            max_rss < MAX_RSS_KIB,
            "the master grew to {max_rss} KiB under the flood"
        );
        if !reloaded && started.elapsed() > FLOOD / 2 {
            master.reload_ok("quiet");
            // The quiet app's output gets through the flood too.
            master.wait_for_log("[quiet#2] quiet up", T);
            reloaded = true;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let sizes_after: Vec<u64> = logs.iter().map(|l| file_size(l)).collect();
    for ((log, before), after) in logs.iter().zip(&sizes_before).zip(&sizes_after) {
        assert!(
            after > before,
            "{} did not grow during the flood ({before} → {after} bytes)",
            log.display()
        );
    }
    let written: u64 = sizes_after
        .iter()
        .zip(&sizes_before)
        .map(|(a, b)| a - b)
        .sum();
    eprintln!(
        "yes flood: {lists} lists, slowest {slowest:?}; master RSS at most {max_rss} KiB; \
         logs grew {:.1} MB/s together",
        written as f64 / secs / 1e6
    );
    assert!(master.main_of("quiet").is_some_and(|m| m.id >= 2));
    let status = master.terminate(STOP_TIMEOUT + Duration::from_secs(5));
    assert!(status.success(), "the master exited with {status}");
}

#[test]
fn a_stderr_nobody_reads_loses_lines_not_the_master() {
    let dir = TestDir::new("stderr_held");
    let steady = write_script(
        dir.path(),
        "steady",
        "i=0\nwhile :; do i=$((i+1)); echo \"steady line $i\"; done\n",
    );
    let apps = [
        AppConfig::new("steady", &steady)
            .line("ready = \"immediate\"")
            .stop_timeout("3s"),
        quiet_app(&dir),
    ];
    let bins = bins_under_test();
    let (mut master, mut gate) = Master::start_with_stderr_held(&bins, &dir, &config_toml(&apps));
    // The pipe and the master's queue fill up: lines are being dropped.
    let mut dropped = 0;
    let filled = wait_until(T, || {
        dropped = master.app("steady")["dropped_lines"].as_u64().unwrap_or(0);
        dropped > 0
    });
    assert!(filled, "no line of steady was dropped within {T:?}");
    // The master still serves: lists answer, a reload completes.
    let slowest = (0..20)
        .map(|_| timed_list(&master, &bins.ctl))
        .max()
        .unwrap_or_default();
    assert!(slowest < LIST_LATENCY, "a list took {slowest:?}");
    master.reload_ok("quiet");
    master.reload_ok("steady");
    let status = master.ctl_expect(&["status", "steady"], 0);
    master.assert_output(
        &status,
        status.stdout.contains("\ndropped     ") && !status.stdout.contains("\ndropped     0\n"),
        "status shows the dropped lines",
    );
    eprintln!("stderr held: {dropped}+ lines dropped, slowest list {slowest:?}");
    // Once stderr is read again, the loss is marked there.
    gate.release();
    let marker = master.wait_for_log("dropped: log sink too slow", T);
    assert!(
        marker.contains("ally: ") && marker.contains(" lines of "),
        "{marker}"
    );
    let status = master.terminate(STOP_TIMEOUT + Duration::from_secs(5));
    assert!(status.success(), "the master exited with {status}");
}

#[test]
fn a_master_whose_stderr_nobody_reads_still_exits_on_sigterm() {
    let dir = TestDir::new("stderr_held_exit");
    let steady = write_script(
        dir.path(),
        "steady",
        "i=0\nwhile :; do i=$((i+1)); echo \"steady line $i\"; done\n",
    );
    let app = AppConfig::new("steady", &steady)
        .line("ready = \"immediate\"")
        .stop_timeout("3s");
    let bins = bins_under_test();
    let (mut master, _gate) = Master::start_with_stderr_held(&bins, &dir, &config_toml(&[app]));
    let filled = wait_until(T, || {
        master.app("steady")["dropped_lines"]
            .as_u64()
            .is_some_and(|n| n > 0)
    });
    assert!(filled, "no line of steady was dropped within {T:?}");
    // Its last lines cannot be written; it waits for them a moment only.
    let started = Instant::now();
    let status = master.terminate(STOP_TIMEOUT + Duration::from_secs(5));
    assert!(status.success(), "the master exited with {status}");
    eprintln!("stderr held: exited {:?} after SIGTERM", started.elapsed());
}

/// Reads log lines from `s` until one contains `pattern`; returns every
/// line read.
fn lines_until(s: &UnixStream, pattern: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match frame::read_from::<_, ControlResponse>(s) {
            Ok(ControlResponse::LogLines(lines)) => {
                let done = lines.iter().any(|l| l.contains(pattern));
                seen.extend(lines);
                if done {
                    return seen;
                }
            }
            other => panic!("waiting for {pattern:?} after {seen:?}: {other:?}"),
        }
    }
}

#[test]
fn following_twice_on_one_connection_sends_each_line_once() {
    let dir = TestDir::new("follow_twice");
    let script = signal_script(dir.path(), "talk");
    let app = AppConfig::new("talk", &script).ready_timeout(NEVER_READY);
    let master = Master::start_with(&bins_under_test(), &dir, &config_toml(&[app]));
    master.wait_for_log(&format!("[talk#1] start line {START_LINES}"), T);
    let s = welcomed(&master);
    for _ in 0..2 {
        let follow = ControlRequest::Logs {
            app: "talk".into(),
            lines: 1,
            follow: true,
        };
        frame::write_to(&s, &follow).expect("send logs -f");
        match frame::read_from::<_, ControlResponse>(&s) {
            Ok(ControlResponse::LogLines(lines)) => assert_eq!(lines.len(), 1, "{lines:?}"),
            other => panic!("expected the tail: {other:?}"),
        }
    }
    // One signal at a time: two sent at once may arrive as one.
    master.ctl_expect(&["kill", "talk", "--signal", "USR1"], 0);
    master.wait_for_log("[talk#1] usr1 1", T);
    master.ctl_expect(&["kill", "talk", "--signal", "USR1"], 0);
    // Every copy of `usr1 1` arrives before `usr1 2` does.
    let seen = lines_until(&s, "usr1 2");
    let ones = seen.iter().filter(|l| l.ends_with("usr1 1")).count();
    let twos = seen.iter().filter(|l| l.ends_with("usr1 2")).count();
    assert_eq!((ones, twos), (1, 1), "{seen:?}");
    // And nothing more comes for them.
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    if let Ok(ControlResponse::LogLines(more)) = frame::read_from::<_, ControlResponse>(&s) {
        assert!(more.iter().all(|l| !l.contains("usr1")), "{more:?}");
    }
}
