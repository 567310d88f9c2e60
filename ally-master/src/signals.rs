//! Signals, turned into readable bytes on a self-pipe so the poll loop
//! sees them like any other event; and holding them back across the exec
//! of an in-place upgrade, so that none is lost or acted on by the default
//! disposition before the new image has its handlers.

#![allow(unsafe_code)]

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR2};

/// What arrived since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    /// SIGCHLD: one or more children changed state.
    pub child: bool,
    /// SIGTERM or SIGINT: shut down.
    pub terminate: bool,
    /// SIGHUP.
    pub hangup: bool,
    /// SIGUSR2: upgrade in place.
    pub upgrade: bool,
}

/// Every signal the master handles.
const HANDLED: [i32; 5] = [SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR2];

/// `pthread_sigmask(how, HANDLED)`.
fn mask(how: i32) -> io::Result<()> {
    // SAFETY: `set` is a local sigset_t, initialised by sigemptyset before
    // any other use; sigaddset gets valid signal numbers; the old mask is
    // not asked for (null).
    let result = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal in HANDLED {
            libc::sigaddset(&raw mut set, signal);
        }
        libc::pthread_sigmask(how, &raw const set, std::ptr::null_mut())
    };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    Ok(())
}

/// Blocks every handled signal: before the exec of an upgrade. The mask
/// survives the exec, so a signal that arrives meanwhile stays pending
/// (instead of the default action: SIGTERM would kill the master) until
/// the new image has installed its handlers and calls [`unblock`].
///
/// # Errors
///
/// If the mask cannot be changed.
pub fn block() -> io::Result<()> {
    mask(libc::SIG_BLOCK)
}

/// Unblocks what [`block`] blocked; pending signals arrive now.
///
/// # Errors
///
/// If the mask cannot be changed.
pub fn unblock() -> io::Result<()> {
    mask(libc::SIG_UNBLOCK)
}

/// Takes a SIGUSR2 pending while the handled signals are blocked (one
/// that arrived during the exec of an upgrade), so that it does not ask
/// for another upgrade; whether there was one.
pub fn take_pending_upgrade() -> bool {
    // SAFETY: `set` is a local sigset_t, initialised by sigemptyset before
    // any other use; the zero timeout makes sigtimedwait return at once;
    // no siginfo is asked for (null).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, SIGUSR2);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::sigtimedwait(&raw const set, std::ptr::null_mut(), &raw const zero) == SIGUSR2
    }
}

/// The master's signal handlers and the read end of their self-pipe.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    child: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    upgrade: Arc<AtomicBool>,
}

impl Signals {
    /// Installs handlers for SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGUSR2.
    ///
    /// # Errors
    ///
    /// If the socket pair cannot be made or a handler cannot be installed.
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let signals = Signals {
            wake,
            child: Arc::default(),
            terminate: Arc::default(),
            hangup: Arc::default(),
            upgrade: Arc::default(),
        };
        let flags = [
            (SIGCHLD, &signals.child),
            (SIGTERM, &signals.terminate),
            (SIGINT, &signals.terminate),
            (SIGHUP, &signals.hangup),
            (SIGUSR2, &signals.upgrade),
        ];
        for (signal, flag) in flags {
            // The flag is set before the pipe is written: the loop, woken by
            // the byte, always finds it.
            signal_hook::flag::register(signal, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        Ok(signals)
    }

    /// Drains the self-pipe and returns the signals that arrived.
    pub fn take(&self) -> Pending {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        Pending {
            child: self.child.swap(false, Ordering::SeqCst),
            terminate: self.terminate.swap(false, Ordering::SeqCst),
            hangup: self.hangup.swap(false, Ordering::SeqCst),
            upgrade: self.upgrade.swap(false, Ordering::SeqCst),
        }
    }
}

impl Signals {
    /// Waits at most `timeout` for SIGTERM or SIGINT, taking no signal:
    /// whether one is pending. For the one place the master waits outside
    /// its loop (binding at start, see `event_loop::startup`); every signal
    /// stays for the loop to take.
    pub fn wait_for_terminate(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.terminate.load(Ordering::SeqCst) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(&self.wake, PollFlags::IN)];
            let wait = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&wait)) {
                // Another signal keeps the pipe readable until the loop
                // drains it: poll no more, sleep out the rest.
                Ok(_)
                    if !self.terminate.load(Ordering::SeqCst)
                        && fds[0].revents().contains(PollFlags::IN) =>
                {
                    std::thread::sleep(left);
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => std::thread::sleep(left),
            }
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}
