//! The stream of connections tonic serves: accepted until the stop, each
//! counted while it lives, the time of the last one kept for the grace.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::tonic::codegen::tokio_stream::Stream;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::hyper::io::{FIRST_BYTE_TIMEOUT, Io};
use crate::tokio::{Listener, Stop, Tracker};

/// After an accept error of the listener itself (out of descriptors or
/// memory: it skips a single connection's errors), the pause before the
/// next accept, as in [`ally::hyper`](crate::hyper).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// When the last connection was accepted.
#[derive(Debug, Default)]
pub(super) struct LastAccept(Mutex<Option<Instant>>);

impl LastAccept {
    pub(super) fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
    }

    pub(super) fn get(&self) -> Option<Instant> {
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

/// Accepts on `listener`, after a pause (cut short by the stop) if `backoff`.
fn accept(listener: Arc<Listener>, backoff: Option<Stop>) -> Accepting {
    Box::pin(async move {
        if let Some(stop) = backoff {
            tokio::select! {
                () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                () = stop.stopped() => {}
            }
        }
        let result = listener.accept().await;
        Accepted { listener, result }
    })
}

/// The connections tonic serves: from the listener until the stop, then
/// none, without ending (an ended stream would start tonic's graceful stop
/// at once, which is what the grace is for).
pub(super) struct Incoming {
    /// `None` once stopped: the listener is dropped then, and closed.
    accepting: Option<Accepting>,
    stop: Stop,
    tracker: Tracker,
    last_accept: Arc<LastAccept>,
}

impl Incoming {
    pub(super) fn new(
        listener: Listener,
        stop: &Stop,
        tracker: Tracker,
        last_accept: Arc<LastAccept>,
    ) -> Incoming {
        Incoming {
            accepting: Some(accept(Arc::new(listener), None)),
            stop: stop.clone(),
            tracker,
            last_accept,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Io>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Stopped: pending for good; tonic stops on its shutdown signal,
            // whose future wakes it.
            let Some(accepting) = this.accepting.as_mut() else {
                return Poll::Pending;
            };
            let Accepted { listener, result } = ready!(accepting.as_mut().poll(cx));
            match result {
                Ok(Some((stream, _peer))) => {
                    this.last_accept.set(Instant::now());
                    this.accepting = Some(accept(listener, None));
                    let conn = Io::new(stream, FIRST_BYTE_TIMEOUT, this.tracker.track());
                    return Poll::Ready(Some(Ok(conn)));
                }
                Ok(None) => this.accepting = None,
                Err(e) => {
                    // tonic would drop the error without a word.
                    eprintln!(
                        "ally: pid {}: accept failed: {e}; retrying in {} s",
                        std::process::id(),
                        ACCEPT_BACKOFF.as_secs()
                    );
                    this.accepting = Some(accept(listener, Some(this.stop.clone())));
                }
            }
        }
    }
}
