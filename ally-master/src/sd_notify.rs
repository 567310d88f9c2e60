//! The master as a systemd service: `sd_notify` messages to the
//! `NOTIFY_SOCKET` systemd gave it, so a `Type=notify-reload` unit knows
//! when the master is ready, reloading and stopping.
//!
//! - `READY=1` once, when every app that starts by itself serves (or has
//!   given up: `failed`);
//! - `RELOADING=1` with `MONOTONIC_USEC=` when SIGHUP arrives, then
//!   `READY=1` once the config was reread (the edited apps change at their
//!   next start);
//! - `STOPPING=1` when shutting down.
//!
//! Without `NOTIFY_SOCKET` every call does nothing. Sends never block (the
//! socket is non-blocking: `MSG_DONTWAIT` for every send); a failed or
//! dropped one is logged once: systemd's absence or slowness must not stop
//! the master. The same socket parks listening sockets in systemd's file
//! descriptor store ([`crate::fd_store`]).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::log;

/// systemd's notification socket, and the socket the master sends from:
/// the master's alone, non-blocking, so a send to a systemd too slow to
/// read (its queue full) fails at once instead of holding the loop.
#[derive(Debug)]
pub struct Target {
    socket: OwnedFd,
    address: SocketAddrUnix,
}

impl Target {
    /// The target `NOTIFY_SOCKET` names (a path, or `@name` for an
    /// abstract socket), if it is set.
    fn from_env() -> Option<Target> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let value = value.to_string_lossy().into_owned();
        let address = match value.strip_prefix('@') {
            Some(name) => SocketAddrUnix::new_abstract_name(name.as_bytes()),
            None => SocketAddrUnix::new(value.as_str()),
        };
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, flags, None);
        match (address, socket) {
            (Ok(address), Ok(socket)) => Some(Target { socket, address }),
            (Err(e), _) | (_, Err(e)) => {
                log!("NOTIFY_SOCKET={value} cannot be used: {e}");
                None
            }
        }
    }

    /// Sends one datagram, with `fds` attached (`SCM_RIGHTS`) if any.
    ///
    /// # Errors
    ///
    /// The send's: `EAGAIN` when systemd's queue is full.
    pub fn send(&self, message: &str, fds: &[BorrowedFd<'_>]) -> rustix::io::Result<()> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(rustix::io::Errno::NOBUFS);
        }
        let iov = [IoSlice::new(message.as_bytes())];
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        rustix::net::sendmsg_addr(&self.socket, &self.address, &iov, &mut control, flags)?;
        Ok(())
    }
}

#[cfg(test)]
impl Target {
    /// A target at `path`, for tests.
    pub fn to_path(path: &std::path::Path) -> Target {
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        Target {
            socket: rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, flags, None)
                .unwrap(),
            address: SocketAddrUnix::new(path).unwrap(),
        }
    }
}

/// Where to send notifications, if systemd asked for them.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Rc<Target>>,
    failed: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        Notifier {
            target: Target::from_env().map(Rc::new),
            failed: false,
        }
    }

    /// The socket notifications go to, for the fd store to share.
    pub fn target(&self) -> Option<Rc<Target>> {
        self.target.clone()
    }

    /// Sends one datagram of newline-separated assignments.
    pub fn send(&mut self, message: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(e) = target.send(message, &[])
            && !self.failed
        {
            self.failed = true;
            log!("cannot notify systemd ({message:?}): {e}");
        }
    }

    /// `RELOADING=1` with the monotonic time systemd wants beside it.
    pub fn reloading(&mut self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_systemd_that_does_not_read_costs_a_failed_send_not_a_wait() {
        let path = std::env::temp_dir().join(format!("ally-sd-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let systemd = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut notifier = Notifier {
            target: Some(Rc::new(Target::to_path(&path))),
            failed: false,
        };
        // Its queue holds a few datagrams; past them a blocking send would
        // wait for ever.
        for _ in 0..1000 {
            notifier.send("STATUS=serving");
        }
        assert!(notifier.failed, "the queue never filled");
        drop(systemd);
        let _ = std::fs::remove_file(&path);
    }
}
