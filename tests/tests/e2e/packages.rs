//! What the packages' maintainer scripts do to running masters, through
//! the one script they all call (`packaging/masters`, installed as
//! `/usr/lib/ally/masters`): an upgrade re-executes every master in place,
//! a removal stops every master gracefully; a stale socket is skipped.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ally_tests::bins::{bins, workspace_root};
use ally_tests::cmd::{CmdOutput, run};
use ally_tests::fixture::{ANY_PORT, APP, Demo};
use ally_tests::harness::Master;
use ally_tests::load::get_once;
use ally_tests::proc::{alive, wait_gone};

/// Longest the script may take: an upgrade of two masters, or a stop that
/// waits for a drain.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `sh packaging/masters ACTION DIRS...` with the ally-ctl under test
/// and `env`.
fn masters(action: &str, dirs: &[PathBuf], env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new("sh");
    cmd.arg(workspace_root().join("packaging").join("masters"))
        .arg(action)
        .args(dirs)
        .env("ALLY_CTL", &bins().ctl)
        .env_remove(ally_proto::paths::RUNTIME_DIR_VAR)
        .envs(env.iter().copied());
    let out = run(&mut cmd, SCRIPT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "the script must never fail\n{out}");
    out
}

/// The runtime directory of `master`: where its control socket is.
fn runtime_dir(master: &Master) -> PathBuf {
    master
        .socket()
        .parent()
        .expect("a socket in a directory")
        .into()
}

/// A socket file in `dir` that nothing listens on, as a crashed master
/// leaves behind.
fn stale_socket(dir: &Path) -> PathBuf {
    let path = dir.join("stale.sock");
    drop(UnixListener::bind(&path).expect("bind the stale socket"));
    path
}

#[test]
fn a_package_upgrade_upgrades_every_master_in_place_and_skips_a_stale_socket() {
    let a = Demo::start("pkg_upgrade_a");
    let b = Demo::start("pkg_upgrade_b");
    let stale = stale_socket(&runtime_dir(&a.master));
    let out = masters(
        "upgrade",
        &[runtime_dir(&a.master), runtime_dir(&b.master)],
        &[],
    );
    for demo in [&a, &b] {
        let master = &demo.master;
        let upgraded = format!(
            "upgraded the master of {} in place",
            master.socket().display()
        );
        master.assert_output(
            &out,
            out.stderr.contains(&upgraded),
            "the master is upgraded",
        );
        // The new image says so, under the same pid.
        master.wait_for_log(
            &format!("pid {} upgraded in place", master.pid()),
            Duration::from_secs(10),
        );
        assert!(alive(master.pid()), "the master's pid is the same one");
        assert_eq!(
            master.main_of(APP),
            Some(demo.first),
            "its instance is untouched"
        );
        assert_eq!(
            get_once(demo.addr, Duration::from_secs(10)),
            Ok(demo.first.id)
        );
    }
    let skipped = format!("skipped {}: no master answers on it", stale.display());
    a.master.assert_output(
        &out,
        out.stderr.contains(&skipped),
        "a stale socket is skipped",
    );
}

#[test]
fn a_package_removal_stops_every_master_and_skips_a_stale_socket() {
    let mut a = Demo::start("pkg_stop");
    let stale = stale_socket(&runtime_dir(&a.master));
    let pid = a.master.pid();
    let out = masters("stop", &[runtime_dir(&a.master)], &[]);
    let master = &a.master;
    master.assert_output(
        &out,
        out.stderr
            .contains(&format!("stopped the master with pid {pid}")),
        "the script says it stopped the master",
    );
    let skipped = format!("skipped {}: no master listens on it", stale.display());
    master.assert_output(
        &out,
        out.stderr.contains(&skipped),
        "a stale socket is skipped",
    );
    assert!(!alive(pid), "the script returned with the master running");
    assert!(
        !alive(a.first.pid),
        "the script returned with an instance running"
    );
    assert!(
        !master.socket().exists(),
        "the master removes its socket on exit"
    );
    master.wait_for_log(
        &format!("{APP}#{}: exited with status 0", a.first.id),
        Duration::from_secs(5),
    );
    assert!(a.master.terminate(Duration::from_secs(5)).success());
}

#[test]
fn a_master_still_stopping_after_the_wait_is_asked_again_and_kills_its_instances() {
    let demo = Demo::start_with(
        "pkg_stop_again",
        &[ANY_PORT[0], ANY_PORT[1], "--ignore-stop"],
        |app| app.stop_timeout("300s"),
    );
    let pid = demo.master.pid();
    let out = masters(
        "stop",
        &[runtime_dir(&demo.master)],
        &[("ALLY_STOP_WAIT", "1")],
    );
    demo.master.assert_output(
        &out,
        out.stderr.contains("still stopping after 1s: asked again")
            && out
                .stderr
                .contains(&format!("stopped the master with pid {pid}")),
        "a master that does not stop in time is asked again",
    );
    assert!(wait_gone(pid, Duration::from_secs(1)));
    assert!(!alive(demo.first.pid), "the instance was killed");
}
