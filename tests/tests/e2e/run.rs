//! `ally-master run -- CMD ...`: a master for one app from flags, with no
//! config file, controlled by ally-ctl like any other; reloads under load
//! lose nothing; an in-place upgrade carries it; `reread` says there is no
//! file; SIGINT (Ctrl-C) stops it gracefully and it exits 0 once the
//! instance has drained.

use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::{START_TIMEOUT, listening_addr};
use ally_tests::harness::{Master, TestDir};
use ally_tests::reloading::assert_reloads_lose_nothing;

const RELOADS: u64 = 5;
const CONNECTIONS: usize = 16;

#[test]
fn run_serves_reloads_under_load_without_a_failure_and_stops_on_sigint() {
    let dir = TestDir::new("run");
    let demo = bins().demo.to_string_lossy().into_owned();
    let mut master = Master::start_run(
        bins(),
        &dir,
        "web",
        &[
            "--name",
            "web",
            "--ready-timeout",
            "10s",
            "--stop-timeout",
            "10s",
            "--",
            &demo,
            "--addr",
            "127.0.0.1:0",
        ],
    );
    let first = master.wait_main("web", Some(1), START_TIMEOUT);
    let addr = listening_addr(&master, first.id);
    // Its output goes to the terminal: the master's own stderr.
    master.wait_for_log("[web#1] demo: instance 1", Duration::from_secs(5));

    assert_reloads_lose_nothing(&master, "web", addr, first.id, RELOADS, CONNECTIONS, true);

    // An in-place upgrade carries it, flags and all: still no file after.
    let out = master.ctl(&["upgrade", "--wait", "--timeout", "60"]);
    master.assert_exit(&out, 0);
    let out = master.ctl(&["reread"]);
    master.assert_exit(&out, 4);
    master.assert_output(
        &out,
        out.stderr.contains("no config file to reread"),
        "reread says there is no file",
    );
    let doc = master.ctl_expect(&["status", "web", "--json"], 0);
    master.assert_output(
        &doc,
        doc.stdout.contains(r#""log":"\"inherit\"""#),
        "the app logs to the terminal",
    );

    let last = master.wait_main("web", Some(first.id + RELOADS), START_TIMEOUT);
    let status = master.interrupt(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status}\n{}", master.log_tail());
    let log = master.log();
    let drained = format!(
        "instance {} pid {} exiting: all connections closed",
        last.id, last.pid
    );
    assert!(
        log.contains(&drained),
        "the last instance did not drain\n{log}"
    );
    assert!(
        log.contains(&format!("web#{}: exited with status 0", last.id)),
        "{log}"
    );
    assert!(
        !master.socket().exists(),
        "the control socket is removed at exit"
    );
}

#[test]
fn run_refuses_bad_flags_as_the_config_would_naming_the_flag() {
    let dir = TestDir::new("run_bad_flags");
    let out = std::process::Command::new(&bins().master)
        .args(["run", "--stop-timeout", "later", "--", "/bin/true"])
        .env(ally_proto::paths::RUNTIME_DIR_VAR, dir.path().join("run"))
        .output()
        .expect("run ally-master");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--stop-timeout: "), "{stderr}");
    let out = std::process::Command::new(&bins().master)
        .args(["run"])
        .env(ally_proto::paths::RUNTIME_DIR_VAR, dir.path().join("run"))
        .output()
        .expect("run ally-master");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("`run` needs a command after `--`"),
        "{stderr}"
    );
}
