//! Checking that a socket from the master is the one asked for.
//!
//! The master is trusted (its pid was checked), but a socket of the wrong
//! type or address would fail much later and far from the cause; checking
//! here turns a master bug into a clear error at `listen` time.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use ally_proto::{ListenAddr, Network};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, getsockname, sockopt};

use crate::bind::socket_type;
use crate::error::Error;

/// Checks type, family, address and listening state of `fd` against the
/// request, and makes it non-blocking if it is not.
///
/// # Errors
///
/// [`Error::SocketMismatch`] saying what the socket is instead.
pub(crate) fn check(fd: BorrowedFd<'_>, network: Network, want: &ListenAddr) -> Result<(), Error> {
    matches(fd, network, want)
        .and_then(|()| ensure_nonblocking(fd).map_err(|e| format!("unreadable (O_NONBLOCK: {e})")))
        .map_err(|found| Error::SocketMismatch {
            network,
            address: want.to_string(),
            found,
        })
}

/// Whether `fd` is a socket of `network` bound to `want` (any port when
/// `want` asks for port 0), listening if it is a stream socket.
///
/// # Errors
///
/// What the socket is instead, for a message.
pub(crate) fn matches(
    fd: BorrowedFd<'_>,
    network: Network,
    want: &ListenAddr,
) -> Result<(), String> {
    let sys = |what: &str, e: rustix::io::Errno| format!("unreadable ({what}: {e})");
    let ty = sockopt::socket_type(fd).map_err(|e| sys("SO_TYPE", e))?;
    if ty != socket_type(network) {
        return Err(format!("a socket of type {ty:?}"));
    }
    let local = getsockname(fd).map_err(|e| sys("getsockname", e))?;
    let family = local.address_family();
    let wrong_family = || format!("a socket of family {family:?}");
    match want {
        ListenAddr::Inet(want_sa) => {
            let want_family = if want_sa.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            if family != want_family {
                return Err(wrong_family());
            }
            let got = SocketAddr::try_from(local).map_err(|_| wrong_family())?;
            let port_ok = want_sa.port() == got.port() || (want_sa.port() == 0 && got.port() != 0);
            if got.ip() != want_sa.ip() || !port_ok {
                return Err(format!("bound to {got}"));
            }
        }
        ListenAddr::Path(_) | ListenAddr::Abstract(_) => {
            if family != AddressFamily::UNIX {
                return Err(wrong_family());
            }
            let got = SocketAddrUnix::try_from(local).map_err(|_| wrong_family())?;
            if !unix_matches(&got, want) {
                return Err(format!("bound to {}", describe_unix(&got)));
            }
        }
    }
    if ty == SocketType::STREAM
        && !sockopt::socket_acceptconn(fd).map_err(|e| sys("SO_ACCEPTCONN", e))?
    {
        return Err("a stream socket that is not listening".to_owned());
    }
    Ok(())
}

/// Whether `fd` is a socket that `network` can use, wherever it is bound:
/// its type, its family (IPv4 or IPv6 for tcp and udp, unix for the unix
/// networks), and listening if it is a stream socket.
///
/// # Errors
///
/// What the socket is instead, for a message.
pub(crate) fn fits(fd: BorrowedFd<'_>, network: Network) -> Result<(), String> {
    let sys = |what: &str, e: rustix::io::Errno| format!("unreadable ({what}: {e})");
    let ty = sockopt::socket_type(fd).map_err(|e| sys("SO_TYPE", e))?;
    if ty != socket_type(network) {
        return Err(format!("a socket of type {ty:?}"));
    }
    let family = getsockname(fd)
        .map_err(|e| sys("getsockname", e))?
        .address_family();
    let family_ok = if network.is_unix() {
        family == AddressFamily::UNIX
    } else {
        family == AddressFamily::INET || family == AddressFamily::INET6
    };
    if !family_ok {
        return Err(format!("a socket of family {family:?}"));
    }
    if ty == SocketType::STREAM
        && !sockopt::socket_acceptconn(fd).map_err(|e| sys("SO_ACCEPTCONN", e))?
    {
        return Err("a stream socket that is not listening".to_owned());
    }
    Ok(())
}

/// Makes `fd` non-blocking if it is not.
///
/// The master binds every socket non-blocking and the whole system relies on
/// it (the flag is shared by every process holding the socket), so a
/// blocking socket from the master is a master bug; setting the flag brings
/// it back to what every holder expects. Sockets inherited through
/// `LISTEN_FDS` usually arrive blocking.
pub(crate) fn ensure_nonblocking(fd: BorrowedFd<'_>) -> Result<(), rustix::io::Errno> {
    let flags = fcntl_getfl(fd)?;
    if !flags.contains(OFlags::NONBLOCK) {
        fcntl_setfl(fd, flags | OFlags::NONBLOCK)?;
    }
    Ok(())
}

fn unix_matches(got: &SocketAddrUnix, want: &ListenAddr) -> bool {
    match want {
        ListenAddr::Path(p) => got.path_bytes() == Some(p.as_os_str().as_bytes()),
        ListenAddr::Abstract(name) => got.abstract_name() == Some(name.as_slice()),
        ListenAddr::Inet(_) => false,
    }
}

fn describe_unix(addr: &SocketAddrUnix) -> String {
    if let Some(name) = addr.abstract_name() {
        format!("@{}", String::from_utf8_lossy(name))
    } else if let Some(path) = addr.path_bytes() {
        String::from_utf8_lossy(path).into_owned()
    } else {
        "an unnamed address".to_owned()
    }
}
