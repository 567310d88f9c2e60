//! Simulate mode under socket activation: sockets passed by systemd's
//! `LISTEN_FDS` protocol (also spoken by `systemfd` and `ally-master`'s
//! socket mode) are used before anything is bound.
//!
//! When `LISTEN_PID` names this process, descriptors 3 to 3 +
//! `LISTEN_FDS` − 1 are adopted on the first listen (those that are
//! sockets), made close-on-exec, and kept in a pool. Each listen takes the
//! first pooled socket of the right type bound to the requested address
//! (for port 0, any port on the requested IP), at most once. The variables
//! stay in the environment; children ignore them, since `LISTEN_PID` names
//! this process. Do not mix with another `LISTEN_FDS` consumer in the same
//! process: both would own the descriptors.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use ally_proto::{ListenAddr, Network};

use crate::sys;
use crate::verify;

/// More passed descriptors than this is taken as a malformed environment.
const MAX_LISTEN_FDS: usize = 4096;

/// Adopted sockets not yet handed out; `None` until first use.
static POOL: Mutex<Option<Vec<Option<OwnedFd>>>> = Mutex::new(None);

/// The inherited socket for (`network`, `want`), if one was passed.
pub(crate) fn take(network: Network, want: &ListenAddr) -> Option<OwnedFd> {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pool = pool.get_or_insert_with(adopt_from_env);
    let slot = pool.iter_mut().find(|slot| {
        slot.as_ref()
            .is_some_and(|fd| verify::matches(fd.as_fd(), network, want).is_ok())
    })?;
    let fd = slot.take()?;
    // Passed sockets are usually blocking; every socket this crate returns
    // is not. The process owns this socket now, so the change is its own.
    let _ = verify::ensure_nonblocking(fd.as_fd());
    Some(fd)
}

fn adopt_from_env() -> Vec<Option<OwnedFd>> {
    let var = |name| std::env::var(name).ok();
    let for_us = var("LISTEN_PID")
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = var("LISTEN_FDS")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n <= MAX_LISTEN_FDS);
    let (true, Some(count)) = (for_us, count) else {
        return Vec::new();
    };
    sys::adopt_listen_fds(count)
}
