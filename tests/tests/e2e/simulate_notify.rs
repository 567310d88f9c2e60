//! The library without a master but under a `Type=notify` supervisor: the
//! demo, started with a `NOTIFY_SOCKET` the test owns (an abstract name,
//! as systemd's user manager gives), says `READY=1` once its port listens,
//! `STATUS=` with its report, and `STOPPING=1` after SIGTERM, then exits 0.

use std::cell::RefCell;
use std::fs::File;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::free_port;
use ally_tests::harness::TestDir;
use ally_tests::load::get_once;
use ally_tests::proc::{listen_inodes, signal, wait_until};
use rustix::process::Signal;

/// Generous for a debug build on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A program run alone (no master, none of ally's variables), with
/// `NOTIFY_SOCKET` naming an abstract socket the test owns; killed on drop.
struct Alone {
    /// In a cell: waited for while the rest is borrowed.
    child: RefCell<Child>,
    /// The test's end of `NOTIFY_SOCKET`.
    socket: UnixDatagram,
    address: UnixAddr,
    port: u16,
    addr: SocketAddr,
    log_path: PathBuf,
}

impl Alone {
    /// Starts `program --addr 127.0.0.1:PORT` in `dir`, its output to
    /// `<dir>/<tag>.log`.
    fn start(dir: &TestDir, tag: &str, program: &Path) -> Alone {
        let name = format!("ally-test-{tag}/{}/{}", std::process::id(), free_port());
        let address = UnixAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
        let socket = UnixDatagram::bind_addr(&address).expect("bind the test's notify socket");
        socket
            .set_read_timeout(Some(TIMEOUT))
            .expect("set a read timeout");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log_path = dir.path().join(format!("{tag}.log"));
        let log = File::create(&log_path).expect("create the log");
        let mut cmd = Command::new(program);
        cmd.args(["--addr", &addr.to_string()])
            .env("NOTIFY_SOCKET", format!("@{name}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log);
        for var in
            ally_proto::env::ALL
                .iter()
                .chain(&["LISTEN_PID", "LISTEN_FDS", "SYSTEMD_EXEC_PID"])
        {
            cmd.env_remove(var);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Alone {
            child: RefCell::new(child),
            socket,
            address,
            port,
            addr,
            log_path,
        }
    }

    /// What the program wrote so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its exit status, once it exits within [`TIMEOUT`].
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(TIMEOUT, || {
            status = self.child.borrow_mut().try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The next datagram on `socket`, as text, or why there is none.
fn next(socket: &UnixDatagram) -> Result<String, String> {
    let mut buf = [0u8; 4096];
    // A timed receive reports `EINTR` even for an ignored `SIGCHLD`.
    loop {
        match socket.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            got => {
                return got
                    .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
                    .map_err(|e| e.to_string());
            }
        }
    }
}

#[test]
fn demo_alone_under_a_notify_supervisor_says_ready_status_and_stopping() {
    let dir = TestDir::new("simulate_notify");
    let demo = Alone::start(&dir, "notify", &bins().demo);
    let (socket, port, addr) = (&demo.socket, demo.port, demo.addr);
    let read_log = || demo.log();

    // READY=1 once the port listens, not before.
    let ready = next(socket);
    assert_eq!(ready.as_deref(), Ok("READY=1"), "{}", read_log());
    assert!(
        !listen_inodes(port).is_empty(),
        "READY=1 came before the port listened\n{}",
        read_log()
    );
    assert_eq!(get_once(addr, TIMEOUT), Ok(0), "{}", read_log());

    // The report, on one line.
    let status = next(socket);
    let expected = format!("STATUS=version {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(status.as_deref(), Ok(expected.as_str()), "{}", read_log());

    // Nothing more until the stop signal.
    socket.set_nonblocking(true).expect("non-blocking");
    assert!(next(socket).is_err(), "a message before SIGTERM");
    socket.set_nonblocking(false).expect("blocking");
    signal(demo.child.borrow().id(), Signal::TERM).expect("SIGTERM the demo");
    let stopping = next(socket);
    assert_eq!(stopping.as_deref(), Ok("STOPPING=1"), "{}", read_log());

    let status = demo.exit_status();
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not exit cleanly: {status:?}\n{}",
        read_log()
    );
    // One message per event: nothing after STOPPING=1.
    socket.set_nonblocking(true).expect("non-blocking");
    assert!(next(socket).is_err(), "a message after STOPPING=1");
}

/// A supervisor that stopped reading must not hold up the drain: the axum
/// example (`ally::axum::serve`, whose stop future is the first to see the
/// stop signal, on a runtime worker) closes its port at once after
/// SIGTERM, although `STOPPING=1` finds the queue full. (It once waited the
/// send timeout (5 s) for room, with the port open and accepting stalled.)
#[test]
fn a_full_notify_queue_does_not_delay_the_stop() {
    // A send that waits for room waits out its whole 5 s timeout here (the
    // queue is never read), every time; a busy machine alone takes seconds
    // at times, but not three times in a row.
    let mut took = Vec::new();
    for attempt in 1..=3 {
        let stop = stop_with_a_full_queue(attempt);
        eprintln!("the port closed {stop:?} after SIGTERM");
        took.push(stop);
        if stop < Duration::from_secs(5) {
            return;
        }
    }
    panic!("the port closed {took:?} after SIGTERM, in 3 attempts");
}

/// Starts the axum example alone, fills its supervisor's queue, sends
/// SIGTERM: how long the port stayed open. Checks that it exits 0 and says
/// its `STOPPING=1` could not be sent.
fn stop_with_a_full_queue(attempt: u32) -> Duration {
    let dir = TestDir::new(&format!("simulate_notify_full_{attempt}"));
    let axum = Alone::start(&dir, "notify-full", &bins().demo.with_file_name("axum"));
    let (socket, port, addr) = (&axum.socket, axum.port, axum.addr);
    let read_log = || axum.log();
    assert_eq!(next(socket).as_deref(), Ok("READY=1"), "{}", read_log());
    assert_eq!(get_once(addr, TIMEOUT), Ok(0), "{}", read_log());

    // Fill the supervisor's queue, and read no more.
    let filler = UnixDatagram::unbound().expect("a socket");
    filler.set_nonblocking(true).expect("non-blocking");
    let mut queued = 0;
    while filler.send_to_addr(b"X=1", &axum.address).is_ok() {
        queued += 1;
        assert!(queued < 1_000_000, "the queue never filled");
    }

    let stopped = std::time::Instant::now();
    signal(axum.child.borrow().id(), Signal::TERM).expect("SIGTERM the axum example");
    wait_until(TIMEOUT, || listen_inodes(port).is_empty());
    let took = stopped.elapsed();
    let status = axum.exit_status();
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
    took
}
