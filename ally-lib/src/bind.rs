//! Simulate mode: binding sockets in this process, the way the master would.
//!
//! Every socket is close-on-exec and non-blocking, as the master's are, so a
//! service behaves the same with and without a master. TCP listeners get
//! `SO_REUSEADDR` (a restart need not wait for `TIME_WAIT`) and a backlog of
//! [`BACKLOG`]; `IPV6_V6ONLY` is left at the system default. A unix socket
//! path left behind by a dead process is removed before binding; a path on
//! which a process still listens is an error.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use ally_proto::{ListenAddr, Network};
use rustix::net::{
    AddressFamily, SocketAddrUnix, SocketFlags, SocketType, bind, connect, listen, socket_with,
    sockopt,
};

use crate::error::Error;

/// Backlog of stream listeners bound in simulate mode (the kernel caps it
/// at `net.core.somaxconn`).
pub(crate) const BACKLOG: i32 = 1024;

/// The socket type of each network.
pub(crate) fn socket_type(network: Network) -> SocketType {
    match network {
        Network::Tcp | Network::Unix => SocketType::STREAM,
        Network::Udp | Network::Unixgram => SocketType::DGRAM,
    }
}

/// Binds (and for stream networks, listens on) `addr`.
///
/// # Errors
///
/// [`Error::Bind`] naming the step that failed.
pub(crate) fn bind_local(
    network: Network,
    addr: &ListenAddr,
    mode: Option<u32>,
) -> Result<OwnedFd, Error> {
    let fail = |step: &'static str| {
        move |source: io::Error| Error::Bind {
            network,
            address: addr.to_string(),
            step,
            source,
        }
    };
    let ty = socket_type(network);
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = match addr {
        ListenAddr::Inet(sa) => {
            let family = if sa.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            let fd = socket_with(family, ty, flags, None).map_err(|e| fail("socket")(e.into()))?;
            if network == Network::Tcp {
                sockopt::set_socket_reuseaddr(&fd, true)
                    .map_err(|e| fail("setsockopt SO_REUSEADDR")(e.into()))?;
            }
            bind(&fd, sa).map_err(|e| fail("bind")(e.into()))?;
            fd
        }
        ListenAddr::Path(path) => {
            remove_stale(path).map_err(fail("check for a stale socket file"))?;
            let unix =
                SocketAddrUnix::new(path.as_path()).map_err(|e| fail("address")(e.into()))?;
            let fd = socket_with(AddressFamily::UNIX, ty, flags, None)
                .map_err(|e| fail("socket")(e.into()))?;
            bind(&fd, &unix).map_err(|e| fail("bind")(e.into()))?;
            if let Some(mode) = mode {
                // Before listen(): nobody can connect while the mode is wrong.
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(fail("chmod"))?;
            }
            fd
        }
        ListenAddr::Abstract(name) => {
            let unix =
                SocketAddrUnix::new_abstract_name(name).map_err(|e| fail("address")(e.into()))?;
            let fd = socket_with(AddressFamily::UNIX, ty, flags, None)
                .map_err(|e| fail("socket")(e.into()))?;
            bind(&fd, &unix).map_err(|e| fail("bind")(e.into()))?;
            fd
        }
    };
    if ty == SocketType::STREAM {
        listen(&fd, BACKLOG).map_err(|e| fail("listen")(e.into()))?;
    }
    Ok(fd)
}

/// Removes `path` if it is a socket nobody listens on any more: one a
/// non-blocking connect of *both* types finds refused, the rule the master
/// applies too. A live socket of either type (an answer, a full backlog, a
/// socket of the other type) is `AddrInUse`, and the probe never waits; a
/// path that is not a socket is left alone.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; remove it or choose another path",
        ));
    }
    let addr = SocketAddrUnix::new(path)?;
    let probe = |ty| {
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        socket_with(AddressFamily::UNIX, ty, flags, None).and_then(|fd| connect(&fd, &addr))
    };
    let refused = |r: Result<(), rustix::io::Errno>| r == Err(rustix::io::Errno::CONNREFUSED);
    let live = |r: Result<(), rustix::io::Errno>| {
        matches!(
            r,
            Ok(()) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::PROTOTYPE)
        )
    };
    let (stream, datagram) = (probe(SocketType::STREAM), probe(SocketType::DGRAM));
    if refused(stream) && refused(datagram) {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    if live(stream) || live(datagram) {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        ));
    }
    // Probing failed for another reason (permissions): let bind report
    // what is wrong.
    Ok(())
}
