//! A served connection's socket as hyper sees it, for [`serve`](super::serve)
//! and [`ally::tonic`](crate::tonic): counted while it lives, cut if it
//! stays silent after its accept, and closed gracefully.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ::tokio::net::TcpStream;
use ::tokio::time::Sleep;

use crate::tokio::Tracked;

/// Reads of discarded input per poll while lingering, so that a client
/// sending without pause cannot keep a worker from other tasks.
const LINGER_READS_PER_POLL: usize = 16;

/// How long a new connection may stay silent before it is cut: hyper's own
/// limit for an HTTP/1 request head, which starts only after the first
/// byte.
pub(crate) const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// A served connection: its stream, and its place in the count.
///
/// Its reads fail with `TimedOut` if nothing came `first_byte` after the
/// accept: hyper waits for a new connection's first byte (which tells
/// HTTP/1 from HTTP/2, or is the HTTP/2 preface) without limit, so a
/// client that connects and says nothing would hold a descriptor until the
/// stop. Nothing was read then, so closing it sends no reset.
///
/// With a `linger`, shutting it down (which hyper does after the last
/// response) shuts the write side, then reads and discards until the
/// client closes, at most `linger`: closing a socket with unread input
/// sends a reset, which can destroy the last response before the client
/// has read it.
#[derive(Debug)]
pub(crate) struct Io {
    stream: TcpStream,
    /// Until the first byte.
    silence: Option<Pin<Box<Sleep>>>,
    linger: Option<Duration>,
    close: Close,
    _tracked: Tracked,
}

#[derive(Debug)]
enum Close {
    Open,
    /// Write side shut; discarding input until end-of-stream or the timer.
    Lingering(Pin<Box<Sleep>>),
    Closed,
}

impl Io {
    /// `stream`, just accepted, which may stay silent for `first_byte`.
    pub(crate) fn new(stream: TcpStream, first_byte: Duration, tracked: Tracked) -> Io {
        Io {
            stream,
            silence: Some(Box::pin(::tokio::time::sleep(first_byte))),
            linger: None,
            close: Close::Open,
            _tracked: tracked,
        }
    }

    /// Lingers for the client's close, at most `linger`, when shut down.
    pub(crate) fn linger(mut self, linger: Duration) -> Io {
        self.linger = Some(linger);
        self
    }

    /// Discards input until end-of-stream, an error or the timer.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Close::Lingering(timer) = &mut self.close else {
            return Poll::Ready(());
        };
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut buf = [0u8; 4096];
        for _ in 0..LINGER_READS_PER_POLL {
            let mut read = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl AsyncRead for Io {
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

impl AsyncWrite for Io {
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
        let this = self.get_mut();
        loop {
            match this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                    this.close = match this.linger {
                        Some(linger) => Close::Lingering(Box::pin(::tokio::time::sleep(linger))),
                        None => Close::Closed,
                    };
                }
                Close::Lingering(_) => {
                    ready!(this.poll_linger(cx));
                    this.close = Close::Closed;
                }
                Close::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The peer's and the local address, for tonic's `Request::remote_addr`.
#[cfg(feature = "tonic")]
impl ::tonic::transport::server::Connected for Io {
    type ConnectInfo = ::tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
    use ::tokio::time::Instant;

    use super::*;
    use crate::tokio::Tracker;

    #[::tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_times_out_and_one_that_sent_does_not() {
        let listener = ::tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let tracker = Tracker::new();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let accepted = listener.accept().await.unwrap().0;
        let mut silent = Io::new(accepted, FIRST_BYTE_TIMEOUT, tracker.track());
        let mut talking_client = TcpStream::connect(addr).await.unwrap();
        let accepted = listener.accept().await.unwrap().0;
        let mut talking = Io::new(accepted, FIRST_BYTE_TIMEOUT, tracker.track());
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let read = ::tokio::time::timeout(FIRST_BYTE_TIMEOUT * 2, silent.read(&mut buf)).await;
        let e = read.expect("a silent connection is cut").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= FIRST_BYTE_TIMEOUT);

        talking_client.write_all(b"P").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        let quiet = ::tokio::time::timeout(FIRST_BYTE_TIMEOUT * 2, talking.read(&mut buf)).await;
        assert!(quiet.is_err(), "a connection that sent was cut: {quiet:?}");
    }
}
