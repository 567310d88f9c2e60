//! The connection's socket as hyper sees it: counted while it lives, and
//! closed gracefully.

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

/// A served connection: its stream, and its place in the count.
///
/// Shutting it down (which hyper does after the last response) shuts the
/// write side, then reads and discards until the client closes, at most
/// `linger`: closing a socket with unread input sends a reset, which can
/// destroy the last response before the client has read it.
#[derive(Debug)]
pub(super) struct Io {
    stream: TcpStream,
    linger: Duration,
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
    pub(super) fn new(stream: TcpStream, linger: Duration, tracked: Tracked) -> Io {
        Io {
            stream,
            linger,
            close: Close::Open,
            _tracked: tracked,
        }
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
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
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
                    this.close = Close::Lingering(Box::pin(::tokio::time::sleep(this.linger)));
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
