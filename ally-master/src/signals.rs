//! Signals, turned into readable bytes on a self-pipe so the poll loop
//! sees them like any other event.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

/// What arrived since the last [`Signals::take`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    /// SIGCHLD: one or more children changed state.
    pub child: bool,
    /// SIGTERM or SIGINT: shut down.
    pub terminate: bool,
    /// SIGHUP.
    pub hangup: bool,
}

/// The master's signal handlers and the read end of their self-pipe.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    child: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
}

impl Signals {
    /// Installs handlers for SIGCHLD, SIGTERM, SIGINT and SIGHUP.
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
        };
        let flags = [
            (SIGCHLD, &signals.child),
            (SIGTERM, &signals.terminate),
            (SIGINT, &signals.terminate),
            (SIGHUP, &signals.hangup),
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
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}
