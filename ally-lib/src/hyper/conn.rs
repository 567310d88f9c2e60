//! One connection's life: served, then drained at the stop.

use std::error::Error as StdError;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

use super::io::Io;
use super::service::CloseWhenDraining;
use crate::tokio::Stop;

/// Serves `io` until it closes (or cuts it, if it stays silent: see
/// [`Io`]); at the stop, drains it:
///
/// - HTTP/1: every response from now on says `Connection: close` (see
///   [`CloseWhenDraining`]), so a busy keep-alive connection closes right
///   after its next response. One still open `idle_grace` after the stop
///   is then closed (hyper's graceful shutdown: at once if idle, else
///   after the response in progress). It is not closed at the stop because its
///   client may be sending a request at that very moment.
/// - HTTP/2: `GOAWAY` at once (hyper's graceful shutdown), which tells the
///   client which streams were taken; those finish, new ones go to a new
///   connection.
///
/// Connection errors (a client reset, a malformed request) end the
/// connection; they are the client's, not the server's, and are dropped.
pub(super) async fn serve<S, B>(
    builder: Arc<Builder<TokioExecutor>>,
    io: Io,
    service: S,
    stop: Stop,
    idle_grace: Duration,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let h2 = Arc::new(AtomicBool::new(false));
    let service = CloseWhenDraining::new(service, stop.clone(), Arc::clone(&h2));
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    ::tokio::select! {
        biased;
        _ = conn.as_mut() => return,
        () = stop.stopped() => {}
    }
    if !h2.load(Ordering::Relaxed) {
        ::tokio::select! {
            biased;
            _ = conn.as_mut() => return,
            () = ::tokio::time::sleep(idle_grace) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
