//! How often an idle ally-master wakes up: it should not at all.
//!
//! A master with [`IDLE_APPS`] silent apps (`sleep`, ready at once) is left
//! alone, and its context switches — every thread's voluntary and
//! involuntary ones, from `/proc/PID/task/*/status` — are counted over
//! [`WINDOW`]. Each wake-up of the event loop is at least one voluntary
//! switch: a timer, a tick or a poll timeout would show here.

use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::harness::{Master, TestDir, config_toml};
use ally_tests::proc::wait_until_every;

use crate::footprint::{all_up, sleeper};
use crate::table::{Row, Section};

/// Apps of the idle master.
pub const IDLE_APPS: usize = 3;
/// How long the switches are counted.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Quiet time before counting: the master closes a finished control
/// connection after a linger of 1 s, and the last `ally-ctl list` that saw
/// the apps up is such a connection.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the apps may take to be up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle master's context switches per second.
pub fn measure() -> Section {
    eprintln!(
        "ally-bench: wake-ups of an idle ally-master over {:.0?}...",
        WINDOW
    );
    let dir = TestDir::new("bench_wakeups");
    let apps: Vec<_> = (0..IDLE_APPS).map(|n| sleeper(n, 0)).collect();
    let master = Master::start_with(bins(), &dir, &config_toml(&apps));
    let up = wait_until_every(Duration::from_millis(100), START_TIMEOUT, || {
        all_up(&master.list_json(), IDLE_APPS, 0)
    });
    assert!(up, "the idle apps were not up\n{}", master.log_tail());
    // Not a wait for a condition: the quiet time before counting.
    std::thread::sleep(SETTLE);
    let pid = master.pid();
    let before = switches(pid);
    std::thread::sleep(WINDOW);
    let after = switches(pid);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    drop(master);
    let n = after.saturating_sub(before);
    Section {
        rows: vec![Row(
            format!("ally-master wake-ups while idle ({IDLE_APPS} apps)"),
            format!(
                "{:.1}/s  ({n} context switches in {:.0?}, {threads} thread{})",
                n as f64 / WINDOW.as_secs_f64(),
                WINDOW,
                if threads == 1 { "" } else { "s" }
            ),
        )],
        notes: vec![format!(
            "wake-ups: voluntary + involuntary context switches of every thread of a master \
             with {IDLE_APPS} silent apps (`sleep`, ready = \"immediate\"), counted over {:.0?} \
             from /proc/PID/task/*/status, {:.0?} after the last control request; nothing was \
             sent to it meanwhile. 0 means the event loop slept throughout.",
            WINDOW, SETTLE
        )],
    }
}

/// Voluntary plus involuntary context switches of every thread of `pid`.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .map(|status| count_switches(&status))
        .sum()
}

/// `voluntary_ctxt_switches` plus `nonvoluntary_ctxt_switches` of one
/// `/proc/…/status`.
fn count_switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            matches!(
                key,
                "voluntary_ctxt_switches" | "nonvoluntary_ctxt_switches"
            )
            .then(|| value.trim().parse::<u64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_of_switches_are_counted() {
        let status = "Name:\tally-master\nvoluntary_ctxt_switches:\t42\n\
                      nonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(count_switches(status), 45);
        assert_eq!(count_switches("Name:\tx\n"), 0);
    }

    #[test]
    fn this_process_has_switched() {
        assert!(switches(std::process::id()) > 0);
    }
}
