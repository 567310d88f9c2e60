//! In-place upgrades under abuse: a burst of SIGUSR2 leaves one master,
//! no leaked descriptor and no zombie, the extra signals joined to the
//! upgrade under way and logged once each upgrade, not once each signal.

use ally_tests::bins::bins;
use ally_tests::fixture::ANY_PORT;
use ally_tests::harness::AppConfig;
use ally_tests::proc::{signal, wait_until};
use ally_tests::service::Service;
use ally_tests::upgrading::setup::{Setup, WAIT};
use rustix::process::Signal;

/// SIGUSR2 sent in the burst.
const BURST: usize = 100;

/// How many descriptors `pid` holds.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The children of `pid` that are zombies.
fn zombies(pid: u32) -> Vec<String> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
            })
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_burst_of_sigusr2_upgrades_without_leaks_zombies_or_a_log_flood() {
    let setup = Setup::start("upgrade_burst", |dir| {
        let web = Service::new(dir.path(), "web", &bins().demo, &ANY_PORT);
        let app = AppConfig::new("web", web.path()).ready_timeout("10s");
        drop(web);
        vec![app]
    });
    let master = &setup.master;
    master.wait_main("web", Some(1), WAIT);
    let pid = master.pid();
    let pids = setup.pids();
    let before = fd_count(pid);
    for _ in 0..BURST {
        signal(pid, Signal::USR2).expect("SIGUSR2");
    }
    master.wait_for_log("upgraded in place", WAIT);
    // Settled: answering, every carried descriptor and no more.
    assert_eq!(setup.pids(), pids);
    assert!(
        wait_until(WAIT, || fd_count(pid) <= before),
        "{} descriptors after the burst, {before} before\n{}",
        fd_count(pid),
        master.log_tail()
    );
    assert!(
        wait_until(WAIT, || zombies(pid).is_empty()),
        "zombies: {:?}",
        zombies(pid)
    );
    setup.assert_same_process_resumed();
    let log = master.log();
    let upgrades = log.matches("upgraded in place").count();
    let signal_lines = log.matches("SIGUSR2").count();
    eprintln!("{BURST} SIGUSR2: {upgrades} upgrade(s), {signal_lines} line(s) about the signal");
    assert!(upgrades >= 1);
    assert!(
        signal_lines <= 2 * upgrades,
        "the signals flooded the log: {signal_lines} lines for {upgrades} upgrade(s)\n{}",
        master.log_tail()
    );
}
