//! A tonic gRPC server on an ally listener, drained without failing an RPC
//! (feature `tonic`).
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let (_health, health) = tonic_health::server::health_reporter();
//!     let router = tonic::transport::Server::builder().add_service(health); // and yours
//!     let drained = ally::tonic::serve(ally::listen_tcp("127.0.0.1:50051")?, router).await?;
//!     eprintln!("exiting: {drained}");
//!     Ok(())
//! }
//! ```
//!
//! Like [`ally::hyper::serve`](crate::hyper::serve), awaiting the [`Serve`]
//! installs the stop signal's handlers ([`Stop::new`], unless
//! [`stop`](Serve::stop) gave one), marks the instance ready
//! ([`ready`](crate::ready), unless [`ready(false)`](Serve::ready)),
//! serves, and returns what the drain left ([`Drained`]).
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
//! With clients that connect often, many stops catch one: under the e2e
//! test's 16 reconnecting clients, a plain `serve_with_incoming_shutdown`
//! (`tonic-naive`) failed 7 to 26 RPCs over 20 reloads, and [`serve`] none.
//!
//! # What [`serve`] does instead
//!
//! 1. **Stop accepting** at the stop signal, and close the listener (under
//!    a master the new instance accepts from the same socket, queued
//!    connections included).
//! 2. **Grace**: keep serving, as before, until [`grace`](Serve::grace)
//!    (default [`GRACE`]) after the last connection accepted — so at most
//!    that long after the stop, and not at all when nothing was accepted
//!    within it. A connection
//!    that just arrived has that long to send its preface and its first
//!    RPCs, which are served like any other.
//! 3. **Graceful stop**: hyper sends each connection `GOAWAY` (twice, with
//!    a `PING` between, so a stream the client opened meanwhile is still
//!    served), finishes the RPCs in flight and closes; clients reconnect,
//!    to the new instance.
//! 4. **Deadline**: [`deadline`](Serve::deadline) (default [`DEADLINE`])
//!    after the stop, [`Serve`] returns even if RPCs are still running (a
//!    long stream); the connections left end when the process exits. Keep
//!    it below the app's `stop_timeout` in the master's configuration (30 s
//!    by default), after which the master kills the instance.
//!
//! The grace is a bounded wait, not a condition: HTTP/2 gives the server no
//! sign that a client is about to send its preface or its first request.
//! The seed of this recipe advises at least three times the largest round
//! trip, and never under 50 ms; the default [`GRACE`] of 1 s also covers a
//! loaded machine's scheduling delays, and costs only stop time (the old
//! instance serves on meanwhile).
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
//! - An error of `accept` other than a single connection's (out of
//!   descriptors or memory) is printed to stderr, and accepting pauses for
//!   1 s, as in [`ally::hyper`](crate::hyper).
//! - Bounds: this module adds no buffer or queue (tonic takes one accepted
//!   connection at a time) and no wait past the grace and the deadline.
//!   Connections, streams per connection, message sizes and request
//!   timeouts are tonic's to bound, set on the `Server::builder()` the
//!   router comes from (`concurrency_limit_per_connection`,
//!   `max_concurrent_streams`, `timeout`, ...); the kernel's backlog bounds
//!   the connections waiting to be accepted. A connection that sends
//!   nothing for 30 s after its accept is closed (hyper would wait for
//!   its preface without limit).

mod incoming;

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use ::tonic::body::Body;
use ::tonic::codegen::http::{Request, Response};
use ::tonic::codegen::{Bytes, Service, StdError};
use ::tonic::service::Routes;
use ::tonic::transport::server::Router;
use tokio::time::Instant;
use tower_layer::Layer;

pub use crate::hyper::Drained;
use crate::hyper::Start;
use crate::tokio::{Stop, Tracker};
use incoming::{Incoming, LastAccept};

/// Default [`Serve::grace`]: how long after the last connection accepted
/// tonic's graceful stop starts (so at most this long after the stop).
pub const GRACE: Duration = Duration::from_secs(1);

/// Default [`Serve::deadline`]: the longest drain, from the stop; under the
/// master's default `stop_timeout` of 30 s.
pub const DEADLINE: Duration = Duration::from_secs(25);

/// Serves `router` on `listener` (from [`listen_tcp`](crate::listen_tcp))
/// until the stop signal, then drains as [the module](self) says.
pub fn serve<L>(listener: impl Into<std::net::TcpListener>, router: Router<L>) -> Serve<L> {
    Serve {
        listener: listener.into(),
        router,
        start: Start::default(),
        grace: GRACE,
        deadline: DEADLINE,
    }
}

/// A server to await; options first. See [`serve`].
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve<L> {
    listener: std::net::TcpListener,
    router: Router<L>,
    start: Start,
    grace: Duration,
    deadline: Duration,
}

impl<L> std::fmt::Debug for Serve<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("start", &self.start)
            .field("grace", &self.grace)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<L> Serve<L> {
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

    /// How long after the last connection accepted tonic's graceful stop
    /// starts (default [`GRACE`]); `ZERO` starts it at the stop, as a plain
    /// `serve_with_incoming_shutdown` does, and fails RPCs.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The longest drain, from the stop (default [`DEADLINE`]). It counts
    /// the grace too: a deadline under the grace cuts every connection.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

impl<L, ResBody> IntoFuture for Serve<L>
where
    L: Layer<Routes> + Send + 'static,
    L::Service: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<Request<Body>>>::Future: Send,
    <L::Service as Service<Request<Body>>>::Error: Into<StdError> + Send,
    ResBody: ::tonic::codegen::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<StdError>,
{
    type Output = io::Result<Drained>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<L> Serve<L> {
    async fn run<ResBody>(self) -> io::Result<Drained>
    where
        L: Layer<Routes>,
        L::Service: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
        <L::Service as Service<Request<Body>>>::Future: Send,
        <L::Service as Service<Request<Body>>>::Error: Into<StdError> + Send,
        ResBody: ::tonic::codegen::Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<StdError>,
    {
        let (stop, listener) = self.start.begin(self.listener)?;
        let tracker = Tracker::new();
        let last_accept = Arc::new(LastAccept::default());
        let incoming = Incoming::new(listener, &stop, tracker.clone(), Arc::clone(&last_accept));
        let wind_down = grace(stop.clone(), last_accept, self.grace);
        let mut server = pin!(
            self.router
                .serve_with_incoming_shutdown(incoming, wind_down)
        );
        let drained = |left_open| Drained {
            at_stop: 0,
            left_open,
            deadline: self.deadline,
        };
        let at_stop = tokio::select! {
            // tonic ends only after its shutdown signal, so after the stop;
            // before it only on an error.
            served = &mut server => {
                served.map_err(io::Error::other)?;
                return Ok(drained(0));
            }
            () = stop.stopped() => tracker.active(),
        };
        let left_open = match tokio::time::timeout(self.deadline, server).await {
            Ok(served) => served.map(|()| 0).map_err(io::Error::other)?,
            Err(_) => tracker.active(),
        };
        Ok(Drained {
            at_stop,
            ..drained(left_open)
        })
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

    /// The README shows the tonic example as it is, in full.
    #[test]
    fn readme_shows_the_example() {
        let readme = include_str!("../../../README.md");
        let example = include_str!("../../examples/tonic.rs");
        assert!(
            readme.contains(&format!("```rust,ignore\n{example}```")),
            "README.md's tonic example differs from ally-lib/examples/tonic.rs: copy it over"
        );
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
