//! In-place upgrades under abuse: a burst of SIGUSR2 leaves one master,
//! no leaked descriptor and no zombie, the extra signals joined to the
//! upgrade under way and logged once each upgrade, not once each signal;
//! and a master started through a symlink follows it when it is swapped
//! to another build.

use ally_tests::bins::bins;
use ally_tests::fixture::ANY_PORT;
use ally_tests::harness::AppConfig;
use ally_tests::proc::{signal, wait_until};
use ally_tests::script::write_script;
use ally_tests::service::Service;
use ally_tests::upgrading::setup::{Setup, WAIT, version_of};
use ally_tests::upgrading::{OTHER_VERSION, Variant, install, install_text, variant};
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

#[test]
fn a_master_started_through_a_symlink_follows_it_to_another_build() {
    let setup = Setup::start_through_symlink("upgrade_symlink", |dir| {
        let idle = write_script(dir.path(), "idle", "exec sleep 1000\n");
        vec![AppConfig::new("idle", &idle).line("ready = \"immediate\"")]
    });
    let original = version_of(&setup.original);
    assert_eq!(setup.running_version(), original);
    // The build the symlink is swapped to, beside the first.
    let other = setup.binary.with_file_name("ally-master-other");
    install(&variant(Variant::Other), &other, 0o755);
    for (to, expected) in [
        (&other, OTHER_VERSION),
        (&setup.original, original.as_str()),
    ] {
        let link = setup.binary.with_extension("link");
        std::os::unix::fs::symlink(to, &link).unwrap();
        std::fs::rename(&link, &setup.binary).unwrap();
        let out = setup.upgrade();
        setup.master.assert_exit(&out, 0);
        assert_eq!(
            setup.running_version(),
            expected,
            "after the symlink went to {}",
            to.display()
        );
        setup.assert_same_process_resumed();
    }
}

/// The master executes, as its own user, whatever is at its path when an
/// upgrade is asked, and members of `[master] group` may ask: so it
/// refuses a binary that a user other than root and its own could have
/// put there (the file, or a directory on its way, writable by others),
/// and serves on; the same binary made safe again is taken.
#[test]
fn an_upgrade_refuses_a_binary_that_another_user_could_have_replaced() {
    use std::os::unix::fs::PermissionsExt;

    let setup = Setup::start("upgrade_untrusted", |dir| {
        let web = Service::new(dir.path(), "web", &bins().demo, &ANY_PORT);
        let app = AppConfig::new("web", web.path()).ready_timeout("10s");
        drop(web);
        vec![app]
    });
    let master = &setup.master;
    master.wait_main("web", Some(1), WAIT);
    let pids = setup.pids();
    let bin_dir = setup
        .binary
        .parent()
        .expect("the binary's directory")
        .to_owned();
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    };
    let cases: [(&str, &std::path::Path, u32); 3] = [
        ("a world-writable binary", &setup.binary, 0o757),
        ("a group-writable binary", &setup.binary, 0o775),
        ("a world-writable directory", &bin_dir, 0o777),
    ];
    for (what, path, mode) in cases {
        chmod(path, mode);
        let out = setup.upgrade();
        master.assert_exit(&out, 1);
        master.assert_output(
            &out,
            out.stderr.contains("writable by users other than") && out.stderr.contains("serves on"),
            &format!("{what}: the cause"),
        );
        chmod(path, 0o755);
    }
    assert_eq!(setup.pids(), pids);
    let out = setup.upgrade();
    master.assert_exit(&out, 0);
    setup.assert_same_process_resumed();
}

/// SIGTERM while the new binary is being probed: the master shuts down
/// as asked, and the `upgrade --wait` waiting tells so (refused, exit 4),
/// rather than losing its answer or claiming the old master serves on.
#[test]
fn a_shutdown_during_an_upgrade_answers_its_waiter() {
    let mut setup = Setup::start("upgrade_shutdown", |dir| {
        let web = Service::new(dir.path(), "web", &bins().demo, &ANY_PORT);
        let app = AppConfig::new("web", web.path()).ready_timeout("10s");
        drop(web);
        vec![app]
    });
    setup.master.wait_main("web", Some(1), WAIT);
    install_text("#!/bin/sh\nexec sleep 30\n", &setup.binary, 0o755);
    let waiter = std::process::Command::new(&bins().ctl)
        .arg("--socket")
        .arg(setup.master.socket())
        .args(["upgrade", "--wait", "--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ally-ctl upgrade --wait");
    setup.master.wait_for_log("against the state", WAIT);
    let status = setup.master.terminate(WAIT);
    assert!(status.success(), "{status:?}\n{}", setup.master.log_tail());
    let out = waiter.wait_with_output().expect("ally-ctl's outcome");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(!stderr.contains("serves on"), "{stderr}");
    assert!(
        !setup.master.log().contains("serves on"),
        "{}",
        setup.master.log_tail()
    );
}
