//! The listener table: every socket the master has bound, keyed by
//! (app, network, normalized address), with the instances holding it.
//!
//! A socket is bound on the first request for its key and handed out again
//! (as a new fd over `SCM_RIGHTS`) for every later one, so a reloaded
//! instance gets the very same kernel socket, port-0 ephemeral port
//! included. When no live instance holds it any more it is closed, and a
//! unix socket's file is removed.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use ally_proto::{ErrorCode, Failure, ListenAddr, ListenSpec, Network};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::limits::LISTEN_BACKLOG;

/// Identifies a listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    app: String,
    network: Network,
    addr: ListenAddr,
}

/// A socket the master bound: closed, and its unix socket file removed,
/// when dropped.
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub fd: OwnedFd,
    /// Its local address as text.
    pub local: String,
    /// The socket file to remove when the socket closes.
    path: Option<PathBuf>,
    /// What was asked for, when bound by [`Bound::new`].
    spec: Option<ListenSpec>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            remove_socket_file(path);
        }
    }
}

impl Bound {
    /// Binds `spec` (non-blocking, close-on-exec; listening if a stream).
    ///
    /// # Errors
    ///
    /// A bad address, or the bind failing, as a message naming the socket.
    pub fn new(spec: &ListenSpec) -> Result<Bound, Failure> {
        let addr = ListenAddr::parse(spec.network, &spec.address)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, e.to_string()))?;
        let mode = spec.mode.filter(|_| matches!(addr, ListenAddr::Path(_)));
        let mut bound = Bound::bind(spec.network, &addr, mode)?;
        bound.spec = Some(spec.clone());
        Ok(bound)
    }

    /// What was asked for, if bound by [`Bound::new`].
    pub fn spec(&self) -> Option<&ListenSpec> {
        self.spec.as_ref()
    }

    fn bind(network: Network, addr: &ListenAddr, mode: Option<u32>) -> Result<Bound, Failure> {
        let fd = bind(network, addr, mode).map_err(|e| {
            Failure::new(
                ErrorCode::ListenFailed,
                format!("cannot listen on {network} {addr}: {e}"),
            )
        })?;
        let local = local_address(&fd).map_err(internal)?;
        let path = match addr {
            ListenAddr::Path(path) => Some(path.clone()),
            _ => None,
        };
        Ok(Bound {
            fd,
            local,
            path,
            spec: None,
        })
    }
}

/// One socket of the table.
#[derive(Debug)]
struct Entry {
    bound: Bound,
    mode: Option<u32>,
    holders: BTreeSet<u64>,
}

/// All listeners of the master.
#[derive(Debug, Default)]
pub struct Listeners {
    entries: HashMap<Key, Entry>,
}

impl Listeners {
    /// Gives instance `id` of `app` the socket for `spec`, binding it if this
    /// is the first request for its key. Returns a new fd for the socket
    /// (close-on-exec, to be sent to the instance) and its local address.
    pub fn acquire(
        &mut self,
        app: &str,
        id: u64,
        spec: &ListenSpec,
    ) -> Result<(OwnedFd, String), Failure> {
        let addr = ListenAddr::parse(spec.network, &spec.address)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, e.to_string()))?;
        let mode = spec.mode.filter(|_| matches!(addr, ListenAddr::Path(_)));
        let key = Key {
            app: app.to_owned(),
            network: spec.network,
            addr,
        };
        if let Some(entry) = self.entries.get_mut(&key) {
            if mode.is_some() && mode != entry.mode {
                return Err(Failure::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{} {} is already bound with mode {}; ask with the same mode",
                        key.network,
                        key.addr,
                        describe_mode(entry.mode)
                    ),
                ));
            }
            let fd = entry.bound.fd.try_clone().map_err(internal)?;
            entry.holders.insert(id);
            return Ok((fd, entry.bound.local.clone()));
        }
        let bound = Bound::bind(key.network, &key.addr, mode)?;
        let copy = bound.fd.try_clone().map_err(internal)?;
        let local = bound.local.clone();
        self.entries.insert(
            key,
            Entry {
                bound,
                mode,
                holders: BTreeSet::from([id]),
            },
        );
        Ok((copy, local))
    }

    /// Instance `id` of `app` no longer holds the socket for `spec`.
    pub fn release(&mut self, app: &str, id: u64, spec: &ListenSpec) -> Result<(), Failure> {
        let addr = ListenAddr::parse(spec.network, &spec.address)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, e.to_string()))?;
        let key = Key {
            app: app.to_owned(),
            network: spec.network,
            addr,
        };
        let held = self
            .entries
            .get_mut(&key)
            .is_some_and(|entry| entry.holders.remove(&id));
        if !held {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("this instance does not hold {} {}", key.network, key.addr),
            ));
        }
        self.entries.retain(|_, entry| !entry.holders.is_empty());
        Ok(())
    }

    /// Instance `id` of `app` is gone: drop its holds, closing what nobody
    /// holds any more.
    pub fn release_instance(&mut self, app: &str, id: u64) {
        for (key, entry) in &mut self.entries {
            if key.app == app {
                entry.holders.remove(&id);
            }
        }
        self.entries.retain(|_, entry| !entry.holders.is_empty());
    }

    /// How many sockets instance `id` of `app` holds.
    pub fn held_by(&self, app: &str, id: u64) -> u32 {
        let held = self
            .entries
            .iter()
            .filter(|(key, entry)| key.app == app && entry.holders.contains(&id))
            .count();
        u32::try_from(held).unwrap_or(u32::MAX)
    }
}

fn internal(e: io::Error) -> Failure {
    Failure::new(ErrorCode::Internal, format!("cannot duplicate socket: {e}"))
}

fn describe_mode(mode: Option<u32>) -> String {
    mode.map_or_else(|| "default".to_owned(), |m| format!("{m:#o}"))
}

/// Creates, binds and (for stream sockets) listens on a new non-blocking,
/// close-on-exec socket.
fn bind(network: Network, addr: &ListenAddr, mode: Option<u32>) -> io::Result<OwnedFd> {
    let kind = match network {
        Network::Tcp | Network::Unix => SocketType::STREAM,
        Network::Udp | Network::Unixgram => SocketType::DGRAM,
    };
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = match addr {
        ListenAddr::Inet(sa) => {
            let family = match sa {
                SocketAddr::V4(_) => AddressFamily::INET,
                SocketAddr::V6(_) => AddressFamily::INET6,
            };
            let fd = rustix::net::socket_with(family, kind, flags, None)?;
            if kind == SocketType::STREAM {
                rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
            }
            rustix::net::bind(&fd, sa)?;
            fd
        }
        ListenAddr::Path(path) => {
            clear_stale_socket(path, kind)?;
            let fd = rustix::net::socket_with(AddressFamily::UNIX, kind, flags, None)?;
            rustix::net::bind(&fd, &SocketAddrUnix::new(path.as_path())?)?;
            if let Some(mode) = mode
                && let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode))
            {
                remove_socket_file(path);
                return Err(e);
            }
            fd
        }
        ListenAddr::Abstract(name) => {
            let fd = rustix::net::socket_with(AddressFamily::UNIX, kind, flags, None)?;
            rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
            fd
        }
    };
    if kind == SocketType::STREAM {
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    }
    Ok(fd)
}

/// Removes a unix socket file left by a process that is gone, so binding
/// does not fail with "address in use". A live socket or a file that is not
/// a socket is left alone and binding reports the error.
fn clear_stale_socket(path: &Path, kind: SocketType) -> io::Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    let live = if kind == SocketType::STREAM {
        UnixStream::connect(path).is_ok()
    } else {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    };
    if live {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on it",
        ));
    }
    fs::remove_file(path)
}

fn remove_socket_file(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = fs::remove_file(path);
    }
}

/// The socket's local address as text: `IP:PORT`, a path, or `@name`.
fn local_address(fd: impl AsFd) -> io::Result<String> {
    let any = rustix::net::getsockname(fd)?;
    if any.address_family() == AddressFamily::UNIX {
        let unix = SocketAddrUnix::try_from(any)?;
        if let Some(path) = unix.path() {
            return Ok(Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()))
                .display()
                .to_string());
        }
        if let Some(name) = unix.abstract_name() {
            return Ok(format!("@{}", String::from_utf8_lossy(name)));
        }
        return Ok(String::new());
    }
    Ok(SocketAddr::try_from(any)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(network: Network, address: &str) -> ListenSpec {
        ListenSpec {
            network,
            address: address.into(),
            mode: None,
        }
    }

    #[test]
    fn same_key_gets_same_socket_until_nobody_holds_it() {
        let mut table = Listeners::default();
        let tcp = spec(Network::Tcp, "127.0.0.1:0");
        let (a, local_a) = table.acquire("web", 1, &tcp).unwrap();
        let (b, local_b) = table.acquire("web", 2, &tcp).unwrap();
        assert_eq!(local_a, local_b);
        let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
        assert_eq!(ino(&a), ino(&b));
        assert_eq!(table.held_by("web", 1), 1);
        // Another app asking for the same address gets its own socket.
        let (c, local_c) = table.acquire("api", 1, &tcp).unwrap();
        assert_ne!(ino(&a), ino(&c));
        assert_ne!(local_a, local_c);
        table.release_instance("web", 1);
        table.release("web", 2, &tcp).unwrap();
        assert_eq!(table.held_by("web", 2), 0);
        assert!(table.release("web", 2, &tcp).is_err());
        assert_eq!(table.entries.len(), 1);
    }

    #[test]
    fn abstract_and_datagram_sockets_bind() {
        let mut table = Listeners::default();
        let name = format!("@ally-test-{}", std::process::id());
        let (_, local) = table
            .acquire("a", 1, &spec(Network::Unixgram, &name))
            .unwrap();
        assert_eq!(local, name);
        let (fd, _) = table
            .acquire("a", 1, &spec(Network::Udp, "127.0.0.1:0"))
            .unwrap();
        assert_eq!(
            rustix::net::sockopt::socket_type(&fd).unwrap(),
            SocketType::DGRAM
        );
    }

    #[test]
    fn bad_address_is_a_clear_error() {
        let mut table = Listeners::default();
        let err = table
            .acquire("a", 1, &spec(Network::Tcp, "localhost:80"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("IP:PORT"), "{}", err.message);
    }
}
