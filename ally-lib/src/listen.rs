//! Getting listening sockets: from the master when managed, bound here in
//! simulate mode.
//!
//! Every socket returned is **non-blocking** and close-on-exec; see the
//! crate documentation, "Socket mode". Listeners come as the crate's
//! [`TcpListener`] and [`UnixListener`], whose `accept` and `incoming`
//! wait all the same; datagram sockets as the std types.

use std::borrow::Cow;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use ally_proto::{InstanceRequest, InstanceResponse, ListenAddr, ListenSpec, Network};

use crate::bind::bind_local;
use crate::client;
use crate::error::Error;
use crate::inherit;
use crate::listener::{TcpListener, UnixListener};
use crate::mode;
use crate::verify;

/// Options for a listen request: the file mode of a unix socket, and the
/// name of a socket passed by systemd.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// // A unix socket that members of the service's group may connect to.
/// let listener = ally::ListenOptions::new()
///     .unix_mode(0o660)
///     .listen_unix("/run/web/web.sock")?;
///
/// // Under systemd's socket activation, the socket named `http`
/// // (`FileDescriptorName=http`); bound here when none was passed.
/// let http = ally::ListenOptions::new()
///     .systemd_name("http")
///     .listen_tcp("0.0.0.0:8080")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    mode: Option<u32>,
    name: Option<String>,
}

impl ListenOptions {
    /// Default options: unix socket files get the mode the umask gives
    /// (of the master when managed, of this process in simulate mode);
    /// inherited sockets are matched by address only.
    pub fn new() -> Self {
        Self::default()
    }

    /// File mode of a unix socket path, for example `0o660`.
    ///
    /// Only applies when the socket is first bound: when managed, a later
    /// request for the same address (by a reloaded instance) gets the
    /// existing socket as it is. Ignored for tcp, udp and abstract sockets.
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// In simulate mode, take the socket systemd passed under `name` (its
    /// entry in `LISTEN_FDNAMES`, set by `FileDescriptorName=` in the
    /// socket unit, or `systemd-socket-activate --fdname`), wherever it is
    /// bound.
    ///
    /// The socket must fit the network (type, family, listening), or the
    /// listen fails with [`Error::InheritedMismatch`](crate::Error::InheritedMismatch);
    /// of several sockets with that name, one bound to the requested address
    /// is preferred. When no unused socket has the name, the listen goes on
    /// as without it: a passed socket bound to the address, else a socket
    /// bound here. The address is checked in every case. Under a master the
    /// name is ignored: the master's sockets are keyed by address.
    pub fn systemd_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// [`listen_fd`] with these options.
    ///
    /// # Errors
    ///
    /// As [`listen_fd`].
    pub fn listen_fd(&self, network: Network, addr: &str) -> io::Result<OwnedFd> {
        Ok(listen_raw(network, addr, self)?)
    }

    /// [`listen_tcp`] with these options.
    ///
    /// # Errors
    ///
    /// As [`listen_fd`].
    pub fn listen_tcp(&self, addr: &str) -> io::Result<TcpListener> {
        Ok(TcpListener::from(listen_raw(Network::Tcp, addr, self)?))
    }

    /// [`listen_udp`] with these options.
    ///
    /// # Errors
    ///
    /// As [`listen_fd`].
    pub fn listen_udp(&self, addr: &str) -> io::Result<UdpSocket> {
        Ok(UdpSocket::from(listen_raw(Network::Udp, addr, self)?))
    }

    /// [`listen_unix`] with these options.
    ///
    /// # Errors
    ///
    /// As [`listen_fd`].
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let fd = listen_raw(Network::Unix, path_str(path.as_ref())?, self)?;
        Ok(UnixListener::from(fd))
    }

    /// [`listen_unixgram`] with these options.
    ///
    /// # Errors
    ///
    /// As [`listen_fd`].
    pub fn listen_unixgram(&self, path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let fd = listen_raw(Network::Unixgram, path_str(path.as_ref())?, self)?;
        Ok(UnixDatagram::from(fd))
    }
}

/// A TCP listener on `addr`: `IP:PORT`, `[IPv6]:PORT` or `:PORT` (all IPv4
/// interfaces). Host names are refused.
///
/// The socket is **non-blocking** (shared with every instance holding it,
/// see "Socket mode" in the crate docs), but the [`TcpListener`] it comes in
/// waits in [`accept`](TcpListener::accept) and
/// [`incoming`](TcpListener::incoming) all the same, and derefs to
/// [`std::net::TcpListener`]. To drain, accept with
/// [`drain::accept`](crate::drain::accept), which stops at the stop signal;
/// for tokio, `TcpListener::from_std(listener.into_std())`.
///
/// Port 0 asks for any free port. When managed, the master binds it once and
/// gives every later request for the same `…:0` address (a reloaded
/// instance's) that same socket, so the port survives reloads; read it with
/// [`local_addr`](std::net::TcpListener::local_addr).
///
/// # Errors
///
/// An invalid address ([`io::ErrorKind::InvalidInput`]); in simulate mode
/// the bind error (for example [`io::ErrorKind::AddrInUse`]); when managed,
/// a missing or untrusted master, or the master's refusal. The error wraps
/// an [`Error`](crate::Error) with the details.
pub fn listen_tcp(addr: &str) -> io::Result<TcpListener> {
    ListenOptions::new().listen_tcp(addr)
}

/// A UDP socket bound to `addr` (same forms as [`listen_tcp`]),
/// **non-blocking**.
///
/// All instances holding it share one socket: during a reload each datagram
/// goes to whichever instance reads first. So `recv_from` returns
/// [`WouldBlock`](io::ErrorKind::WouldBlock) when no datagram waits, also
/// when another instance took the one that woke this one, and
/// `set_read_timeout` has no effect: wait with `poll(2)` on it and on the
/// [`StopSignal`](crate::StopSignal) (both implement `AsFd`) and read
/// again on `WouldBlock`, or hand it to an event loop (tokio's
/// `UdpSocket::from_std`). Never make it blocking: every instance would
/// block.
///
/// # Errors
///
/// As [`listen_tcp`].
pub fn listen_udp(addr: &str) -> io::Result<UdpSocket> {
    ListenOptions::new().listen_udp(addr)
}

/// A unix stream listener at `path`, **non-blocking** but waiting in
/// [`accept`](UnixListener::accept) and [`incoming`](UnixListener::incoming),
/// as for [`listen_tcp`]; drain with
/// [`drain::accept_unix`](crate::drain::accept_unix).
///
/// `path` is a filesystem path (a relative one is made absolute against the
/// current directory before anything else) or `@name` for a Linux abstract
/// socket. In simulate mode a socket file left by a dead process is removed
/// first; one on which a process still listens is an error.
///
/// For a file mode, use [`ListenOptions::unix_mode`].
///
/// # Errors
///
/// As [`listen_tcp`], and for a path that is not UTF-8.
pub fn listen_unix(path: impl AsRef<Path>) -> io::Result<UnixListener> {
    ListenOptions::new().listen_unix(path)
}

/// A unix datagram socket bound at `path` (as for [`listen_unix`]),
/// **non-blocking**: read it as [`listen_udp`] says.
///
/// # Errors
///
/// As [`listen_unix`].
pub fn listen_unixgram(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
    ListenOptions::new().listen_unixgram(path)
}

/// A socket of any [`Network`] as a raw [`OwnedFd`], **non-blocking** and
/// close-on-exec, for types this crate does not convert to (pass it to
/// `From<OwnedFd>` of your socket type).
///
/// Stream sockets are listening; datagram sockets are bound. Addresses are
/// written as for [`listen_tcp`] and [`listen_unix`].
///
/// # Errors
///
/// As [`listen_tcp`].
pub fn listen_fd(network: Network, addr: &str) -> io::Result<OwnedFd> {
    ListenOptions::new().listen_fd(network, addr)
}

/// Tells the master this instance no longer holds the socket for
/// (`network`, `addr`): the master closes it at once if no other instance
/// holds it.
///
/// Closing the socket in this process is up to the caller. A process that
/// exits without calling this releases its holds, but the master keeps the
/// socket for the app's next instance (see the crate docs, "Listening").
/// In simulate mode it only checks the address.
///
/// # Errors
///
/// An invalid address; when managed, the master's refusal or a connection
/// error.
pub fn unlisten(network: Network, addr: &str) -> io::Result<()> {
    let target = normalize(network, addr)?;
    let Some(m) = mode::managed()? else {
        return Ok(());
    };
    let what = format!("unlisten {network} {target}");
    let spec = ListenSpec {
        network,
        address: target.to_string(),
        mode: None,
    };
    let reply = client::request(m, &InstanceRequest::Unlisten(spec), &what)?;
    match reply.response {
        InstanceResponse::Done => Ok(()),
        InstanceResponse::Error(failure) => Err(Error::Master {
            request: what,
            failure,
        }
        .into()),
        other => Err(unexpected(what, &other).into()),
    }
}

/// The heart of every `listen_*`: normalize, then ask the master or bind.
fn listen_raw(network: Network, addr: &str, opts: &ListenOptions) -> Result<OwnedFd, Error> {
    let target = normalize(network, addr)?;
    let mode = opts.mode;
    let Some(m) = mode::managed()? else {
        if let Some(fd) = inherit::take(network, &target, opts.name.as_deref())? {
            return Ok(fd);
        }
        return bind_local(network, &target, mode);
    };
    let what = format!("listen {network} {target}");
    let spec = ListenSpec {
        network,
        address: target.to_string(),
        mode,
    };
    let reply = client::request(m, &InstanceRequest::Listen(spec), &what)?;
    match reply.response {
        InstanceResponse::Listening { .. } => {
            let mut fds = reply.fds.into_iter();
            let fd = fds.next().ok_or(Error::MissingFds {
                expected: 1,
                got: 0,
            })?;
            // Extra descriptors (none today) are closed as `fds` drops.
            verify::check(fd.as_fd(), network, &target)?;
            Ok(fd)
        }
        InstanceResponse::Error(failure) => Err(Error::Master {
            request: what,
            failure,
        }),
        other => Err(unexpected(what, &other)),
    }
}

/// Parses `addr` for `network`, first making a relative unix path absolute
/// against the current directory (the master's directory is not ours).
fn normalize(network: Network, addr: &str) -> Result<ListenAddr, Error> {
    let addr: Cow<'_, str> = if network.is_unix() && !addr.is_empty() && !addr.starts_with('@') {
        let path = Path::new(addr);
        if path.is_absolute() {
            Cow::Borrowed(addr)
        } else {
            let abs = std::path::absolute(path).map_err(|source| Error::Bind {
                network,
                address: addr.to_owned(),
                step: "make the path absolute",
                source,
            })?;
            Cow::Owned(path_str(&abs)?.to_owned())
        }
    } else {
        Cow::Borrowed(addr)
    };
    Ok(ListenAddr::parse(network, &addr)?)
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| Error::NonUtf8Path(path.to_owned()))
}

pub(crate) fn unexpected(request: String, response: &InstanceResponse) -> Error {
    Error::Unexpected {
        request,
        response: format!("{response:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_unix_paths_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let got = normalize(Network::Unix, "x/./y.sock").unwrap();
        assert_eq!(got, ListenAddr::Path(cwd.join("x/y.sock")));
        assert_eq!(
            normalize(Network::Unixgram, "@name").unwrap(),
            ListenAddr::Abstract(b"name".to_vec())
        );
        assert!(normalize(Network::Unix, "").is_err());
        // Only unix addresses are paths.
        assert!(normalize(Network::Tcp, "x.sock").is_err());
    }
}
