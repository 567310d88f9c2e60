//! An in-place upgrade under systemd (a test socket stands in for it):
//! `RELOADING=1` with `MONOTONIC_USEC` when the upgrade starts and
//! `READY=1` when it ends, either way, all sent by the same pid, so the
//! service's main pid never changes.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixDatagram;

use ally_tests::bins::bins;
use ally_tests::fixture::ANY_PORT;
use ally_tests::harness::{AppConfig, TestDir};
use ally_tests::service::Service;
use ally_tests::upgrading::setup::{Setup, WAIT};
use ally_tests::upgrading::{Variant, install_text, variant};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// The next datagram on `socket` and the pid that sent it.
fn next(socket: &UnixDatagram, setup: &Setup) -> (String, Option<i32>) {
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut buf)];
    // A timed receive reports `EINTR` even for an ignored `SIGCHLD`.
    let got = loop {
        match rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::empty()) {
            Err(rustix::io::Errno::INTR) => {}
            Ok(got) => break got,
            Err(e) => panic!(
                "no notification within the timeout: {e}\n{}",
                setup.master.log_tail()
            ),
        }
    };
    let pid = control.drain().find_map(|m| match m {
        RecvAncillaryMessage::ScmCredentials(cred) => Some(cred.pid.as_raw_nonzero().get()),
        _ => None,
    });
    let text = String::from_utf8_lossy(&buf[..got.bytes]).into_owned();
    (text, pid)
}

/// CLOCK_MONOTONIC now, in microseconds, as systemd counts it.
fn monotonic_usec() -> u128 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000
}

/// The next datagram must be `RELOADING=1` with a `MONOTONIC_USEC` not
/// before `before`, from `pid`.
fn assert_reloading(socket: &UnixDatagram, setup: &Setup, before: u128, pid: i32) {
    let (text, from) = next(socket, setup);
    let usec: u128 = text
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("expected RELOADING=1, got {text:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC {usec} is not between {before} and now"
    );
    assert_eq!(from, Some(pid), "RELOADING=1 from another pid");
}

#[test]
fn an_upgrade_notifies_systemd_reloading_then_ready_from_the_same_pid() {
    // systemd's side, in a directory of its own.
    let systemd = TestDir::new("upgrade_systemd_side");
    let socket_path = systemd.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the test notify socket");
    rustix::net::sockopt::set_socket_passcred(&socket, true).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let env = format!("NOTIFY_SOCKET={}", socket_path.display());
    // A unit without a file descriptor store (FDSTORE=0): no socket is
    // parked, so the state messages are all there is.
    let setup = Setup::start_wrapped("upgrade_systemd", &["env", &env, "FDSTORE=0"], |dir| {
        let web = Service::new(dir.path(), "web", &bins().demo, &ANY_PORT);
        let app = AppConfig::new("web", web.path()).ready_timeout("10s");
        drop(web);
        vec![app]
    });
    let pid = i32::try_from(setup.master.pid()).unwrap();
    assert_eq!(
        next(&socket, &setup),
        ("READY=1\nSTATUS=serving".to_owned(), Some(pid))
    );

    for binary in [variant(Variant::Other), setup.original.clone()] {
        let before = monotonic_usec();
        setup.upgrade_to(&binary);
        assert_reloading(&socket, &setup, before, pid);
        assert_eq!(next(&socket, &setup), ("READY=1".to_owned(), Some(pid)));
    }

    // A failed upgrade: the same two, and the same pid.
    install_text("#!/bin/sh\nexit 0\n", &setup.binary, 0o755);
    let before = monotonic_usec();
    let out = setup.upgrade();
    setup.master.assert_exit(&out, 1);
    assert_reloading(&socket, &setup, before, pid);
    assert_eq!(next(&socket, &setup), ("READY=1".to_owned(), Some(pid)));
}
