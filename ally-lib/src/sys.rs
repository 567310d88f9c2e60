//! The crate's only `unsafe`: adopting descriptors that a parent passed by
//! number (systemd's `LISTEN_FDS` protocol). Everything else goes through
//! rustix's safe wrappers.

#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};
use rustix::net::sockopt;

/// `SD_LISTEN_FDS_START`: the first passed descriptor.
const LISTEN_FDS_START: RawFd = 3;

/// Takes ownership of the `count` descriptors passed from 3 on, keeping
/// those that are open sockets (the others become `None`) and making them
/// close-on-exec.
///
/// The caller checks that `LISTEN_PID` names this process. Only the first
/// call adopts anything; later calls return an empty list, so that no
/// descriptor ever gets two owners.
pub(crate) fn adopt_listen_fds(count: usize) -> Vec<Option<OwnedFd>> {
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Vec::new();
    }
    (0..count)
        .map(|i| {
            let raw = RawFd::try_from(i).ok()?.checked_add(LISTEN_FDS_START)?;
            // SAFETY: by the LISTEN_FDS protocol (LISTEN_PID names this
            // process) descriptors 3.. were passed to this process for its
            // own use and nothing else in it owns them; ADOPTED makes this
            // the only adoption.
            unsafe { adopt_socket(raw) }
        })
        .collect()
}

/// Takes ownership of descriptor `raw` if it is an open socket, and makes
/// it close-on-exec.
///
/// # Safety
///
/// Nothing else in the process may own or close `raw`.
unsafe fn adopt_socket(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: the borrow ends before this function returns and the caller
    // guarantees nothing closes `raw` meanwhile; if `raw` is not open the
    // calls below fail with EBADF, which is harmless.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let flags = fcntl_getfd(borrowed).ok()?;
    sockopt::socket_type(borrowed).ok()?;
    fcntl_setfd(borrowed, flags | FdFlags::CLOEXEC).ok()?;
    // SAFETY: `raw` is open (fcntl succeeded) and, by the caller's
    // guarantee, owned by no one else, so it can have exactly one owner.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Takes ownership of the instance's channel, descriptor `raw` named by
/// `ALLY_CHANNEL_FD`, if it is an open socket, and makes it close-on-exec
/// so that programs this process executes do not inherit it.
///
/// Only the first call adopts anything (the library calls it once, from
/// its mode detection); later calls return `None`.
pub(crate) fn adopt_channel(raw: RawFd) -> Option<OwnedFd> {
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: by the contract of ALLY_CHANNEL_FD the master passed this
    // descriptor to the process for the library alone, and ADOPTED makes
    // this the only adoption, so nothing else owns or closes it.
    unsafe { adopt_socket(raw) }
}

/// Takes ownership of descriptor `raw`, named by `ALLY_OUTPUT_FDS`, if it is
/// an open pipe (a FIFO) that is the file `stream` (`st_dev`, `st_ino`: the
/// pipe stdout or stderr writes to), and makes it close-on-exec.
///
/// Only the first call with a given number adopts it; later ones, or a
/// number that is not that pipe, give `None`.
pub(crate) fn adopt_output_pipe(raw: RawFd, stream: (u64, u64)) -> Option<OwnedFd> {
    static ADOPTED: std::sync::Mutex<Vec<RawFd>> = std::sync::Mutex::new(Vec::new());
    let mut adopted = ADOPTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if raw <= 2 || adopted.contains(&raw) {
        return None;
    }
    // SAFETY: only borrowed for the two calls below; by the contract of
    // ALLY_OUTPUT_FDS nothing else in the process uses this descriptor,
    // and EBADF is harmless if it is not open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let stat = rustix::fs::fstat(borrowed).ok()?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Fifo
        || (stat.st_dev, stat.st_ino) != stream
    {
        return None;
    }
    let flags = fcntl_getfd(borrowed).ok()?;
    fcntl_setfd(borrowed, flags | FdFlags::CLOEXEC).ok()?;
    adopted.push(raw);
    // SAFETY: `raw` is open (fstat succeeded), passed for the library alone,
    // and recorded so that it is adopted only once.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}
