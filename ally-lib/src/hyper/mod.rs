//! Serving a hyper service on an ally listener, drained right (feature
//! `hyper`).
//!
//! [`serve`] accepts on the listener until the stop signal and then drains
//! without failing a request a client sent:
//!
//! 1. **Stop accepting** at once, and close the listener: connections
//!    still queued are taken by the new instance, which shares the socket.
//! 2. **`Connection: close`** on every HTTP/1 response from then on, in
//!    flight or next, so each keep-alive client reconnects (to the new
//!    instance) after an answer, not after a close under its request. (Not
//!    on a `101 Switching Protocols`, whose `Connection: upgrade` the
//!    client needs to take the upgrade.)
//! 3. **Idle connections** are not closed at the stop: a client may be
//!    sending on one at that very moment. A connection still open
//!    [`idle_grace`](Serve::idle_grace) (default [`IDLE_GRACE`]) after the
//!    stop is closed then: at once if idle, after its response if busy.
//!    This is what a bare `with_graceful_shutdown(stop)` gets wrong: hyper
//!    closes idle keep-alive connections at once, and the requests racing
//!    the close fail.
//! 4. **Graceful close**: after the last response, the write side is shut
//!    and input is read and discarded until the client closes, at most
//!    [`linger`](Serve::linger) (default [`LINGER`]): closing with unread
//!    input would send a reset, which can destroy the response unread.
//! 5. **Deadline**: [`serve`] returns once every connection is closed, or
//!    [`deadline`](Serve::deadline) (default [`DEADLINE`]) after the stop,
//!    dropping the connections left. Keep it under the master's
//!    `stop_timeout` (default 30 s), after which it sends `SIGKILL`.
//!
//! HTTP/2 (h2c, cleartext, with prior knowledge) is served too: at the stop
//! each HTTP/2 connection gets `GOAWAY` at once, its streams in progress
//! finish and the client opens a new connection for the next ones. (A
//! connection whose first request comes after the stop is treated as idle
//! HTTP/1 until then.) HTTP upgrades (WebSocket) are served; an upgraded
//! connection counts as open until it ends, so it holds the drain until the
//! deadline unless the application ends it at the stop
//! ([`Stop::stopped`]).
//!
//! # Bounds
//!
//! The number of connections is not limited here, only by the process's
//! descriptor limit (an accept that hits it is retried after 1 s). Each
//! connection is bounded by hyper's defaults: for HTTP/1 a 400 KiB read
//! buffer, 100 headers, 30 s to send a request's headers (and 30 s for a
//! new connection's first byte, here); for HTTP/2, 200
//! concurrent streams. Lingering reads at most 16 × 4 KiB per wake-up,
//! into a buffer on the stack, for at most [`LINGER`].
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let service = hyper::service::service_fn(|_: Request<Incoming>| async {
//!         Ok::<_, Infallible>(Response::new("hello\n".to_owned()))
//!     });
//!     let drained = ally::hyper::serve(ally::listen_tcp("127.0.0.1:8080")?, service).await?;
//!     eprintln!("exiting: {drained}");
//!     Ok(())
//! }
//! ```

mod conn;
pub(crate) mod io;
mod service;
#[cfg(test)]
mod tests;

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::task::JoinSet;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

use crate::tokio::{Listener, Stop, Tracker};

/// Default [`Serve::idle_grace`]: how long after the stop a connection may
/// stay open (busy ones close sooner, after their next response).
pub const IDLE_GRACE: Duration = Duration::from_secs(5);

/// Default [`Serve::linger`]: the longest wait for the client's close once
/// the last response is sent.
pub const LINGER: Duration = Duration::from_secs(2);

/// Default [`Serve::deadline`]: the longest drain, from the stop; under the
/// master's default `stop_timeout` of 30 s.
pub const DEADLINE: Duration = Duration::from_secs(25);

/// How long to wait before accepting again after an accept error of the
/// listener itself (out of descriptors or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` (from [`listen_tcp`](crate::listen_tcp))
/// until the stop signal, then drains as [the module](self) says.
///
/// Awaiting the [`Serve`] installs the stop signal's handlers
/// ([`Stop::new`], unless [`stop`](Serve::stop) gave one), marks the
/// instance ready ([`ready`](crate::ready), unless
/// [`ready(false)`](Serve::ready)), serves, and returns what the drain
/// left ([`Drained`]).
pub fn serve<S>(listener: impl Into<std::net::TcpListener>, service: S) -> Serve<S> {
    Serve {
        listener: listener.into(),
        service,
        start: Start::default(),
        idle_grace: IDLE_GRACE,
        first_byte_timeout: io::FIRST_BYTE_TIMEOUT,
        linger: LINGER,
        deadline: DEADLINE,
    }
}

/// A server to await; options first. See [`serve`].
#[derive(Debug)]
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve<S> {
    listener: std::net::TcpListener,
    service: S,
    start: Start,
    idle_grace: Duration,
    first_byte_timeout: Duration,
    linger: Duration,
    deadline: Duration,
}

impl<S> Serve<S> {
    /// Stops at `stop` instead of the process's stop signal (a `Stop` made
    /// earlier, or one on a [`StopSignal::new`](crate::StopSignal::new)).
    pub fn stop(mut self, stop: Stop) -> Self {
        self.start.stop = Some(stop);
        self
    }

    /// Whether to call [`ready`](crate::ready) once serving (default
    /// `true`). `false` for a service that opens more before it is ready,
    /// and calls it itself.
    pub fn ready(mut self, ready: bool) -> Self {
        self.start.ready = ready;
        self
    }

    /// How long after the stop a connection may stay open before it is
    /// closed (default [`IDLE_GRACE`]): a busy HTTP/1 connection closes
    /// sooner, after its next response; one still open then is closed at
    /// once if idle, after its response in progress if not. Shorter risks
    /// closing under a client about to send; longer keeps the old instance
    /// longer.
    pub fn idle_grace(mut self, grace: Duration) -> Self {
        self.idle_grace = grace;
        self
    }

    /// The longest wait for the client's close after the last response
    /// (default [`LINGER`]).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The longest drain, from the stop (default [`DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// [`io::FIRST_BYTE_TIMEOUT`], shorter for the tests.
    #[cfg(test)]
    fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Output = std::io::Result<Drained>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S> Serve<S> {
    async fn run<B>(self) -> std::io::Result<Drained>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn StdError + Send + Sync>>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let (stop, listener) = self.start.begin(self.listener)?;
        let builder = Arc::new(builder());
        let tracker = Tracker::new();
        // Dropped on return: the connections still open at the deadline
        // are closed.
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            match listener.accept().await {
                Ok(Some((stream, _peer))) => {
                    let io = io::Io::new(stream, self.first_byte_timeout, tracker.track())
                        .linger(self.linger);
                    conns.spawn(conn::serve(
                        Arc::clone(&builder),
                        io,
                        self.service.clone(),
                        stop.clone(),
                        self.idle_grace,
                    ));
                }
                Ok(None) => break,
                Err(e) => {
                    // The listener's own trouble (descriptors, memory): it
                    // may pass; say so, and try again unless stopping.
                    eprintln!(
                        "ally: pid {}: accept failed: {e}; retrying in {} s",
                        std::process::id(),
                        ACCEPT_BACKOFF.as_secs()
                    );
                    ::tokio::select! {
                        () = ::tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        () = stop.stopped() => {}
                    }
                }
            }
        }
        let at_stop = tracker.active();
        let closed = tracker.wait_idle(self.deadline).await;
        Ok(Drained {
            at_stop,
            left_open: if closed { 0 } else { tracker.active() },
            deadline: self.deadline,
        })
    }
}

/// How a server starts: the stop it waits for (the process's stop signal
/// unless given) and whether it says ready. Shared with
/// [`ally::tonic`](crate::tonic).
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) stop: Option<Stop>,
    pub(crate) ready: bool,
}

impl Default for Start {
    fn default() -> Start {
        Start {
            stop: None,
            ready: true,
        }
    }
}

impl Start {
    /// Installs the stop signal's handlers (unless a stop was given), makes
    /// `listener` one that accepts until the stop, and says ready if asked.
    pub(crate) fn begin(
        self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<(Stop, Listener)> {
        let stop = match self.stop {
            Some(stop) => stop,
            None => Stop::new()?,
        };
        let listener = Listener::new(listener, &stop)?;
        if self.ready {
            crate::ready()?;
        }
        Ok((stop, listener))
    }
}

/// hyper's connection builder: HTTP/1.1 and HTTP/2, with tokio's timer
/// (for hyper's own timeouts: HTTP/1 header read, 30 s).
fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    builder
}

/// What a drain left: returned by [`Serve`] once done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections open when the stop came.
    pub at_stop: usize,
    /// Connections still open at the deadline, and closed then (0: all
    /// closed on their own).
    pub left_open: usize,
    /// The deadline that applied.
    pub deadline: Duration,
}

impl fmt::Display for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.left_open == 0 {
            write!(f, "drained {} connections", self.at_stop)
        } else {
            write!(
                f,
                "drain deadline of {} s passed with {} of {} connections open",
                self.deadline.as_secs_f64(),
                self.left_open,
                self.at_stop
            )
        }
    }
}
