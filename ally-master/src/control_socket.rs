//! The control socket and what its connections share: accepting a bounded
//! number per turn, a slot for each (or a refusal at once, for a uid over
//! its share or past the cap), the input budget they draw on, and the
//! pause after running out of file descriptors.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use ally_proto::HelloReply;
use rustix::net::SendFlags;
use rustix::process::Uid;

use crate::budget::{Budget, Held};
use crate::conn::Conn;
use crate::limits::{ACCEPT_PAUSE, ACCEPTS_PER_TURN, HELLO_TIMEOUT};
use crate::log;
use crate::slots::{ControlSlots, Refusal, Slot};
use crate::sys::{self, PeerCred};
use crate::tally::Tally;

/// The listening control socket (one owner: the event loop).
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    slots: ControlSlots,
    budget: Budget,
    output: Budget,
    /// Set when accepting failed for lack of resources (EMFILE and the
    /// like): the socket is not polled until then, instead of spinning on
    /// a connection that cannot be taken.
    paused_until: Option<Instant>,
}

impl ControlSocket {
    /// Serves `listener` (non-blocking) for a master running as `master_uid`.
    pub fn new(listener: UnixListener, master_uid: Uid) -> ControlSocket {
        ControlSocket {
            listener,
            slots: ControlSlots::new(master_uid),
            budget: Budget::input(),
            output: Budget::output(),
            paused_until: None,
        }
    }

    /// Until when accepting is paused, if it is (a deadline to wake for).
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// Whether to poll the socket now: always, but while paused.
    pub fn wants_accept(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|until| until <= now)
    }

    /// Accepts at most [`ACCEPTS_PER_TURN`] connections and returns those
    /// that got a slot; the others are told why not, closed, and counted
    /// in `tally`.
    pub fn accept(&mut self, tally: &mut Tally) -> Vec<Conn> {
        self.paused_until = None;
        let mut accepted = Vec::new();
        for _ in 0..ACCEPTS_PER_TURN {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the connection stays queued, so
                    // stop polling for it a while rather than spin.
                    let now = Instant::now();
                    let line = || {
                        format!(
                            "cannot accept a connection: {e}; pausing accepts for {ACCEPT_PAUSE:?}"
                        )
                    };
                    if let Some(line) = tally.note(now, "accepts paused (cannot accept)", line) {
                        log!("{line}");
                    }
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    break;
                }
            };
            let cred = match sys::peer_cred(&stream) {
                Ok(cred) => cred,
                Err(e) => {
                    log!("refused a connection whose credentials cannot be read: {e}");
                    continue;
                }
            };
            let slot = match self.slots.admit(cred.uid) {
                Ok(slot) => slot,
                Err(refusal) => {
                    refuse(&stream, &cred, refusal, tally);
                    continue;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let deadline = Instant::now() + HELLO_TIMEOUT;
            accepted.push(Conn::accepted(
                stream,
                cred,
                deadline,
                slot,
                self.budget.hold(),
                self.output.hold(),
            ));
        }
        accepted
    }
}

impl ControlSocket {
    /// The listening socket, to hand over in an upgrade.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// A slot and budget accounts for a connection from `uid` carried over
    /// by an upgrade, if its uid may still hold one.
    pub fn readmit(&self, uid: Uid) -> Option<(Slot, Held, Held)> {
        let slot = self.slots.admit(uid).ok()?;
        Some((slot, self.budget.hold(), self.output.hold()))
    }
}

/// Tells a client it gets no slot, if its socket takes the few bytes now
/// (nothing waits for it), and counts the refusal; the caller closes it.
fn refuse(stream: &UnixStream, cred: &PeerCred, refusal: Refusal, tally: &mut Tally) {
    let failure = refusal.failure(cred.uid);
    if let Ok(bytes) = ally_proto::frame::encode(&HelloReply::Refused(failure.clone())) {
        let _ = rustix::net::send(stream, &bytes, SendFlags::NOSIGNAL | SendFlags::DONTWAIT);
    }
    let line = || {
        format!(
            "refused connection from pid {} uid {}: {}; more like it are counted, not logged \
             one by one",
            cred.pid_text(),
            cred.uid.as_raw(),
            failure.message
        )
    };
    if let Some(line) = tally.note(Instant::now(), refusal.counted_as(), line) {
        log!("{line}");
    }
}

impl AsFd for ControlSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}
