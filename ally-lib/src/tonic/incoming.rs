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
use ::tonic::transport::server::{Connected, TcpConnectInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::tokio::{Listener, Stop, Tracked, Tracker};

/// After an accept error of the listener itself (out of descriptors or
/// memory: it skips a single connection's errors), the pause before the
/// next accept, as in [`ally::hyper`](crate::hyper).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How long a new connection may send nothing before it is closed: hyper's
/// HTTP/2 server waits for the client's preface without limit, so a client
/// that connects and stays silent would hold a descriptor until the stop.
/// As long as hyper gives an HTTP/1 request head.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

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
    type Item = io::Result<Conn>;

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
                    let conn = Conn::new(stream, this.tracker.track());
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

/// A connection, counted by the tracker while it lives; its reads fail
/// with `TimedOut` if nothing came [`FIRST_BYTE_TIMEOUT`] after the accept.
#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    /// Until the first byte.
    silence: Option<Pin<Box<Sleep>>>,
    _tracked: Tracked,
}

impl Conn {
    fn new(stream: TcpStream, tracked: Tracked) -> Conn {
        Conn {
            stream,
            silence: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_TIMEOUT))),
            _tracked: tracked,
        }
    }
}

/// The peer's and the local address, for `Request::remote_addr`.
impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.silence = None;
        }
        if read.is_pending()
            && let Some(silence) = &mut this.silence
            && silence.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "nothing received on the new connection",
            )));
        }
        read
    }
}

impl AsyncWrite for Conn {
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_times_out_and_one_that_sent_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tracker = Tracker::new();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut silent = Conn::new(listener.accept().await.unwrap().0, tracker.track());
        let mut talking_client = TcpStream::connect(addr).await.unwrap();
        let mut talking = Conn::new(listener.accept().await.unwrap().0, tracker.track());
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(FIRST_BYTE_TIMEOUT * 2, silent.read(&mut buf)).await;
        let e = read.expect("a silent connection is cut").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= FIRST_BYTE_TIMEOUT);

        talking_client.write_all(b"P").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        let quiet = tokio::time::timeout(FIRST_BYTE_TIMEOUT * 2, talking.read(&mut buf)).await;
        assert!(quiet.is_err(), "a connection that sent was cut: {quiet:?}");
    }
}
