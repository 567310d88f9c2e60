//! The stop signal: the service's cue to stop accepting and drain.
//!
//! The first call to [`stop_signal`] installs handlers (through
//! `signal-hook`) for the signal the master stops instances with
//! (`ALLY_STOP_SIGNAL`, default `SIGTERM`), or for `SIGTERM` and `SIGINT` in
//! simulate mode. A handler sets a flag and writes one byte to a socket
//! pair whose read end is never drained: once a stop signal has arrived
//! that end stays readable for good, so any number of threads can poll it.
//!
//! In simulate mode the process-wide stop signal also tells a supervisor
//! listening on `NOTIFY_SOCKET` (systemd's `Type=notify`) `STOPPING=1`, the
//! first time the library sees it set: a signal handler may not send, so
//! the first look after the signal does ([`StopSignal::is_set`] and
//! everything built on it).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ally_proto::env;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{SendFlags, send};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::Error;
use crate::mode;

/// Exit status when a second `SIGINT` arrives in simulate mode while the
/// first is still draining (128 + `SIGINT`, as a shell reports it).
pub const FORCED_EXIT_STATUS: i32 = 130;

/// A handle on "this process was asked to stop". Clones share the state.
///
/// Obtained from [`stop_signal`] (set by the stop signal) or
/// [`StopSignal::new`] (set only by [`trigger`](Self::trigger)). Its
/// [`AsFd`] is a descriptor that becomes readable once stopping and then
/// stays readable, for polling together with a listener.
#[derive(Debug, Clone)]
pub struct StopSignal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    flag: Arc<AtomicBool>,
    /// Readable once stopping; never read from.
    read: UnixStream,
    /// For [`StopSignal::trigger`].
    write: OwnedFd,
    /// What to do when first seen set: send `STOPPING=1`, for the
    /// process-wide stop signal in simulate mode.
    announce: Option<fn()>,
    /// Whether `announce` ran.
    announced: AtomicBool,
}

/// The process-wide stop signal; installs its handlers on first call.
///
/// Idempotent and thread-safe: every call returns a handle on the same
/// state. Once the handlers are installed the stop signal no longer kills
/// the process: it is up to the service to drain and exit. In simulate mode
/// a second `SIGINT` (a second Ctrl-C) exits at once with
/// [`FORCED_EXIT_STATUS`].
///
/// Call it early, before [`ready`](crate::ready): a signal that arrives
/// before the handlers exist kills the process with whatever it had in
/// flight.
///
/// # Errors
///
/// A malformed `ALLY_STOP_SIGNAL` (or any environment error of managed
/// mode), or failure to create the socket pair or install a handler.
pub fn stop_signal() -> io::Result<StopSignal> {
    static GLOBAL: Mutex<Option<StopSignal>> = Mutex::new(None);
    let mut global = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(stop) = &*global {
        return Ok(stop.clone());
    }
    let (signals, managed) = match mode::managed()? {
        Some(m) => (vec![parse_signal(m.stop_signal.as_deref())?], true),
        None => (vec![SIGTERM, SIGINT], false),
    };
    let announce = (!managed).then_some(crate::notify::stopping as fn());
    let stop = StopSignal::with_announce(announce)?;
    for &signal in &signals {
        if !managed && signal == SIGINT {
            // Registered before the flag: sees the flag as the previous
            // signal left it, so only a second Ctrl-C exits.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                FORCED_EXIT_STATUS,
                Arc::clone(&stop.inner.flag),
            )?;
        }
        signal_hook::flag::register(signal, Arc::clone(&stop.inner.flag))?;
        signal_hook::low_level::pipe::register(signal, stop.inner.write.try_clone()?)?;
    }
    *global = Some(stop.clone());
    Ok(stop)
}

impl StopSignal {
    /// A stop signal of its own, tied to no OS signal: only
    /// [`trigger`](Self::trigger) sets it. For tests, and for services that
    /// decide to stop by other means (an admin endpoint, a fatal error).
    ///
    /// # Errors
    ///
    /// Failure to create the socket pair (the process is out of
    /// descriptors).
    pub fn new() -> io::Result<StopSignal> {
        StopSignal::with_announce(None)
    }

    fn with_announce(announce: Option<fn()>) -> io::Result<StopSignal> {
        let (read, write) = UnixStream::pair()?;
        Ok(StopSignal {
            inner: Arc::new(Inner {
                flag: Arc::new(AtomicBool::new(false)),
                read,
                write: write.into(),
                announce,
                announced: AtomicBool::new(false),
            }),
        })
    }

    /// Sets this stop signal as if the OS signal had arrived: every waiter
    /// wakes up.
    pub fn trigger(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        // Errors are harmless: a full buffer is already readable.
        let _ = send(
            &self.inner.write,
            b"x",
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        );
    }

    /// Whether stopping was asked for.
    ///
    /// On the handle [`stop_signal`] returns, in simulate mode with
    /// `NOTIFY_SOCKET` set, the first call that finds it set sends
    /// `STOPPING=1` there (so do [`wait`](Self::wait),
    /// [`wait_timeout`](Self::wait_timeout) and
    /// [`drain::accept`](crate::drain::accept) returning `None`, which look
    /// through it); a failed send is one line on stderr. A service that only
    /// polls the descriptor and never asks sends nothing.
    pub fn is_set(&self) -> bool {
        let set = self.inner.flag.load(Ordering::SeqCst);
        if let Some(announce) = self.inner.announce
            && set
            && !self.inner.announced.swap(true, Ordering::SeqCst)
        {
            announce();
        }
        set
    }

    /// Blocks until stopping is asked for.
    pub fn wait(&self) {
        while !self.wait_for(None) {}
    }

    /// Blocks until stopping is asked for or `timeout` passes; returns
    /// [`is_set`](Self::is_set).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if self.wait_for(left) || left == Some(Duration::ZERO) {
                return self.is_set();
            }
        }
    }

    /// One poll on the descriptor; `true` once set.
    fn wait_for(&self, timeout: Option<Duration>) -> bool {
        if self.is_set() {
            return true;
        }
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        let mut fds = [PollFd::new(&self.inner.read, PollFlags::IN)];
        // EINTR and spurious wake-ups just go round again; the flag is set
        // before the byte is written, so a readable descriptor means set.
        let _ = poll(&mut fds, timeout.as_ref());
        self.is_set()
    }
}

impl AsFd for StopSignal {
    /// A descriptor that is readable once stopping was asked for, and then
    /// for good. Poll it for readability; never read from it.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.read.as_fd()
    }
}

/// The signal number for `ALLY_STOP_SIGNAL`: `SIGTERM`, `TERM` or a number.
pub(crate) fn parse_signal(name: Option<&str>) -> Result<i32, Error> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(SIGTERM);
    };
    use signal_hook::consts::signal as s;
    let known = [
        ("HUP", s::SIGHUP),
        ("INT", s::SIGINT),
        ("QUIT", s::SIGQUIT),
        ("USR1", s::SIGUSR1),
        ("USR2", s::SIGUSR2),
        ("TERM", s::SIGTERM),
        ("WINCH", s::SIGWINCH),
    ];
    let bare = name.strip_prefix("SIG").unwrap_or(name);
    known
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(bare))
        .map(|&(_, sig)| sig)
        .or_else(|| {
            name.parse::<i32>()
                .ok()
                .filter(|n| known.iter().any(|&(_, sig)| sig == *n))
        })
        .ok_or_else(|| Error::BadEnv {
            var: env::STOP_SIGNAL,
            value: Some(name.to_owned()),
            expected: "a signal name such as SIGTERM (one of HUP INT QUIT USR1 USR2 TERM WINCH)",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_parse() {
        assert_eq!(parse_signal(None).unwrap(), SIGTERM);
        assert_eq!(parse_signal(Some("SIGTERM")).unwrap(), SIGTERM);
        assert_eq!(parse_signal(Some("usr1")).unwrap(), s_usr1());
        assert_eq!(parse_signal(Some("2")).unwrap(), SIGINT);
        assert!(parse_signal(Some("SIGKILL")).is_err());
        assert!(parse_signal(Some("9")).is_err());
        assert!(parse_signal(Some("BOGUS")).is_err());
    }

    fn s_usr1() -> i32 {
        signal_hook::consts::SIGUSR1
    }

    #[test]
    fn stopping_is_announced_once_at_the_first_look_after_the_signal() {
        static ANNOUNCED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn count() {
            ANNOUNCED.fetch_add(1, Ordering::SeqCst);
        }
        let stop = StopSignal::with_announce(Some(count)).unwrap();
        assert!(!stop.is_set());
        assert_eq!(ANNOUNCED.load(Ordering::SeqCst), 0);
        stop.trigger();
        let other = stop.clone();
        std::thread::spawn(move || other.wait()).join().unwrap();
        assert!(stop.is_set() && stop.wait_timeout(Duration::ZERO));
        assert_eq!(ANNOUNCED.load(Ordering::SeqCst), 1);
        // A stop signal of its own announces nothing.
        let own = StopSignal::new().unwrap();
        own.trigger();
        assert!(own.is_set());
        assert_eq!(ANNOUNCED.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn trigger_wakes_waiters_and_stays_set() {
        let stop = StopSignal::new().unwrap();
        assert!(!stop.is_set());
        assert!(!stop.wait_timeout(Duration::from_millis(20)));
        let other = stop.clone();
        let waiter = std::thread::spawn(move || other.wait());
        stop.trigger();
        waiter.join().unwrap();
        assert!(stop.is_set());
        assert!(stop.wait_timeout(Duration::ZERO));
        // Stays readable for every poller.
        let mut fds = [PollFd::new(&stop, PollFlags::IN)];
        assert_eq!(poll(&mut fds, Some(&Timespec::default())).unwrap(), 1);
    }
}
