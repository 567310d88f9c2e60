//! A tonic gRPC server on an ally listener, drained without failing an RPC
//! (feature `tonic`).
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let stop = ally::tokio::Stop::new()?;
//!     let listener = ally::tokio::Listener::new(ally::listen_tcp("127.0.0.1:50051")?, &stop)?;
//!     let (_health, health) = tonic_health::server::health_reporter();
//!     let router = tonic::transport::Server::builder().add_service(health); // and yours
//!     ally::ready()?;
//!     ally::tonic::serve(router, listener, &stop).await?; // returns once drained
//!     Ok(())
//! }
//! ```
//!
//! # Why not `serve_with_incoming_shutdown(listener, stop)`
//!
//! That starts hyper's graceful stop on every connection the moment the
//! stop signal comes. A connection accepted a moment before — its client
//! has connected but not yet sent the HTTP/2 preface — is closed at once
//! (hyper has nothing to send `GOAWAY` on yet), and its first RPC fails: a
//! tonic client says `Cancelled: operation was canceled: connection
//! closed`, a Go one `connection closed before server preface received`.
//! One that has just sent its preface gets `GOAWAY` before its first RPC,
//! which its client may be sending at that moment (`Internal: ... GoAway`).
//! With clients that connect often, some stops catch one: the e2e test's
//! 16 clients saw about one failed RPC per reload.
//!
//! # What [`serve`] does instead
//!
//! 1. **Stop accepting** at the stop signal (the [`Listener`] ends then and
//!    is closed; under a master the new instance accepts from the same
//!    socket, queued connections included).
//! 2. **Grace**: keep serving, as before, until [`Options::grace`] after
//!    the last connection accepted — so at most that long after the stop,
//!    and not at all when nothing was accepted within it. A connection
//!    that just arrived has that long to send its preface and its first
//!    RPCs, which are served like any other.
//! 3. **Graceful stop**: hyper sends each connection `GOAWAY` (twice, with
//!    a `PING` between, so a stream the client opened meanwhile is still
//!    served), finishes the RPCs in flight and closes; clients reconnect,
//!    to the new instance.
//! 4. **Deadline**: [`Options::deadline`] after the stop, [`serve`] returns
//!    even if RPCs are still running (a long stream); the connections left
//!    end when the process exits. Keep it below the app's `stop_timeout` in
//!    the master's configuration (30 s by default), after which the master
//!    kills the instance.
//!
//! The grace is a bounded wait, not a condition: HTTP/2 gives the server no
//! sign that a client is about to send its preface or its first request.
//! The seed of this recipe advises at least three times the largest round
//! trip, and never under 50 ms; the default [`Options::DEFAULT_GRACE`] of
//! 1 s also covers a loaded machine's scheduling delays, and costs only
//! stop time (the old instance serves on meanwhile).
//!
//! # Limits
//!
//! - A client that keeps one connection and sends an RPC just as the
//!   `GOAWAY` arrives: gRPC's own clients (Go, Java, C++) retry it
//!   transparently, as it never reached the server, but tonic's client
//!   (0.14) fails it (`Cancelled: ... connection closed` or `Internal: ...
//!   GoAway NO_ERROR`). No server closes a connection without that race;
//!   such a tonic client needs to retry those two errors. Measured: 17
//!   failed of 31 551 RPCs for 9 clients that each kept a channel and sent
//!   an RPC every 2 ms, over 20 reloads (none for clients that reconnect).
//! - Each stop lasts the grace: reloads closer together than that pile up
//!   draining instances, and past the master's `max_draining` (4 by
//!   default) it kills the oldest, connections and all.
//! - Errors of `accept` other than a single connection's (out of
//!   descriptors or memory) pause accepting for [`ACCEPT_BACKOFF`], as
//!   hyper's and axum's servers do; tonic drops the error.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::tonic::body::Body;
use ::tonic::codegen::http::{Request, Response};
use ::tonic::codegen::tokio_stream::Stream;
use ::tonic::codegen::{Bytes, Service, StdError};
use ::tonic::service::Routes;
use ::tonic::transport::server::{Connected, Router, TcpConnectInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_layer::Layer;

use crate::tokio::{Listener, Stop, Tracker};

/// How [`serve`] drains; [`Options::default`] has the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    grace: Duration,
    deadline: Duration,
}

impl Options {
    /// Default of [`Options::grace`]: 1 s.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);
    /// Default of [`Options::deadline`]: 25 s, under the master's default
    /// `stop_timeout` of 30 s.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(25);

    /// How long after the last connection accepted (and so at most after
    /// the stop) the graceful stop starts.
    pub fn grace(self, grace: Duration) -> Options {
        Options { grace, ..self }
    }

    /// How long after the stop [`serve`] returns, drained or not. It counts
    /// the grace too: a deadline under the grace cuts every connection.
    pub fn deadline(self, deadline: Duration) -> Options {
        Options { deadline, ..self }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            grace: Options::DEFAULT_GRACE,
            deadline: Options::DEFAULT_DEADLINE,
        }
    }
}

/// How [`serve`] ended, once stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Served {
    /// Every connection closed after its last RPC.
    Drained,
    /// [`Options::deadline`] passed with this many connections open.
    DeadlinePassed {
        /// Connections still open.
        open: usize,
    },
}

/// Serves `router` on `listener` until `stop`, then drains as the
/// [module docs](self) say, with [`Options::default`].
///
/// # Errors
///
/// When tonic fails (it does not for a connection's error, only when it
/// cannot serve at all).
pub async fn serve<L, ResBody>(
    router: Router<L>,
    listener: Listener,
    stop: &Stop,
) -> io::Result<Served>
where
    L: Layer<Routes>,
    L::Service: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<Request<Body>>>::Future: Send,
    <L::Service as Service<Request<Body>>>::Error: Into<StdError> + Send,
    ResBody: ::tonic::codegen::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<StdError>,
{
    serve_with(router, listener, stop, Options::default()).await
}

/// [`serve`] with other [`Options`].
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_with<L, ResBody>(
    router: Router<L>,
    listener: Listener,
    stop: &Stop,
    options: Options,
) -> io::Result<Served>
where
    L: Layer<Routes>,
    L::Service: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<Request<Body>>>::Future: Send,
    <L::Service as Service<Request<Body>>>::Error: Into<StdError> + Send,
    ResBody: ::tonic::codegen::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<StdError>,
{
    let tracker = Tracker::new();
    let last_accept = Arc::new(LastAccept::default());
    let incoming = Incoming::new(listener, tracker.clone(), Arc::clone(&last_accept));
    let wind_down = grace(stop.clone(), last_accept, options.grace);
    let server = router.serve_with_incoming_shutdown(incoming, wind_down);
    let deadline = async {
        stop.stopped().await;
        tokio::time::sleep(options.deadline).await;
    };
    tokio::select! {
        served = server => served.map(|()| Served::Drained).map_err(io::Error::other),
        () = deadline => Ok(Served::DeadlinePassed { open: tracker.active() }),
    }
}

/// The shutdown signal given to tonic: the stop, then the grace after the
/// last connection accepted.
async fn grace(stop: Stop, last_accept: Arc<LastAccept>, grace: Duration) {
    stop.stopped().await;
    // Checked again after each sleep: a connection accepted as the stop
    // came may be recorded after the first look.
    while let Some(at) = last_accept.get() {
        let until = at + grace;
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep_until(until).await;
    }
}

/// When the last connection was accepted.
#[derive(Debug, Default)]
struct LastAccept(Mutex<Option<Instant>>);

impl LastAccept {
    fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
    }

    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One accept in progress, which hands the listener back with its result.
type Accepting = Pin<Box<dyn Future<Output = Accepted> + Send>>;

/// An accept's result and the listener it came from.
struct Accepted {
    listener: Arc<Listener>,
    result: io::Result<Option<(TcpStream, SocketAddr)>>,
}

/// After an accept error (out of descriptors or memory: the listener skips
/// a single connection's errors), the pause before the next accept: 1 s,
/// as hyper's and axum's servers make.
pub const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

fn accept(listener: Arc<Listener>, after: Option<Duration>) -> Accepting {
    Box::pin(async move {
        if let Some(pause) = after {
            tokio::time::sleep(pause).await;
        }
        let result = listener.accept().await;
        Accepted { listener, result }
    })
}

/// The connections tonic serves: from the listener until the stop, then
/// none, without ending (an ended stream would start tonic's graceful stop
/// at once, which is what the grace is for).
struct Incoming {
    /// `None` once stopped; the listener is then dropped, and closed.
    accepting: Option<Accepting>,
    tracker: Tracker,
    last_accept: Arc<LastAccept>,
}

impl Incoming {
    fn new(listener: Listener, tracker: Tracker, last_accept: Arc<LastAccept>) -> Incoming {
        Incoming {
            accepting: Some(accept(Arc::new(listener), None)),
            tracker,
            last_accept,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Tracked>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Stopped: pending for good; tonic stops on its shutdown signal.
            let Some(accepting) = this.accepting.as_mut() else {
                return Poll::Pending;
            };
            let Accepted { listener, result } = ready!(accepting.as_mut().poll(cx));
            match result {
                Ok(Some((stream, _peer))) => {
                    this.last_accept.set(Instant::now());
                    this.accepting = Some(accept(listener, None));
                    let conn = Tracked {
                        stream,
                        _guard: this.tracker.track(),
                    };
                    return Poll::Ready(Some(Ok(conn)));
                }
                Ok(None) => this.accepting = None,
                // tonic ignores the error; the pause keeps it from spinning.
                Err(e) => {
                    this.accepting = Some(accept(listener, Some(ACCEPT_BACKOFF)));
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// A connection counted by the tracker while it lives.
#[derive(Debug)]
struct Tracked {
    stream: TcpStream,
    _guard: crate::tokio::Tracked,
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StopSignal;

    const GRACE: Duration = Duration::from_secs(1);

    /// A `Stop` already stopped, as the grace sees it at the stop signal.
    async fn stopped() -> Stop {
        let signal = StopSignal::new().unwrap();
        let stop = Stop::with_signal(signal.clone()).unwrap();
        signal.trigger();
        stop.stopped().await;
        stop
    }

    #[tokio::test(start_paused = true)]
    async fn no_connection_accepted_means_no_grace() {
        let stop = stopped().await;
        let start = Instant::now();
        grace(stop, Arc::default(), GRACE).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_runs_from_the_last_connection_accepted() {
        let last = Arc::new(LastAccept::default());
        last.set(Instant::now());
        tokio::time::advance(Duration::from_millis(300)).await;
        let stop = stopped().await;
        let start = Instant::now();
        grace(stop, last, GRACE).await;
        assert_eq!(start.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_accepted_as_the_stop_came_gets_the_whole_grace() {
        let last = Arc::new(LastAccept::default());
        last.set(Instant::now());
        let stop = stopped().await;
        let start = Instant::now();
        let waiting = tokio::spawn(grace(stop, Arc::clone(&last), GRACE));
        tokio::time::advance(Duration::from_millis(400)).await;
        // Recorded after the grace first looked.
        last.set(Instant::now());
        waiting.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1400));
    }
}
