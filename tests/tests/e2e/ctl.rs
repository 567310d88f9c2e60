//! `ally-ctl` exit codes: each means one thing.

use std::process::Command;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::cmd::run;
use ally_tests::fixture::{APP, Demo};
use ally_tests::harness::TestDir;

#[test]
fn reload_of_an_unknown_app_exits_4_and_changes_nothing() {
    let demo = Demo::start("unknown_app");
    let master = &demo.master;
    let out = master.ctl_expect(&["reload", "nope"], 4);
    master.assert_output(
        &out,
        out.stderr.contains("nope"),
        "the error should name the app",
    );
    master.ctl_expect(&["reload", "nope", "--wait"], 4);
    assert_eq!(master.main_of(APP), Some(demo.first));
    assert_eq!(master.instances(APP).len(), 1);
}

#[test]
fn unreachable_master_exits_3() {
    let dir = TestDir::new("unreachable");
    let socket = dir.path().join("none.sock");
    for args in [&["list", "--json"][..], &["reload", APP, "--wait"][..]] {
        let out = run(
            Command::new(&bins().ctl)
                .arg("--socket")
                .arg(&socket)
                .args(args),
            Duration::from_secs(30),
        );
        assert_eq!(out.code(), Some(3), "{out}");
        assert!(
            !out.stderr.is_empty(),
            "the error should say what failed\n{out}"
        );
    }
}
