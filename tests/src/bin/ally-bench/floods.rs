//! What apps that flood their output cost everyone else, and how fast one
//! app's output reaches its log file.
//!
//! - Control latency: [`LISTS`] `ally-ctl list` calls (p50, p99, max) on a
//!   master whose [`APPS`] apps run `yes` into their log files, beside the
//!   same on a master whose [`APPS`] apps are silent (`sleep`). Each call
//!   is a whole `ally-ctl` process, connect to exit.
//! - Log throughput: one app writes [`STREAM_BYTES`] of short lines as fast
//!   as it can, and the master turns them into its log file; MB/s of the
//!   app's output, beside `cat` of the same stream into a file, in the
//!   same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until_every;

use crate::footprint::{all_up, sleeper};
use crate::table::{Row, Section, ratio};

/// Apps of each master in the latency runs.
pub const APPS: usize = 3;
/// `ally-ctl list` calls timed per run.
pub const LISTS: usize = 200;
/// Bytes of output the throughput run's app writes.
pub const STREAM_BYTES: u64 = 64 << 20;
/// The line the throughput app repeats (with its newline, 64 bytes).
const LINE: &str = "ally-bench log line: the quick brown fox jumps over the lazy do";
/// How long the apps may take to be up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the log file may take to hold the whole stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Both measurements.
pub fn measure() -> Section {
    eprintln!("ally-bench: ally-ctl list with {APPS} apps flooding their output, then silent...");
    let flooding = list_latency(true);
    let silent = list_latency(false);
    eprintln!("ally-bench: log throughput of one app, beside cat...");
    let (ally, dropped) = log_throughput();
    let cat = cat_throughput();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let show = |l: &Latency| format!("p50 {}, p99 {}, max {}", ms(l.p50), ms(l.p99), ms(l.max));
    Section {
        rows: vec![
            Row(
                format!("ally-ctl list, {APPS} apps flooding (yes)"),
                format!(
                    "{} = {} the silent p50",
                    show(&flooding),
                    ratio(flooding.p50.as_secs_f64() / silent.p50.as_secs_f64())
                ),
            ),
            Row(format!("ally-ctl list, {APPS} silent apps"), show(&silent)),
            Row(
                "log throughput, one app to its file".into(),
                format!(
                    "{ally:.0} MB/s = {} cat's {cat:.0} MB/s ({dropped} lines dropped)",
                    ratio(ally / cat)
                ),
            ),
        ],
        notes: vec![
            format!(
                "ally-ctl list: {LISTS} calls, each a whole ally-ctl process, on a master with \
                 {APPS} apps running `yes` (log files of their own) and on one with {APPS} \
                 `sleep` apps."
            ),
            format!(
                "log throughput: {} MiB of {}-byte lines written by one app (`yes | head -c`), \
                 until its log file holds every line (each with the master's time, instance \
                 and stream prefix), against `cat` of the same stream into a file.",
                STREAM_BYTES >> 20,
                LINE.len() + 1
            ),
        ],
    }
}

#[derive(Debug)]
struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `list` latency on a master with [`APPS`] apps, flooding or silent.
fn list_latency(flooding: bool) -> Latency {
    let dir = TestDir::new(if flooding {
        "bench_flood"
    } else {
        "bench_quiet"
    });
    let apps: Vec<AppConfig> = (0..APPS)
        .map(|n| {
            if flooding {
                let log = dir.path().join(format!("yes{n}.log"));
                shell(&format!("yes{n}"), "exec yes").log(Some(&log.to_string_lossy()))
            } else {
                sleeper(n, 0)
            }
        })
        .collect();
    let master = Master::start_with(bins(), &dir, &config_toml(&apps));
    let up = wait_until_every(Duration::from_millis(100), START_TIMEOUT, || {
        all_up(&master.list_json(), APPS, 0)
    });
    assert!(up, "the apps were not up\n{}", master.log_tail());
    let mut times: Vec<Duration> = (0..LISTS)
        .map(|_| {
            let asked = Instant::now();
            master.assert_exit(&master.ctl(&["list"]), 0);
            asked.elapsed()
        })
        .collect();
    times.sort();
    Latency {
        p50: times[LISTS / 2],
        p99: times[LISTS * 99 / 100],
        max: times[LISTS - 1],
    }
}

/// An app running `script` with `sh -c`, ready at once.
fn shell(name: &str, script: &str) -> AppConfig {
    let mut app = AppConfig::new(name, "sh".as_ref())
        .line("ready = \"immediate\"")
        .stop_signal("SIGTERM");
    app.command.extend(["-c".to_owned(), script.to_owned()]);
    app
}

/// The shell pipeline that writes the stream.
fn stream() -> String {
    format!("yes '{LINE}' | head -c {STREAM_BYTES}")
}

/// MB/s of one app's output into its log file, and the lines the master
/// dropped on the way (its sink too slow).
fn log_throughput() -> (f64, u64) {
    let dir = TestDir::new("bench_log_throughput");
    let log = dir.path().join("stream.log");
    let app = shell("stream", &format!("{}; exec sleep infinity", stream()))
        .log(Some(&log.to_string_lossy()));
    let started = Instant::now();
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let lines = STREAM_BYTES / (LINE.len() as u64 + 1);
    let whole = wait_until_every(Duration::from_millis(20), STREAM_TIMEOUT, || {
        line_count(&log) + dropped(&master) >= lines
    });
    let elapsed = started.elapsed();
    assert!(
        whole,
        "the log never held the stream\n{}",
        master.log_tail()
    );
    let dropped = dropped(&master);
    (STREAM_BYTES as f64 / 1e6 / elapsed.as_secs_f64(), dropped)
}

/// MB/s of the same stream through `cat` into a file.
fn cat_throughput() -> f64 {
    let dir = TestDir::new("bench_cat_throughput");
    let out = dir.path().join("stream.out");
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{} | cat > '{}'", stream(), out.display()))
        .status()
        .expect("run sh");
    let elapsed = started.elapsed();
    assert!(status.success(), "the cat baseline failed: {status}");
    STREAM_BYTES as f64 / 1e6 / elapsed.as_secs_f64()
}

/// Lines in `path`, counted by its size: every line has the length of
/// the first.
fn line_count(path: &Path) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
    let Some(first) = head[..n].iter().position(|&b| b == b'\n') else {
        return 0;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    len / (first as u64 + 1)
}

/// Lines of the app the master dropped, from `list --json`.
fn dropped(master: &Master) -> u64 {
    master.app("stream")["dropped_lines"].as_u64().unwrap_or(0)
}
