//! Talking to a master's control socket by hand, for the tests that play
//! hostile or careless control clients.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ally_proto::{Hello, HelloReply, Role, frame};

use crate::harness::Master;

/// A control connection to `master` that has said hello and been
/// welcomed, with 10 s read and write timeouts.
///
/// # Panics
///
/// If it cannot connect or is not welcomed.
pub fn welcomed(master: &Master) -> UnixStream {
    let s = UnixStream::connect(master.socket()).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    frame::write_to(&s, &Hello::new(Role::Control)).expect("send hello");
    let reply: HelloReply = frame::read_from(&s).expect("hello reply");
    assert!(
        matches!(reply, HelloReply::Welcome { .. }),
        "{reply:?}\n{}",
        master.log_tail()
    );
    s
}

/// Whether the master closed `s` by `deadline`, whatever it sent before.
pub fn closed_by(mut s: &UnixStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Runs `ally-ctl list` and asserts it answered within `limit`; returns
/// how long it took. `while_what` says when, for the message.
pub fn list_answers(master: &Master, limit: Duration, while_what: &str) -> Duration {
    let out = master.ctl_expect(&["list"], 0);
    master.assert_output(
        &out,
        out.elapsed < limit,
        &format!("`ally-ctl list` took {:?} {while_what}", out.elapsed),
    );
    out.elapsed
}
