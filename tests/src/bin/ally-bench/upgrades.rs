//! What upgrading the master in place costs, beside what a reload of an
//! app costs, in the same run: [`ROUNDS`] of each on the demo under a
//! keep-alive load of [`CONNECTIONS`] connections. Two figures each: how
//! long from the request until the master answers control again (for an
//! upgrade, the new master; for a reload, with the new instance main), and
//! the longest a request of the load waited meanwhile. The load's requests
//! never pass through the master, so an upgrade should not be seen by them
//! at all.

use std::time::{Duration, Instant};

use ally_tests::fixture::{APP, Demo};
use ally_tests::harness::Master;
use ally_tests::load::{Load, LoadStats};
use ally_tests::proc::wait_until_every;

use crate::reload::{CONNECTIONS, median_max};
use crate::table::{Row, Section, ratio};

/// Upgrades, and reloads, timed under the load.
pub const ROUNDS: usize = 10;

/// What is done to the master in each round.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// `ally-ctl upgrade --wait`: the master re-executes its binary.
    Upgrade,
    /// `ally-ctl reload web --wait`: a new instance of the app.
    Reload,
}

impl Change {
    fn apply(self, master: &Master) {
        match self {
            Change::Upgrade => {
                drop(master.ctl_expect(&["upgrade", "--wait", "--timeout", "30"], 0))
            }
            Change::Reload => drop(master.reload_ok(APP)),
        }
    }
}

/// Master upgrades beside app reloads.
pub fn measure() -> Section {
    eprintln!("ally-bench: {ROUNDS} master upgrades, then {ROUNDS} reloads, under load...");
    let (mut upgrades, upgrade_load) = rounds(Change::Upgrade);
    let (mut reloads, reload_load) = rounds(Change::Reload);
    let median = |s: &mut [Duration]| {
        s.sort();
        s[s.len() / 2].as_secs_f64()
    };
    let times = ratio(median(&mut upgrades) / median(&mut reloads));
    let waits =
        ratio(upgrade_load.max_latency.as_secs_f64() / reload_load.max_latency.as_secs_f64());
    let failed = |s: &LoadStats| {
        format!(
            "{} failed requests, {} failed connects",
            s.failed_requests, s.failed_connects
        )
    };
    Section {
        rows: vec![
            Row(
                "master upgrade → new master answers control".into(),
                format!("{}  ({times} a reload's)", median_max(&mut upgrades)),
            ),
            Row(
                "reload --wait → master answers control".into(),
                median_max(&mut reloads),
            ),
            Row(
                format!("longest request during {ROUNDS} upgrades ({CONNECTIONS} keep-alive)"),
                format!(
                    "{:.1?}  ({waits} during reloads; {})",
                    upgrade_load.max_latency,
                    failed(&upgrade_load)
                ),
            ),
            Row(
                format!("longest request during {ROUNDS} reloads ({CONNECTIONS} keep-alive)"),
                format!(
                    "{:.1?}  ({})",
                    reload_load.max_latency,
                    failed(&reload_load)
                ),
            ),
        ],
        notes: vec![format!(
            "upgrade: `ally-ctl upgrade --wait` of the master running the demo (the same binary \
             re-executed in place), timed until `ally-ctl list` answers; reload: `reload --wait` \
             of the demo, timed the same way; {ROUNDS} of each in a row under a keep-alive load \
             of {CONNECTIONS} connections, whose slowest request is shown."
        )],
    }
}

/// [`ROUNDS`] of `change` on a fresh demo under load: how long each took
/// until the master answered `list`, and what the load saw.
fn rounds(change: Change) -> (Vec<Duration>, LoadStats) {
    let demo = Demo::start("bench_upgrades");
    let master = &demo.master;
    let load = Load::start(demo.addr, CONNECTIONS, true);
    assert!(
        load.wait_for_ok(100, Duration::from_secs(20)),
        "the demo does not answer"
    );
    let mut took = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        change.apply(master);
        let answers = wait_until_every(Duration::from_micros(200), Duration::from_secs(30), || {
            master.ctl(&["list", "--json"]).code() == Some(0)
        });
        assert!(answers, "the master does not answer after {change:?}");
        took.push(start.elapsed());
    }
    let stats = load.stop();
    if stats.failures() > 0 {
        eprintln!("{change:?}: {stats}");
    }
    (took, stats)
}
