//! The library under plain systemd socket activation, no master: the demo,
//! started by `systemd-socket-activate`, serves on the socket it was passed
//! instead of binding one.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::free_port;
use ally_tests::harness::TestDir;
use ally_tests::load::get_once;
use ally_tests::proc::{describe, listen_inodes, signal, socket_inodes, wait_until};
use rustix::process::Signal;

/// The activator (Debian package `systemd`).
const TOOL: &str = "systemd-socket-activate";

/// Generous for a debug build on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The activator, and then the demo it execs into; killed on drop.
struct Activated(Child);

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_tool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join(TOOL))
        .find(|p| p.is_file())
}

#[test]
fn demo_started_by_systemd_socket_activate_serves_on_the_passed_socket() {
    let Some(tool) = find_tool() else {
        eprintln!("skipped: {TOOL} is not installed (it comes with the `systemd` package)");
        return;
    };
    let demo = &bins().demo;
    let dir = TestDir::new("systemd_activation");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log_path = dir.path().join("activated.log");
    let log = File::create(&log_path).expect("create the log");
    let mut cmd = Command::new(&tool);
    cmd.arg("-l")
        .arg(addr.to_string())
        .arg(demo)
        .args(["--addr", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the log"))
        .stderr(log);
    for var in ally_proto::env::ALL {
        cmd.env_remove(var);
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        cmd.env_remove(var);
    }
    let mut activated = Activated(cmd.spawn().expect("spawn systemd-socket-activate"));
    let pid = activated.0.id();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // It binds and listens, and execs the demo on the first connection.
    assert!(
        wait_until(TIMEOUT, || !listen_inodes(port).is_empty()),
        "{TOOL} did not listen on {addr}\n{}",
        read_log()
    );
    let passed = listen_inodes(port);
    assert_eq!(passed.len(), 1, "{passed:?}");
    let passed = passed[0];
    assert!(socket_inodes(pid).contains(&passed), "{}", describe(pid));

    let first = get_once(addr, TIMEOUT);
    assert_eq!(first, Ok(0), "the first request\n{}", read_log());
    let started = format!("demo: instance 0 pid {pid} listening on {addr}");
    assert!(
        wait_until(TIMEOUT, || read_log().contains(&started)),
        "no {started:?} in the log\n{}",
        read_log()
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref(),
        Some(demo),
        "the activator did not exec the demo"
    );
    for n in 0..20 {
        assert_eq!(
            get_once(addr, TIMEOUT),
            Ok(0),
            "request {n}\n{}",
            read_log()
        );
    }
    // One listening socket, the one the activator bound, now the demo's:
    // the demo bound nothing of its own.
    assert_eq!(listen_inodes(port), vec![passed]);
    assert!(socket_inodes(pid).contains(&passed), "{}", describe(pid));

    // The stop signal drains and exits cleanly.
    signal(pid, Signal::TERM).expect("SIGTERM the demo");
    let mut status = None;
    wait_until(TIMEOUT, || {
        status = activated.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not exit cleanly: {status:?}\n{}",
        read_log()
    );
    assert!(wait_until(TIMEOUT, || listen_inodes(port).is_empty()));
}
