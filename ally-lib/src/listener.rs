//! The listeners [`listen_tcp`](crate::listen_tcp) and
//! [`listen_unix`](crate::listen_unix) return: the std types, with an
//! `accept` and an `incoming` that wait on a non-blocking socket.
//!
//! The socket must stay non-blocking: `O_NONBLOCK` lives in the open file
//! description that every instance holding the socket shares (so changing
//! it here changes it for all of them), and async runtimes need it set.
//! On such a socket std's `accept` returns `WouldBlock` at once when no
//! connection waits, so a plain `for s in listener.incoming()` loop would
//! die on its first turn. These wrappers wait with `poll(2)` instead, and
//! go on waiting when another instance took the connection they were
//! woken for (`EAGAIN`), so that loop works as written. Everything else is
//! the std type's, through [`Deref`]; [`into_std`](TcpListener::into_std)
//! (or `From`) gives the std type itself, for example to
//! `tokio::net::TcpListener::from_std`.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr, TcpStream};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{self as unix, UnixStream};

use rustix::event::{PollFd, PollFlags, poll};

/// A TCP listener from this crate: a [`std::net::TcpListener`] (every
/// method of which it has, through [`Deref`]) whose
/// [`accept`](Self::accept) and [`incoming`](Self::incoming) wait for a
/// connection although the socket is non-blocking.
///
/// ```no_run
/// use std::io::Write;
///
/// fn main() -> std::io::Result<()> {
///     let listener = ally::listen_tcp("127.0.0.1:8080")?;
///     ally::ready()?;
///     for stream in listener.incoming() {
///         let mut stream = stream?;
///         // A real server reads the request first (see `ally::drain`).
///         stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
///     }
///     Ok(())
/// }
/// ```
///
/// `incoming` never ends, not even at the stop signal: a service that must
/// drain (every service under a master, which stops old instances after a
/// reload) accepts with [`drain::accept`](crate::drain::accept) instead,
/// which returns `None` once the stop signal is set (`&listener` passes as
/// `&std::net::TcpListener`).
pub struct TcpListener {
    inner: net::TcpListener,
}

/// A unix stream listener from this crate: a
/// [`std::os::unix::net::UnixListener`] with waiting [`accept`](Self::accept)
/// and [`incoming`](Self::incoming), as [`TcpListener`] is for TCP.
///
/// Drain with [`drain::accept_unix`](crate::drain::accept_unix):
/// `incoming` never ends, not even at the stop signal.
pub struct UnixListener {
    inner: unix::UnixListener,
}

/// The connections of a listener, as they come: `accept` in a loop. Never
/// ends; an error concerns one turn (`EMFILE`, for example), and the next
/// one waits again.
#[derive(Debug)]
pub struct Incoming<'a, L> {
    listener: &'a L,
}

impl TcpListener {
    /// Waits for a connection and accepts it, as
    /// [`std::net::TcpListener::accept`] does on a blocking socket. The
    /// stream is blocking (a socket of its own: that concerns no one else).
    ///
    /// # Errors
    ///
    /// Those of `poll` and `accept`, except the ones that concern one
    /// connection only (`EAGAIN` when another instance took it,
    /// `ECONNABORTED`, the network errors `accept(2)` says to retry on),
    /// after which it waits again.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        wait_accept(
            &self.inner,
            || self.inner.accept(),
            |(s, _)| s.set_nonblocking(false),
        )
    }

    /// An iterator over connections, each [`accept`](Self::accept)ed.
    pub fn incoming(&self) -> Incoming<'_, Self> {
        Incoming { listener: self }
    }

    /// The std listener, non-blocking (keep it so; see the module docs).
    pub fn into_std(self) -> net::TcpListener {
        self.inner
    }
}

impl UnixListener {
    /// Waits for a connection and accepts it; as [`TcpListener::accept`].
    ///
    /// # Errors
    ///
    /// As [`TcpListener::accept`].
    pub fn accept(&self) -> io::Result<(UnixStream, unix::SocketAddr)> {
        wait_accept(
            &self.inner,
            || self.inner.accept(),
            |(s, _)| s.set_nonblocking(false),
        )
    }

    /// An iterator over connections, each [`accept`](Self::accept)ed.
    pub fn incoming(&self) -> Incoming<'_, Self> {
        Incoming { listener: self }
    }

    /// The std listener, non-blocking (keep it so; see the module docs).
    pub fn into_std(self) -> unix::UnixListener {
        self.inner
    }
}

impl Iterator for Incoming<'_, TcpListener> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl Iterator for Incoming<'_, UnixListener> {
    type Item = io::Result<UnixStream>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// Polls `listener` until it is readable, then accepts; again on the
/// errors that concern one connection only.
fn wait_accept<T>(
    listener: &impl AsFd,
    mut accept: impl FnMut() -> io::Result<T>,
    blocking: impl Fn(&T) -> io::Result<()>,
) -> io::Result<T> {
    loop {
        let mut fds = [PollFd::new(listener, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        match accept() {
            Ok(conn) => {
                // Linux does not pass O_NONBLOCK on; make sure.
                blocking(&conn)?;
                return Ok(conn);
            }
            Err(e) if retry_accept(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Accept errors that concern one connection (or none), not the listener.
pub(crate) fn retry_accept(e: &io::Error) -> bool {
    use rustix::io::Errno;
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) {
        return true;
    }
    // accept(2): "treat them like EAGAIN by retrying".
    let retry = [
        Errno::PROTO,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::NONET,
        Errno::HOSTUNREACH,
        Errno::OPNOTSUPP,
        Errno::NETUNREACH,
        Errno::NETDOWN,
    ];
    e.raw_os_error()
        .is_some_and(|code| retry.iter().any(|r| r.raw_os_error() == code))
}

/// The conversions and traits both wrappers have.
macro_rules! wrapper {
    ($name:ident, $std:ty) => {
        impl Deref for $name {
            type Target = $std;

            fn deref(&self) -> &$std {
                &self.inner
            }
        }

        impl From<OwnedFd> for $name {
            /// Takes a listening socket of the right type, as the std
            /// type's `From<OwnedFd>` does.
            fn from(fd: OwnedFd) -> Self {
                $name {
                    inner: <$std>::from(fd),
                }
            }
        }

        impl From<$name> for $std {
            fn from(listener: $name) -> $std {
                listener.inner
            }
        }

        impl From<$name> for OwnedFd {
            fn from(listener: $name) -> OwnedFd {
                listener.inner.into()
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.as_fd()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.inner.fmt(f)
            }
        }
    };
}

wrapper!(TcpListener, net::TcpListener);
wrapper!(UnixListener, unix::UnixListener);

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;

    #[test]
    fn incoming_waits_instead_of_failing_with_would_block() {
        let listener = crate::listen_tcp("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // The socket stays non-blocking: std's own accept says so at once.
        let bare = listener.deref().accept().unwrap_err();
        assert_eq!(bare.kind(), io::ErrorKind::WouldBlock);
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut s = TcpStream::connect(addr).unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            buf
        });
        let mut stream = listener.incoming().next().unwrap().unwrap();
        let flags = rustix::fs::fcntl_getfl(&stream).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        stream.write_all(b"hi").unwrap();
        drop(stream);
        assert_eq!(client.join().unwrap(), "hi");
        let flags = rustix::fs::fcntl_getfl(&listener).unwrap();
        assert!(flags.contains(rustix::fs::OFlags::NONBLOCK));
    }

    #[test]
    fn another_holder_taking_the_connection_leaves_this_one_waiting() {
        let listener = crate::listen_tcp("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Another "instance": the same open file description.
        let other = listener.try_clone().unwrap();
        let _first = TcpStream::connect(addr).unwrap();
        let mut fds = [PollFd::new(&listener, PollFlags::IN)];
        poll(&mut fds, None).unwrap();
        other.accept().unwrap();
        // Readable a moment ago, empty now: this one waits for the next.
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            TcpStream::connect(addr).unwrap()
        });
        let (_stream, _) = listener.accept().unwrap();
        late.join().unwrap();
    }

    #[test]
    fn unix_incoming_waits() {
        let path = std::env::temp_dir().join(format!("ally-incoming-{}.sock", std::process::id()));
        let listener = crate::listen_unix(&path).unwrap();
        let client_path = path.clone();
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            UnixStream::connect(client_path).unwrap()
        });
        listener.incoming().next().unwrap().unwrap();
        client.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
