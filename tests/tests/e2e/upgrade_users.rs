//! In-place upgrades and a second uid: an app that runs as another user
//! keeps its instance, channel, locks, cache and `Listen` across an
//! upgrade, and a master that is not root upgrades itself in place.

use std::process::Command;

use ally_tests::fixture::free_port;
use ally_tests::harness::AppConfig;
use ally_tests::script::write_script;
use ally_tests::state_suite::token;
use ally_tests::upgrading::setup::{Setup, WAIT, state_probe};
use ally_tests::upgrading::{Variant, variant};
use ally_tests::users::{USER, test_user};

/// The app that goes round the library's calls (`state-probe --rounds`);
/// `extra` adds config lines (`user = ...`).
fn rounds_app(dir: &std::path::Path, t: &str, extra: &[String]) -> AppConfig {
    let go = dir.join("go");
    let script = write_script(
        dir,
        "rounds",
        &format!(
            "exec '{}' --rounds {t} '{}' 127.0.0.1:{}\n",
            state_probe().display(),
            go.display(),
            free_port()
        ),
    );
    extra.iter().fold(
        AppConfig::new("rounds", &script).ready_timeout("20s"),
        |a, l| a.line(l),
    )
}

/// Marks the rounds from now on with `mark` and waits for five of them,
/// every one of whose calls worked.
fn rounds_go_on(setup: &Setup, mark: &str) {
    std::fs::write(setup.dir.path().join("go"), mark).unwrap();
    let first = setup.master.wait_for_log(&format!("ok after {mark}"), WAIT);
    let n: u64 = first
        .split("round ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no round number in {first}"));
    setup
        .master
        .wait_for_log(&format!("round {} ok after {mark}", n + 5), WAIT);
    assert!(
        !setup.master.log().contains("state-probe: FAILED"),
        "a round failed\n{}",
        setup.master.log_tail()
    );
}

/// The real uid of `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no Uid in /proc/{pid}/status"))
}

#[test]
fn an_app_of_another_user_keeps_its_instance_channel_locks_cache_and_listen_across_upgrades() {
    let Some((uid, _)) = test_user() else {
        return;
    };
    let t = token();
    let setup = Setup::start("upgrade_app_user", |dir| {
        vec![rounds_app(dir.path(), &t, &[format!("user = \"{USER}\"")])]
    });
    setup.verdict("rounds", 1, "round 3 ok");
    let before = setup.pids();
    let pid = u32::try_from(before[&("rounds".to_owned(), 1)]).unwrap();
    assert_eq!(uid_of(pid), uid, "the instance runs as {USER}");
    for (n, binary) in [variant(Variant::Other), setup.original.clone()]
        .iter()
        .enumerate()
    {
        setup.upgrade_to(binary);
        assert_eq!(
            setup.pids(),
            before,
            "the instance changed across upgrade {n}"
        );
        rounds_go_on(&setup, &format!("upgrade-{n}"));
    }
}

#[test]
fn a_master_that_is_not_root_upgrades_itself_in_place() {
    let Some((uid, gid)) = test_user() else {
        return;
    };
    if !Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no setpriv (util-linux) to run the master as {USER}");
        return;
    }
    let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={gid}"));
    let t = token();
    let setup = Setup::start_as(
        "upgrade_nonroot",
        &["setpriv", &reuid, &regid, "--clear-groups"],
        |dir| vec![rounds_app(dir.path(), &t, &[])],
    );
    assert_eq!(uid_of(setup.master.pid()), uid, "the master runs as {USER}");
    setup.verdict("rounds", 1, "round 3 ok");
    let before = setup.pids();
    for (n, binary) in [variant(Variant::Other), setup.original.clone()]
        .iter()
        .enumerate()
    {
        setup.upgrade_to(binary);
        assert_eq!(uid_of(setup.master.pid()), uid);
        assert_eq!(
            setup.pids(),
            before,
            "an instance changed across upgrade {n}"
        );
        rounds_go_on(&setup, &format!("upgrade-{n}"));
    }
}
