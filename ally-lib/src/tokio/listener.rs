//! [`Listener`] and [`UnixListener`]: accept until the stop, then let go
//! of the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ::tokio::net::{TcpListener, TcpStream, UnixStream, unix};

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
pub struct Listener(Draining<TcpListener>);

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
        Ok(Listener(Draining::new(
            TcpListener::from_std(listener)?,
            stop,
        )))
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
        let accepted = self.0.accept().await?;
        if let Some((stream, _)) = &accepted {
            // Only latency: a failure changes nothing else.
            let _ = stream.set_nodelay(true);
        }
        Ok(accepted)
    }

    /// The listening address; an error once stopped.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.with(TcpListener::local_addr)
    }

    /// Whether the stop has come (accepting has ended or is ending).
    pub fn is_stopped(&self) -> bool {
        self.0.stop.is_stopped()
    }
}

/// A Unix stream listener (from [`listen_unix`](crate::listen_unix)) that
/// accepts until the stop signal, then closes: [`Listener`] for Unix
/// sockets.
#[derive(Debug)]
pub struct UnixListener(Draining<::tokio::net::UnixListener>);

impl UnixListener {
    /// Wraps `listener` for tokio, as [`Listener::new`] does.
    ///
    /// # Errors
    ///
    /// As [`Listener::new`].
    pub fn new(
        listener: impl Into<std::os::unix::net::UnixListener>,
        stop: &Stop,
    ) -> io::Result<UnixListener> {
        let listener: std::os::unix::net::UnixListener = listener.into();
        listener.set_nonblocking(true)?;
        let listener = ::tokio::net::UnixListener::from_std(listener)?;
        Ok(UnixListener(Draining::new(listener, stop)))
    }

    /// The next connection, or `Ok(None)` once stopped, as
    /// [`Listener::accept`].
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`].
    pub async fn accept(&self) -> io::Result<Option<(UnixStream, unix::SocketAddr)>> {
        self.0.accept().await
    }

    /// The listening address; an error once stopped.
    pub fn local_addr(&self) -> io::Result<unix::SocketAddr> {
        self.0.with(::tokio::net::UnixListener::local_addr)
    }

    /// Whether the stop has come (accepting has ended or is ending).
    pub fn is_stopped(&self) -> bool {
        self.0.stop.is_stopped()
    }
}

/// What [`Draining`] needs of a tokio listener.
trait Accept: Send + Sync {
    type Stream: Send;
    type Addr: Send;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Addr)>> + Send;
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

impl Accept for ::tokio::net::UnixListener {
    type Stream = UnixStream;
    type Addr = unix::SocketAddr;
    fn accept(&self) -> impl Future<Output = io::Result<(UnixStream, unix::SocketAddr)>> + Send {
        ::tokio::net::UnixListener::accept(self)
    }
}

/// The accepting until the stop, for either kind of listener.
#[derive(Debug)]
struct Draining<L> {
    /// `None` once stopped. Shared with the accepts in progress, so that the
    /// socket is closed when the last of them returns.
    listener: Mutex<Option<Arc<L>>>,
    stop: Stop,
}

impl<L: Accept> Draining<L> {
    fn new(listener: L, stop: &Stop) -> Self {
        Draining {
            listener: Mutex::new(Some(Arc::new(listener))),
            stop: stop.clone(),
        }
    }

    async fn accept(&self) -> io::Result<Option<(L::Stream, L::Addr)>> {
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
                    self.lock().take();
                    return Ok(None);
                }
                Some(Ok(accepted)) => return Ok(Some(accepted)),
                Some(Err(e)) if is_connection_error(&e) => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// `f` of the listener; an error once stopped.
    fn with<T>(&self, f: impl FnOnce(&L) -> io::Result<T>) -> io::Result<T> {
        match &*self.lock() {
            Some(listener) => f(listener),
            None => Err(io::Error::other(
                "the listener was closed at the stop signal",
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<L>>> {
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

    #[::tokio::test]
    async fn a_unix_listener_accepts_until_the_stop() {
        let signal = StopSignal::new().unwrap();
        let stop = Stop::with_signal(signal.clone()).unwrap();
        let dir = std::env::temp_dir().join(format!("ally-unix-listener-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::new(
            std::os::unix::net::UnixListener::bind(&path).unwrap(),
            &stop,
        )
        .unwrap();
        let _client = UnixStream::connect(&path).await.unwrap();
        assert!(listener.accept().await.unwrap().is_some());
        signal.trigger();
        assert!(listener.accept().await.unwrap().is_none());
        assert!(listener.local_addr().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
