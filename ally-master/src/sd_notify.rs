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
//! the master.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::log;

/// The socket notifications are sent from. It is the master's alone, so
/// making it non-blocking changes nothing for anyone else: a send to a
/// systemd too slow to read (its queue full) fails at once, as with
/// `MSG_DONTWAIT`, instead of holding the loop.
fn sender() -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Where to send notifications, if systemd asked for them.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    failed: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|value| {
            let value = value.to_string_lossy().into_owned();
            let address = match value.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&value),
            };
            match (address, sender()) {
                (Ok(address), Ok(socket)) => Some((socket, address)),
                (Err(e), _) | (_, Err(e)) => {
                    log!("NOTIFY_SOCKET={value} cannot be used: {e}");
                    None
                }
            }
        });
        Notifier {
            target,
            failed: false,
        }
    }

    /// Sends one datagram of newline-separated assignments.
    pub fn send(&mut self, message: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), address)
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
        let systemd = UnixDatagram::bind(&path).unwrap();
        let mut notifier = Notifier {
            target: Some((sender().unwrap(), SocketAddr::from_pathname(&path).unwrap())),
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
