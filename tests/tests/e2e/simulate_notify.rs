//! The library without a master but under a `Type=notify` supervisor: the
//! demo, started with a `NOTIFY_SOCKET` the test owns (an abstract name,
//! as systemd's user manager gives), says `READY=1` once its port listens,
//! `STATUS=` with its report, and `STOPPING=1` after SIGTERM, then exits 0.

use std::fs::File;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::free_port;
use ally_tests::harness::TestDir;
use ally_tests::load::get_once;
use ally_tests::proc::{listen_inodes, signal, wait_until};
use rustix::process::Signal;

/// Generous for a debug build on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The demo; killed on drop.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next datagram on `socket`, as text, or why there is none.
fn next(socket: &UnixDatagram) -> Result<String, String> {
    let mut buf = [0u8; 4096];
    socket
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        .map_err(|e| e.to_string())
}

#[test]
fn demo_alone_under_a_notify_supervisor_says_ready_status_and_stopping() {
    let dir = TestDir::new("simulate_notify");
    let name = format!("ally-test-notify/{}/{}", std::process::id(), free_port());
    let socket = UnixAddr::from_abstract_name(name.as_bytes())
        .and_then(|addr| UnixDatagram::bind_addr(&addr))
        .expect("bind the test's notify socket");
    socket
        .set_read_timeout(Some(TIMEOUT))
        .expect("set a read timeout");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log_path = dir.path().join("demo.log");
    let log = File::create(&log_path).expect("create the log");
    let mut cmd = Command::new(&bins().demo);
    cmd.args(["--addr", &addr.to_string()])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the log"))
        .stderr(log);
    for var in ally_proto::env::ALL
        .iter()
        .chain(&["LISTEN_PID", "LISTEN_FDS", "SYSTEMD_EXEC_PID"])
    {
        cmd.env_remove(var);
    }
    let mut demo = Demo(cmd.spawn().expect("spawn the demo"));
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // READY=1 once the port listens, not before.
    let ready = next(&socket);
    assert_eq!(ready.as_deref(), Ok("READY=1"), "{}", read_log());
    assert!(
        !listen_inodes(port).is_empty(),
        "READY=1 came before the port listened\n{}",
        read_log()
    );
    assert_eq!(get_once(addr, TIMEOUT), Ok(0), "{}", read_log());

    // The report, on one line.
    let status = next(&socket);
    let expected = format!("STATUS=version {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(status.as_deref(), Ok(expected.as_str()), "{}", read_log());

    // Nothing more until the stop signal.
    socket.set_nonblocking(true).expect("non-blocking");
    assert!(next(&socket).is_err(), "a message before SIGTERM");
    socket.set_nonblocking(false).expect("blocking");
    signal(demo.0.id(), Signal::TERM).expect("SIGTERM the demo");
    let stopping = next(&socket);
    assert_eq!(stopping.as_deref(), Ok("STOPPING=1"), "{}", read_log());

    let mut status = None;
    wait_until(TIMEOUT, || {
        status = demo.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not exit cleanly: {status:?}\n{}",
        read_log()
    );
    // One message per event: nothing after STOPPING=1.
    socket.set_nonblocking(true).expect("non-blocking");
    assert!(next(&socket).is_err(), "a message after STOPPING=1");
}

/// A supervisor that stopped reading must not hold up the drain: the axum
/// example (`ally::axum::serve`, whose stop future is the first to see the
/// stop signal, on a runtime worker) closes its port at once after
/// SIGTERM, although `STOPPING=1` finds the queue full. (It once waited the
/// send timeout (5 s) for room, with the port open and accepting stalled.)
#[test]
fn a_full_notify_queue_does_not_delay_the_stop() {
    let dir = TestDir::new("simulate_notify_full");
    let name = format!(
        "ally-test-notify-full/{}/{}",
        std::process::id(),
        free_port()
    );
    let address = UnixAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
    let socket = UnixDatagram::bind_addr(&address).expect("bind the test's notify socket");
    socket
        .set_read_timeout(Some(TIMEOUT))
        .expect("set a read timeout");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log_path = dir.path().join("axum.log");
    let log = File::create(&log_path).expect("create the log");
    let mut cmd = Command::new(bins().demo.with_file_name("axum"));
    cmd.args(["--addr", &addr.to_string()])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup the log"))
        .stderr(log);
    for var in ally_proto::env::ALL
        .iter()
        .chain(&["LISTEN_PID", "LISTEN_FDS", "SYSTEMD_EXEC_PID"])
    {
        cmd.env_remove(var);
    }
    let mut axum = Demo(cmd.spawn().expect("spawn the axum example"));
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(next(&socket).as_deref(), Ok("READY=1"), "{}", read_log());
    assert_eq!(get_once(addr, TIMEOUT), Ok(0), "{}", read_log());

    // Fill the supervisor's queue, and read no more.
    let filler = UnixDatagram::unbound().expect("a socket");
    filler.set_nonblocking(true).expect("non-blocking");
    let mut queued = 0;
    while filler.send_to_addr(b"X=1", &address).is_ok() {
        queued += 1;
        assert!(queued < 1_000_000, "the queue never filled");
    }

    let stopped = std::time::Instant::now();
    signal(axum.0.id(), Signal::TERM).expect("SIGTERM the axum example");
    wait_until(TIMEOUT, || listen_inodes(port).is_empty());
    let took = stopped.elapsed();
    // A send that waits for room waits out its whole 5 s timeout here (the
    // queue is never read), so anything shorter proves it did not wait;
    // a busy machine alone takes seconds at times.
    eprintln!("the port closed {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(5),
        "the port closed {took:?} after SIGTERM\n{}",
        read_log()
    );
    let mut status = None;
    wait_until(TIMEOUT, || {
        status = axum.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        read_log()
    );
    assert!(
        read_log().contains("cannot send STOPPING=1"),
        "the failed send is not said\n{}",
        read_log()
    );
}
