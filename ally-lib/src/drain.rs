//! Draining a std server: accept until the stop signal, then let every
//! connection finish.
//!
//! When a reload makes a new instance main, the master sends the old one the
//! stop signal. The new instance already accepts on the same sockets, so the
//! old one only has to stop accepting and finish what it holds, without
//! failing a single request. [`accept`] and [`Drain`] are the pieces;
//! the HTTP keep-alive pattern below is how to use them.
//!
//! **For HTTP/1.1, use [`ally::http`](crate::http)**: it follows every rule
//! below, and the handler only maps a request to a response. This module is
//! for other protocols, and for servers that want their own HTTP code.
//!
//! # The pattern
//!
//! ```no_run
//! use std::time::Duration;
//!
//! fn main() -> std::io::Result<()> {
//!     let stop = ally::stop_signal()?;
//!     let listener = ally::listen_tcp("127.0.0.1:8080")?;
//!     ally::ready()?;
//!     let drain = ally::drain::Drain::new();
//!     while let Some((stream, _peer)) = ally::drain::accept(&listener, &stop)? {
//!         let guard = drain.track(); // counted before the thread starts
//!         let drain = drain.clone();
//!         std::thread::spawn(move || {
//!             let _guard = guard;
//!             // Serve requests on `stream`; once `drain.is_draining()`,
//!             // answer the next one with `Connection: close` and close.
//!             # let _ = (stream, drain);
//!         });
//!     }
//!     drop(listener); // stop accepting; the new instance accepts now
//!     drain.start();
//!     if !drain.wait_idle(Duration::from_secs(25)) {
//!         eprintln!("drain deadline passed with {} connections", drain.active());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # HTTP keep-alive
//!
//! Closing an idle keep-alive connection is what makes reloads fail
//! requests elsewhere: the client may be sending its next request at that
//! very moment, and it gets a reset instead of an answer. So, once
//! draining:
//!
//! 1. **Stop accepting.** Connections still in the accept queue are taken
//!    by the new instance, which shares the socket.
//! 2. **Finish in-flight requests** normally, but with `Connection: close`.
//! 3. **Answer the next request** on each idle keep-alive connection, with
//!    `Connection: close`, rather than closing the connection under it.
//!    Check [`Drain::is_draining`] when writing each response, not when the
//!    request arrived: a connection accepted just before the stop signal
//!    must still get its first request answered.
//! 4. **Close gracefully**: after the last response, shut down the write
//!    side and read until end-of-stream (or a short timeout), discarding what
//!    arrives. Closing a socket with unread bytes sends a reset, which can
//!    destroy the response the client has not read yet.
//! 5. **Close connections idle longer than the keep-alive timeout**, as in
//!    normal operation: a client that keeps a connection open but sends
//!    nothing must not hold the old instance forever. Keep that timeout
//!    shorter than the master's stop timeout, or `SIGKILL` closes idle
//!    connections first, with no grace at all.
//! 6. **Exit** when [`Drain::wait_idle`] returns true, or when a drain
//!    deadline passes (shorter than the master's stop timeout, after which
//!    it sends `SIGKILL`).
//!
//! [`ally::http`](crate::http) is a complete server built this way.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{self, UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};

use crate::listener::retry_accept;
use crate::stop::StopSignal;

/// Accepts the next connection on `listener`, or returns `Ok(None)` once
/// `stop` is set.
///
/// The listener must be non-blocking, as every listener from this crate
/// is: other instances accept on the same socket, and a connection this
/// one was woken for may be taken by another (`WouldBlock`), in which case
/// it waits again. The returned stream is **blocking** (its own file
/// description, unlike the listener's), ready for a thread per connection.
///
/// `stop` wins over pending connections: once set, nothing more is
/// accepted here; under a master, queued connections go to the new
/// instance.
///
/// # Errors
///
/// Errors of `poll` and `accept` other than those that only concern one
/// connection (`ECONNABORTED` and the network errors `accept(2)` says to
/// retry on). Running out of descriptors (`EMFILE`) is returned: decide
/// whether to back off or exit.
pub fn accept(
    listener: &TcpListener,
    stop: &StopSignal,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    accept_with(listener, stop, || listener.accept(), |s| &s.0)
}

/// [`accept`] for a unix stream listener.
///
/// # Errors
///
/// As [`accept`].
pub fn accept_unix(
    listener: &UnixListener,
    stop: &StopSignal,
) -> io::Result<Option<(UnixStream, net::SocketAddr)>> {
    accept_with(listener, stop, || listener.accept(), |s| &s.0)
}

trait Blocking {
    fn set_blocking(&self) -> io::Result<()>;
}

impl Blocking for TcpStream {
    fn set_blocking(&self) -> io::Result<()> {
        self.set_nonblocking(false)
    }
}

impl Blocking for UnixStream {
    fn set_blocking(&self) -> io::Result<()> {
        self.set_nonblocking(false)
    }
}

fn accept_with<L: AsFd, T, S: Blocking>(
    listener: &L,
    stop: &StopSignal,
    mut accept: impl FnMut() -> io::Result<T>,
    stream: impl Fn(&T) -> &S,
) -> io::Result<Option<T>> {
    loop {
        if stop.is_set() {
            return Ok(None);
        }
        let mut fds = [
            PollFd::new(stop, PollFlags::IN),
            PollFd::new(listener, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if stop.is_set() {
            return Ok(None);
        }
        if fds[1].revents().is_empty() {
            continue;
        }
        match accept() {
            Ok(conn) => {
                // Linux does not pass O_NONBLOCK on to accepted sockets;
                // make sure, since a blocking one is what callers expect.
                stream(&conn).set_blocking()?;
                return Ok(Some(conn));
            }
            Err(e) if retry_accept(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Counts live connections and tells them when to wind down.
///
/// Clones share the count. Take a [`ConnGuard`] with [`track`](Self::track)
/// in the accepting thread, before handing the connection to its own
/// thread, so the count never misses a connection that was accepted but
/// not yet started.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct State {
    active: usize,
    draining: bool,
}

impl Drain {
    /// A drain with no connections, not draining.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more live connection until the guard drops.
    pub fn track(&self) -> ConnGuard {
        self.lock().active += 1;
        ConnGuard {
            drain: self.clone(),
        }
    }

    /// Number of live connections.
    pub fn active(&self) -> usize {
        self.lock().active
    }

    /// Whether [`start`](Self::start) was called: connections should answer
    /// their next request with `Connection: close` and close.
    pub fn is_draining(&self) -> bool {
        self.lock().draining
    }

    /// Starts draining.
    pub fn start(&self) {
        self.lock().draining = true;
    }

    /// Blocks until no connection is live or `timeout` passes; returns
    /// whether none is live.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        while state.active > 0 {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return false;
            }
            state = match self.inner.idle.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two plain fields, consistent after any panic.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One live connection of a [`Drain`]; dropping it ends the connection's
/// count.
#[derive(Debug)]
#[must_use = "the connection is counted only while the guard lives"]
pub struct ConnGuard {
    drain: Drain,
}

impl ConnGuard {
    /// Whether the drain this connection belongs to has started.
    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut state = self.drain.lock();
        state.active -= 1;
        if state.active == 0 {
            self.drain.inner.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_idle_wakes_when_last_guard_drops() {
        let drain = Drain::new();
        assert!(drain.wait_idle(Duration::ZERO));
        let a = drain.track();
        let b = drain.track();
        assert_eq!(drain.active(), 2);
        assert!(!drain.wait_idle(Duration::from_millis(10)));
        drain.start();
        assert!(a.is_draining());
        let t = std::thread::spawn(move || {
            drop(a);
            std::thread::sleep(Duration::from_millis(20));
            drop(b);
        });
        assert!(drain.wait_idle(Duration::from_secs(10)));
        assert_eq!(drain.active(), 0);
        t.join().unwrap();
    }

    #[test]
    fn accept_returns_connections_then_none_after_stop() {
        let listener = crate::listen_tcp("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = StopSignal::new().unwrap();
        let _client = TcpStream::connect(addr).unwrap();
        let (stream, _) = accept(&listener, &stop).unwrap().unwrap();
        // Accepted streams are blocking even though the listener is not.
        let flags = rustix::fs::fcntl_getfl(&stream).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        // Stop wins over a pending connection.
        let _pending = TcpStream::connect(addr).unwrap();
        stop.trigger();
        assert!(accept(&listener, &stop).unwrap().is_none());
    }

    #[test]
    fn accept_unblocks_on_stop() {
        let listener = crate::listen_tcp("127.0.0.1:0").unwrap();
        let stop = StopSignal::new().unwrap();
        let trigger = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            trigger.trigger();
        });
        assert!(accept(&listener, &stop).unwrap().is_none());
        t.join().unwrap();
    }
}
