//! `stop`, `start`, `restart` and `kill` do what they say, and return when
//! it is done.

use std::net::TcpStream;
use std::time::Duration;

use ally_tests::fixture::{APP, Demo};
use ally_tests::harness::{AppConfig, Master, TestDir};
use ally_tests::proc::{alive, wait_gone};
use ally_tests::script::{NEVER_READY, START_LINES, signal_script};

#[test]
fn stop_start_and_restart_return_once_done() {
    let demo = Demo::start("stop_start_restart");
    let master = &demo.master;

    // stop: returns once the instance is gone, and the port is closed.
    let out = master.ctl_expect(&["stop", APP], 0);
    master.assert_output(&out, out.stdout.contains("web: stopped"), "stop says so");
    assert!(
        !alive(demo.first.pid),
        "`stop` returned while instance {} still ran\n{out}\n{}",
        demo.first.pid,
        master.log_tail()
    );
    let app = master.app(APP);
    assert_eq!(app["state"], "stopped", "{app}");
    assert_eq!(app["instances"], serde_json::json!([]), "{app}");
    assert!(
        TcpStream::connect_timeout(&demo.addr, Duration::from_secs(2)).is_err(),
        "{} still accepts connections after stop",
        demo.addr
    );
    // Stopped means stopped: a reload is refused, not acted upon.
    master.ctl_expect(&["reload", APP], 4);
    assert_eq!(master.instances(APP).len(), 0);

    // start: returns once a new instance is main.
    let out = master.ctl_expect(&["start", APP, "--timeout", "15"], 0);
    let started = master
        .main_of(APP)
        .unwrap_or_else(|| panic!("no main instance once start returned\n{out}"));
    assert!(
        started.id > demo.first.id && alive(started.pid),
        "{started:?}"
    );
    assert_ne!(started.pid, demo.first.pid);
    assert_eq!(master.app(APP)["state"], "running");

    // restart: a new main, the old one gone.
    let out = master.ctl_expect(&["restart", APP, "--timeout", "15"], 0);
    let restarted = master
        .main_of(APP)
        .unwrap_or_else(|| panic!("no main instance once restart returned\n{out}"));
    assert!(restarted.id > started.id, "{restarted:?} after {started:?}");
    assert_ne!(restarted.pid, started.pid);
    assert!(alive(restarted.pid));
    assert!(
        wait_gone(started.pid, Duration::from_secs(5)),
        "the instance before the restart still runs"
    );
    assert_eq!(master.instances(APP).len(), 1, "{}", master.app(APP));

    // start of a running app: nothing to do, exit 0, same main.
    master.ctl_expect(&["start", APP], 0);
    assert_eq!(master.main_of(APP), Some(restarted));
}

#[test]
fn lifecycle_commands_refuse_unknown_apps_and_bad_signals() {
    let demo = Demo::start("lifecycle_refusals");
    let master = &demo.master;
    for cmd in ["stop", "start", "restart", "kill", "status", "logs"] {
        let out = master.ctl_expect(&[cmd, "nope"], 4);
        master.assert_output(
            &out,
            out.stderr.contains("no app named `nope`") && out.stderr.contains("web"),
            "the error names the app and the apps the master runs",
        );
    }
    for bad in ["BOGUS", "SIGNOPE", "TERMINATE"] {
        let out = master.ctl_expect(&["kill", APP, "--signal", bad], 2);
        master.assert_output(
            &out,
            out.stderr.contains("USR1") && out.stderr.contains("TERM"),
            "a bad signal name is a usage error listing the names",
        );
    }
    assert_eq!(master.main_of(APP), Some(demo.first), "nothing changed");
}

#[test]
fn kill_delivers_the_signal_to_the_instance() {
    let dir = TestDir::new("kill_usr1");
    let script = signal_script(dir.path(), "sig");
    let app = AppConfig::new("sig", &script).ready_timeout(NEVER_READY);
    let master = Master::start(&dir, &[app]);
    // The trap is set before the first line.
    master.wait_for_log(
        &format!("[sig#1] start line {START_LINES}"),
        Duration::from_secs(10),
    );
    let out = master.ctl_expect(&["kill", "sig", "--signal", "USR1"], 0);
    master.assert_output(
        &out,
        out.stdout.contains("to 1 instance(s)"),
        "kill says how many instances got the signal",
    );
    master.wait_for_log("[sig#1] usr1 1", Duration::from_secs(10));
    // Other spellings of the same signal.
    master.ctl_expect(&["kill", "sig", "-s", "sigusr1"], 0);
    master.wait_for_log("[sig#1] usr1 2", Duration::from_secs(10));
    master.ctl_expect(&["kill", "sig", "-s", "10"], 0);
    master.wait_for_log("[sig#1] usr1 3", Duration::from_secs(10));
    // Delivered, not fatal: the instance is the same one.
    let instances = master.instances("sig");
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["id"], 1);
    // And the default signal is TERM, which ends it.
    let pid = u32::try_from(instances[0]["pid"].as_u64().unwrap()).unwrap();
    master.ctl_expect(&["kill", "sig"], 0);
    assert!(
        wait_gone(pid, Duration::from_secs(10)),
        "SIGTERM did not end the instance\n{}",
        master.log_tail()
    );
}
