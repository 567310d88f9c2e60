//! [`Listener`]: accepts until the stop, then lets go of the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ::tokio::net::{TcpListener, TcpStream};

use super::Stop;

/// A TCP listener that accepts until the stop signal, then closes.
///
/// Under a master every instance holds the same listening socket: once
/// this one stops accepting, the connections still queued go to the new
/// instance. In simulate mode closing it closes the port.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let signal = ally::StopSignal::new()?;
/// let stop = ally::tokio::Stop::with_signal(signal.clone())?;
/// let listener = ally::tokio::Listener::new(ally::listen_tcp("127.0.0.1:0")?, &stop)?;
/// let addr = listener.local_addr()?;
/// let _client = std::net::TcpStream::connect(addr)?;
/// assert!(listener.accept().await?.is_some());
/// signal.trigger();
/// assert!(listener.accept().await?.is_none()); // and closed
/// assert!(std::net::TcpStream::connect(addr).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener {
    /// `None` once stopped. Shared with the accepts in progress, so that the
    /// socket is closed when the last of them returns.
    listener: Mutex<Option<Arc<TcpListener>>>,
    stop: Stop,
}

impl Listener {
    /// Wraps `listener` (from [`listen_tcp`](crate::listen_tcp)) for tokio;
    /// `stop` ends the accepting.
    ///
    /// The socket is set non-blocking, as tokio needs; every ally listener
    /// already is, and under a master must stay so (the flag is shared with
    /// the other instances).
    ///
    /// # Errors
    ///
    /// Called outside a tokio runtime, or the socket cannot be registered.
    pub fn new(listener: impl Into<std::net::TcpListener>, stop: &Stop) -> io::Result<Listener> {
        let listener: std::net::TcpListener = listener.into();
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        Ok(Listener {
            listener: Mutex::new(Some(Arc::new(listener))),
            stop: stop.clone(),
        })
    }

    /// The next connection (`TCP_NODELAY` set), or `Ok(None)` once the stop
    /// signal has come: the listener is then closed, and every later call
    /// returns `Ok(None)` too.
    ///
    /// A connection another instance took first, or that its client reset
    /// while it was queued, is no error: the wait goes on.
    ///
    /// # Errors
    ///
    /// Errors that say nothing about one connection: out of descriptors
    /// (`EMFILE`, `ENFILE`) or memory. The listener stays usable; back off
    /// before accepting again (the descriptors may come back).
    pub async fn accept(&self) -> io::Result<Option<(TcpStream, SocketAddr)>> {
        let listener = self.lock().clone();
        let Some(listener) = listener else {
            return Ok(None);
        };
        loop {
            let accepted = ::tokio::select! {
                biased;
                () = self.stop.stopped() => None,
                accepted = listener.accept() => Some(accepted),
            };
            match accepted {
                None => {
                    drop(listener);
                    self.close();
                    return Ok(None);
                }
                Some(Ok((stream, peer))) => {
                    // Only latency: a failure changes nothing else.
                    let _ = stream.set_nodelay(true);
                    return Ok(Some((stream, peer)));
                }
                Some(Err(e)) if is_connection_error(&e) => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// The listening address; an error once stopped.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &*self.lock() {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::other(
                "the listener was closed at the stop signal",
            )),
        }
    }

    /// Whether the stop has come (accepting has ended or is ending).
    pub fn is_stopped(&self) -> bool {
        self.stop.is_stopped()
    }

    fn close(&self) {
        self.lock().take();
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<TcpListener>>> {
        self.listener.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Errors of one connection, or of a race for it, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(rustix::io::Errno::PROTO.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StopSignal;

    /// Two instances on one socket: the one that loses the race for a
    /// connection (`EAGAIN`) goes on waiting, and ends with `Ok(None)`.
    #[::tokio::test]
    async fn losing_a_race_for_a_connection_is_no_error() {
        let signal = StopSignal::new().unwrap();
        let stop = Stop::with_signal(signal.clone()).unwrap();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let a = Arc::new(Listener::new(socket.try_clone().unwrap(), &stop).unwrap());
        let b = Arc::new(Listener::new(socket, &stop).unwrap());
        let tasks = [a, b].map(|l| ::tokio::spawn(async move { l.accept().await }));
        let _client = TcpStream::connect(addr).await.unwrap();
        // One accept returns the connection; then the stop ends the other.
        let deadline = ::tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !tasks.iter().any(|t| t.is_finished()) {
            assert!(::tokio::time::Instant::now() < deadline, "nothing accepted");
            ::tokio::task::yield_now().await;
        }
        signal.trigger();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().expect("no accept error").is_some());
        }
        got.sort();
        assert_eq!(got, [false, true]);
    }
}
