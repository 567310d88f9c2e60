//! The master under systemd: the exact sd_notify messages it sends to its
//! own NOTIFY_SOCKET, in order, around start, a SIGHUP reload and a stop.
//! (systemd does not run here; a test socket stands in for it.)

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::{ANY_PORT, APP};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::service::Service;

/// The next datagram on `socket`, as text.
fn next(socket: &UnixDatagram, master: &Master) -> String {
    let mut buf = [0u8; 4096];
    // A timed receive reports `EINTR` even for an ignored `SIGCHLD`.
    let got = loop {
        match socket.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    match got {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!(
            "no notification within the timeout: {e}\n{}",
            master.log_tail()
        ),
    }
}

/// CLOCK_MONOTONIC now, in microseconds, as systemd counts it.
fn monotonic_usec() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000
}

#[test]
fn master_notifies_systemd_ready_reloading_ready_stopping_in_order() {
    let dir = TestDir::new("systemd_notify");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the test notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a read timeout");
    let service = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
    let app = AppConfig::new(APP, service.path()).ready_timeout("10s");
    let env = format!("NOTIFY_SOCKET={}", path.display());
    // A unit without a file descriptor store (systemd 254 says so with
    // FDSTORE=0): no socket is parked, so these are all the messages.
    let master = Master::start_wrapped(
        bins(),
        &dir,
        &config_toml(&[app]),
        &["env", &env, "FDSTORE=0"],
    );

    // READY=1 once the app serves, not before.
    assert_eq!(next(&socket, &master), "READY=1\nSTATUS=serving");
    assert!(
        master.main_of(APP).is_some(),
        "READY=1 came before the app was main"
    );

    // SIGHUP is systemctl reload: RELOADING=1 with the monotonic time, then
    // READY=1 once the config was reread.
    let before = monotonic_usec();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(master.pid() as i32).expect("master pid"),
        rustix::process::Signal::HUP,
    )
    .expect("send SIGHUP");
    let reloading = next(&socket, &master);
    let usec: u128 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("unexpected message {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC {usec} is not between {before} and now"
    );
    assert_eq!(next(&socket, &master), "READY=1");

    // SIGTERM: STOPPING=1 first.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(master.pid() as i32).expect("master pid"),
        rustix::process::Signal::TERM,
    )
    .expect("send SIGTERM");
    assert_eq!(next(&socket, &master), "STOPPING=1");
}

/// `--ready-fd`: one newline on the descriptor once the apps serve, then
/// end of file (the master closes it), as s6 expects.
#[test]
fn ready_fd_gets_one_newline_once_the_apps_serve() {
    use std::io::Read;

    let dir = TestDir::new("ready_fd");
    let fifo = dir.path().join("ready.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("make a FIFO");
    // Opening a FIFO for reading waits for its writer: do it aside.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&fifo)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map(|_| text)
        })
    };
    let service = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
    let app = AppConfig::new(APP, service.path()).ready_timeout("10s");
    let script = format!("exec \"$@\" --ready-fd 3 3>'{}'", fifo.display());
    let master = Master::start_wrapped(
        bins(),
        &dir,
        &config_toml(&[app]),
        &["sh", "-c", &script, "sh"],
    );
    let text = reader
        .join()
        .expect("reader thread")
        .expect("read the FIFO");
    assert_eq!(text, "\n", "{}", master.log_tail());
    assert!(
        master.main_of(APP).is_some(),
        "ready before the app was main"
    );
}
