//! Instances' `NOTIFY_SOCKET`s against other local processes: names they
//! cannot guess and take first, and a flood that costs the master a few
//! log lines, not one a datagram, while `ally-ctl` keeps answering.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::script::Spawned;

use crate::trust::as_nobody;

const APP: &str = "web";
const T: Duration = Duration::from_secs(20);

/// What the master logs about datagrams from other processes.
const DROPPED: &str = "notify datagram(s) from other processes";

/// The Python service that says `READY=1` on its `NOTIFY_SOCKET`.
fn notify_ready() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/notify_ready.py")
}

fn notify_app() -> AppConfig {
    AppConfig::new(APP, &notify_ready())
        .ready_timeout("10s")
        .stop_timeout("10s")
        .line("ready = \"notify\"")
}

/// `NOTIFY_SOCKET` in the environment of process `pid`.
fn notify_socket_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read the environment");
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(b"NOTIFY_SOCKET="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("the instance has a NOTIFY_SOCKET")
}

/// `impostor ARGS...`, as `nobody` when the test can switch users.
fn impostor(args: &[&str]) -> Spawned {
    let mut cmd = match as_nobody(None) {
        Some(nobody) => {
            let mut cmd = Command::new(&nobody[0]);
            cmd.args(&nobody[1..]).arg(&bins().impostor);
            cmd
        }
        None => Command::new(&bins().impostor),
    };
    cmd.args(args);
    Spawned::with_stdout_lines(cmd)
}

#[test]
fn notify_names_bound_first_by_another_user_do_not_stop_an_app() {
    let dir = TestDir::new("notify_squat");
    let app = notify_app().line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    // The names the old scheme would give the next instances, and some
    // guesses at the new one.
    let mut names: Vec<String> = (1..=8)
        .map(|id| format!("ally-notify/{}/{APP}/{id}", master.pid()))
        .collect();
    names.extend((1..=8).map(|id| format!("ally-notify/{APP}/{id}/{:032x}", id)));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let squatter = impostor(&[&["squat"][..], &refs].concat());
    let (line, _) = squatter.wait_line("squatting", T);
    assert!(line.is_some(), "the squatter did not bind its names");

    master.ctl_expect(&["start", APP, "--timeout", "20"], 0);
    let first = master.wait_main(APP, Some(1), T);
    for _ in 0..2 {
        master.reload_ok(APP);
    }
    let main = master.wait_main(APP, Some(first.id + 2), T);
    let address = notify_socket_of(main.pid);
    let random = address
        .strip_prefix(&format!("@ally-notify/{APP}/{}/", main.id))
        .unwrap_or_else(|| panic!("unexpected NOTIFY_SOCKET {address:?}"));
    assert!(
        random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "NOTIFY_SOCKET {address:?} does not end in 128 random bits"
    );
    let status = &master.instances(APP)[0]["text"];
    assert_eq!(status, "serving", "{}", master.log_tail());
}

#[test]
fn a_notify_flood_from_another_process_costs_a_few_log_lines() {
    const DATAGRAMS: u64 = 50_000;
    let dir = TestDir::new("notify_flood");
    let master = Master::start_with(bins(), &dir, &config_toml(&[notify_app()]));
    let main = master.wait_main(APP, Some(1), T);
    let address = notify_socket_of(main.pid);
    let name = address.strip_prefix('@').expect("an abstract address");
    let lines_before = master.log().lines().count();

    let started = Instant::now();
    let mut flood = impostor(&["flood", name, &DATAGRAMS.to_string()]);
    let mut slowest = Duration::ZERO;
    let mut lists = 0;
    while flood.running() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the flood did not end within 120 s\n{}",
            master.log_tail()
        );
        let out = master.ctl(&["list", "--json"]);
        master.assert_exit(&out, 0);
        slowest = slowest.max(out.elapsed);
        lists += 1;
    }
    let flooded = started.elapsed();
    let (line, _) = flood.wait_line("sent", T);
    let sent: u64 = line
        .as_deref()
        .and_then(|l| l.strip_prefix("sent "))
        .and_then(|n| n.parse().ok())
        .expect("the flood says how many it sent");
    assert_eq!(sent, DATAGRAMS, "some datagrams did not go out");
    eprintln!(
        "flood of {sent} datagrams took {flooded:?}; {lists} `list`s meanwhile, \
         the slowest {slowest:?}"
    );
    assert!(lists > 0, "the flood ended before `list` could be asked");
    assert!(
        slowest < Duration::from_secs(2),
        "`list` took {slowest:?} during the flood"
    );

    // Every dropped datagram is counted; the last count comes on a timer,
    // within one report interval (10 s) of the one before.
    let mut reported = 0;
    let mut reports = Vec::new();
    wait_until(Duration::from_secs(15), || {
        let log = master.log();
        reports = log
            .lines()
            .skip(lines_before)
            .filter(|l| l.contains(DROPPED))
            .map(str::to_owned)
            .collect();
        reported = reports
            .iter()
            .filter_map(|l| {
                l.split(": dropped ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        reported == sent
    });
    // The master's own lines (not the instance's output, `[web#1] ...`).
    let new_lines = master
        .log()
        .lines()
        .skip(lines_before)
        .filter(|l| l.contains("ally-master: "))
        .count();
    eprintln!(
        "master log: {new_lines} new line(s), {} about the flood",
        reports.len()
    );
    let allowed = 2 + flooded.as_secs() / 10;
    assert!(
        new_lines as u64 <= allowed,
        "the flood made the master log {new_lines} lines, at most {allowed} expected\n{}",
        master.log_tail()
    );
    assert_eq!(reported, sent, "{reports:#?}\n{}", master.log_tail());
    // The instance still counts as what it was; its own pid was never
    // forged.
    assert_eq!(master.main_of(APP), Some(main));
}
