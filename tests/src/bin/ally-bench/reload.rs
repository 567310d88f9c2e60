//! What a reload costs: failed requests under load, and how long it takes.

use std::time::{Duration, Instant};

use ally_tests::fixture::{APP, Demo};
use ally_tests::load::{Load, LoadStats};
use ally_tests::proc::{alive, wait_until_every};

use crate::table::Row;

/// Connections of each load run.
pub const CONNECTIONS: usize = 32;
/// Reloads during each load run.
pub const LOAD_RELOADS: u64 = 20;
/// Reloads timed without load.
pub const TIMED_RELOADS: usize = 20;

/// Failed requests per reload while [`CONNECTIONS`] clients send requests,
/// with keep-alive or `Connection: close`: the row, and what the load saw.
pub fn load_run(keep_alive: bool) -> (Row, LoadStats) {
    let mode = if keep_alive {
        "keep-alive"
    } else {
        "Connection: close"
    };
    eprintln!("ally-bench: {LOAD_RELOADS} reloads under a {mode} load...");
    let demo = Demo::start("bench_load");
    // Paced as in the tests: unpaced, 32 connections of loopback traffic
    // keep two cores so busy that a new process can wait seconds for the
    // CPU, and the run measures that starvation instead of ally.
    let load = Load::start(demo.addr, CONNECTIONS, keep_alive);
    assert!(
        load.wait_for_ok(100, Duration::from_secs(20)),
        "the demo does not answer"
    );
    for _ in 0..LOAD_RELOADS {
        demo.master.reload_ok(APP);
    }
    let stats = load.stop();
    if stats.failures() > 0 {
        eprintln!("{stats}");
    }
    let row = Row(
        format!("failed requests per reload, {mode} ({CONNECTIONS} conns)"),
        format!(
            "{} / {LOAD_RELOADS} = {:.2}  ({} ok in {:.1?}, {:.0} req/s, {} failed connects, \
             {} instances)",
            stats.failed_requests,
            stats.failed_requests as f64 / LOAD_RELOADS as f64,
            stats.ok,
            stats.elapsed,
            stats.ok as f64 / stats.elapsed.as_secs_f64(),
            stats.failed_connects,
            stats.instances_seen.len()
        ),
    );
    (row, stats)
}

/// How long [`TIMED_RELOADS`] reloads of an idle demo take.
pub fn latency() -> Vec<Row> {
    eprintln!("ally-bench: timing {TIMED_RELOADS} reloads...");
    let demo = Demo::start("bench_latency");
    let master = &demo.master;
    let mut wait_only = Vec::new();
    let mut until_gone = Vec::new();
    for _ in 0..TIMED_RELOADS {
        let old = master.main_of(APP).expect("a main instance");
        let start = Instant::now();
        let out = master.reload_ok(APP);
        wait_only.push(out.elapsed);
        let gone = wait_until_every(Duration::from_micros(200), Duration::from_secs(30), || {
            !alive(old.pid)
        });
        assert!(gone, "old instance never exited");
        until_gone.push(start.elapsed());
    }
    vec![
        Row(
            "reload --wait (new instance main)".into(),
            median_max(&mut wait_only),
        ),
        Row(
            "reload start → old instance exited".into(),
            median_max(&mut until_gone),
        ),
    ]
}

/// `median M, max X` of `samples` (sorted in place).
pub fn median_max(samples: &mut [Duration]) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    format!("median {median:.1?}, max {max:.1?}")
}
