//! The listener table: every socket the master has bound, keyed by
//! (app, network, normalized address), with the instances holding it.
//!
//! A socket is bound on the first request for its key and handed out again
//! (as a new fd over `SCM_RIGHTS`) for every later one, so a reloaded
//! instance gets the very same kernel socket, port-0 ephemeral port
//! included.
//!
//! A socket lives as long as its app, not as long as its holders: when the
//! last instance holding it dies — a crash, `ally-ctl kill`, `restart` —
//! the master keeps it, so connections wait in its accept queue for the
//! next instance instead of being refused. [`Listeners::settle`] closes
//! what no live instance holds once the app no longer waits for one (see
//! [`Standing::keeps`]); an instance's `Unlisten` closes a socket nobody
//! else holds at once. A closed unix socket's file is removed.
//!
//! IP and abstract sockets are bound here. A unix socket path is bound by
//! the path-socket helper ([`crate::path_socket`]) as the app's user, and
//! its file removed the same way: the master itself never touches a path
//! an app asked for.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ally_proto::{ErrorCode, Failure, ListenAddr, ListenSpec, Network};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::fd_store::{FdName, FdStore, Parked, Table};
use crate::helpers::{self, Helper, Owner};
use crate::limits::{LISTEN_BACKLOG, PATH_SOCKET_TIMEOUT};
use crate::log;
use crate::path_socket::{FileId, Job, Outcome};

/// Largest file mode a unix socket may be asked with: permission bits only.
pub const MAX_SOCKET_MODE: u32 = 0o777;

/// Identifies a listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The app it belongs to.
    pub app: String,
    /// Its network.
    pub network: Network,
    /// Its normalized address.
    pub addr: ListenAddr,
}

impl Key {
    /// The key of `spec` asked by `app`, and the file mode asked (for a
    /// unix path only).
    ///
    /// # Errors
    ///
    /// `BadRequest` for a bad address or a mode above [`MAX_SOCKET_MODE`].
    pub fn of(app: &str, spec: &ListenSpec) -> Result<(Key, Option<u32>), Failure> {
        let addr = ListenAddr::parse(spec.network, &spec.address)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, e.to_string()))?;
        if let Some(mode) = spec.mode.filter(|m| *m > MAX_SOCKET_MODE) {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "mode {mode:#o} for {} {addr} is not a file mode: give permission bits \
                     only, at most {MAX_SOCKET_MODE:#o}",
                    spec.network
                ),
            ));
        }
        let mode = spec.mode.filter(|_| matches!(addr, ListenAddr::Path(_)));
        let key = Key {
            app: app.to_owned(),
            network: spec.network,
            addr,
        };
        Ok((key, mode))
    }

    fn kind(&self) -> SocketType {
        match self.network {
            Network::Tcp | Network::Unix => SocketType::STREAM,
            Network::Udp | Network::Unixgram => SocketType::DGRAM,
        }
    }
}

/// The file of a unix path socket, removed when the socket closes.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    id: FileId,
    owner: Option<Owner>,
}

/// A socket the master bound: closed when dropped, and its unix socket
/// file then removed (by a helper running as the user that bound it, and
/// only if the file is still that socket). It is parked in systemd's fd
/// store for as long as it lives ([`crate::fd_store`]): bound means
/// parked, dropped means removed, whoever holds it.
#[derive(Debug)]
pub struct Bound {
    /// The socket.
    pub fd: OwnedFd,
    /// Its local address as text.
    pub local: String,
    file: Option<SocketFile>,
    /// What was asked for, when bound by [`Bound::new`].
    spec: Option<ListenSpec>,
    /// Its place in the fd store; dropped after the socket is closed.
    parked: Parked,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let job = Job::Unlink {
                path: file.path,
                file: file.id,
            };
            if let Err(e) = helpers::detach(&job, file.owner) {
                log!("cannot start the helper removing a socket file: {e}");
            }
        }
    }
}

impl Bound {
    /// Binds `spec`, a `listen` entry of `app` (non-blocking,
    /// close-on-exec; listening if a stream), for an app whose instances
    /// run as `owner`, and parks it in `store`.
    ///
    /// A unix path is bound by the path-socket helper as `owner`, and this
    /// waits for it (at most [`PATH_SOCKET_TIMEOUT`]): it is for the sockets
    /// of the config, bound at start and on `reread`, where blocking the
    /// loop that long is acceptable; instances' requests do not wait.
    ///
    /// # Errors
    ///
    /// A bad address, or the bind failing, as a message naming the socket.
    pub fn new(
        app: &str,
        spec: &ListenSpec,
        owner: Option<Owner>,
        store: &FdStore,
    ) -> Result<Bound, Failure> {
        let (key, mode) = Key::of(app, spec)?;
        let mut bound = match &key.addr {
            ListenAddr::Path(path) => {
                let fd = new_socket(&key).map_err(|e| cannot(&key, &e))?;
                let job = Job::Bind {
                    path: path.clone(),
                    mode,
                };
                match Helper::run(&job, Some(&fd), owner, PATH_SOCKET_TIMEOUT) {
                    Outcome::Done(Some(id)) => Bound::with_file(&key, fd, id, owner)?,
                    Outcome::Done(None) => return Err(cannot(&key, &"the helper gave no file")),
                    Outcome::Failed(why) => return Err(cannot(&key, &why)),
                }
            }
            _ => Bound::bind_here(&key)?,
        };
        bound.spec = Some(spec.clone());
        Ok(bound.park(store, Table::Config, &key, mode))
    }

    /// What was asked for, if bound by [`Bound::new`].
    pub fn spec(&self) -> Option<&ListenSpec> {
        self.spec.as_ref()
    }

    /// Binds an IP or abstract address here (no file is involved) for the
    /// listener table, and parks it in `store`.
    pub fn direct(key: &Key, store: &FdStore) -> Result<Bound, Failure> {
        Ok(Bound::bind_here(key)?.park(store, Table::Library, key, None))
    }

    fn bind_here(key: &Key) -> Result<Bound, Failure> {
        let fd = bind_direct(key).map_err(|e| cannot(key, &e))?;
        let local = local_address(&fd).map_err(internal)?;
        Ok(Bound {
            fd,
            local,
            file: None,
            spec: None,
            parked: Parked::none(),
        })
    }

    /// The socket `fd` of `key`, which a helper running as `owner` bound to
    /// file `id` with `mode`, for the listener table: listening from now
    /// on if a stream, and parked in `store`.
    pub fn from_helper(
        key: &Key,
        fd: OwnedFd,
        id: FileId,
        owner: Option<Owner>,
        mode: Option<u32>,
        store: &FdStore,
    ) -> Result<Bound, Failure> {
        Ok(Bound::with_file(key, fd, id, owner)?.park(store, Table::Library, key, mode))
    }

    fn with_file(
        key: &Key,
        fd: OwnedFd,
        id: FileId,
        owner: Option<Owner>,
    ) -> Result<Bound, Failure> {
        let ListenAddr::Path(path) = &key.addr else {
            return Err(cannot(key, &"not a path"));
        };
        let mut bound = Bound {
            fd,
            local: path.display().to_string(),
            file: Some(SocketFile {
                path: path.clone(),
                id,
                owner,
            }),
            spec: None,
            parked: Parked::none(),
        };
        if key.kind() == SocketType::STREAM {
            rustix::net::listen(&bound.fd, LISTEN_BACKLOG).map_err(|e| cannot(key, &e))?;
        }
        bound.local = local_address(&bound.fd).map_err(internal)?;
        Ok(bound)
    }

    /// Parks it in `store` under the name of `key` in `table`.
    fn park(mut self, store: &FdStore, table: Table, key: &Key, mode: Option<u32>) -> Bound {
        let file = self.file.as_ref().map(|f| f.id);
        self.parked = store.park(self.fd.as_fd(), FdName::new(table, key, mode, file));
        self
    }

    /// A socket of `key` the master bound before and that the fd store
    /// holds already (`parked`, adopted at start or carried across an
    /// upgrade): nothing is sent to the store now. `file` is its unix
    /// socket's file and who bound it; `spec` its `listen` entry, if it is
    /// one.
    ///
    /// # Errors
    ///
    /// If its address cannot be read (it is closed, and removed from the
    /// store, as `parked` is dropped).
    pub fn adopt(
        key: &Key,
        fd: OwnedFd,
        file: Option<(FileId, Option<Owner>)>,
        spec: Option<ListenSpec>,
        parked: Parked,
    ) -> Result<Bound, Failure> {
        let local = local_address(&fd).map_err(|e| cannot(key, &e))?;
        let file = match (&key.addr, file) {
            (ListenAddr::Path(path), Some((id, owner))) => Some(SocketFile {
                path: path.clone(),
                id,
                owner,
            }),
            _ => None,
        };
        Ok(Bound {
            fd,
            local,
            file,
            spec,
            parked,
        })
    }
}

/// Where an app stands, for the sockets no live instance of it holds:
/// what [`Listeners::settle`] decides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Meant to serve, and no main instance ready: starting, waiting out a
    /// crash's back-off, or stopping only to start again (`restart`). The
    /// next instance gets the same sockets.
    Awaiting,
    /// A ready main instance serves: a socket no live instance holds is
    /// one this version does not use.
    Serving,
    /// Stopped, `failed` (no instance is coming until `ally-ctl start`),
    /// removed from the config, shutting down, or not known.
    Down,
}

impl Standing {
    /// The rule: whether a socket of an app standing so stays open, given
    /// whether a live instance of the app holds it.
    ///
    /// A held socket always stays. An unheld one stays while the app waits
    /// for an instance, so a crash, `kill` or `restart` refuses no
    /// connection and port 0 keeps its port; it is closed once the app is
    /// down (nothing would accept on it) or a ready main serves without it
    /// (a new version that no longer uses it would leave clients hanging).
    pub fn keeps(self, held: bool) -> bool {
        held || self == Standing::Awaiting
    }

    /// Why an unheld socket of an app standing so is closed, for the log.
    fn why_closed(self) -> &'static str {
        match self {
            Standing::Awaiting => "the app awaits an instance",
            Standing::Serving => "the main instance serves without it",
            Standing::Down => "the app is stopped, failed, removed or shutting down",
        }
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
    /// Gives instance `id` the socket of `key` if it is bound already: a
    /// new fd for it (close-on-exec, to be sent to the instance) and its
    /// local address. `None` if it is not in the table.
    pub fn share(
        &mut self,
        key: &Key,
        id: u64,
        mode: Option<u32>,
    ) -> Option<Result<(OwnedFd, String), Failure>> {
        let entry = self.entries.get_mut(key)?;
        if mode.is_some() && mode != entry.mode {
            return Some(Err(mode_mismatch(key, entry.mode)));
        }
        Some(entry.bound.fd.try_clone().map_err(internal).map(|fd| {
            entry.holders.insert(id);
            (fd, entry.bound.local.clone())
        }))
    }

    /// Enters `bound` as the socket of `key`, held by `holders`.
    pub fn insert(&mut self, key: Key, bound: Bound, mode: Option<u32>, holders: BTreeSet<u64>) {
        self.entries.insert(
            key,
            Entry {
                bound,
                mode,
                holders,
            },
        );
    }

    /// The keys of every socket in the table.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.keys()
    }

    /// Instance `id` of `app` unlistens the socket for `spec`: it no
    /// longer holds it, and the socket is closed if no other instance does.
    pub fn release(&mut self, app: &str, id: u64, spec: &ListenSpec) -> Result<(), Failure> {
        let (key, _) = Key::of(app, spec)?;
        let entry = self.entries.get_mut(&key);
        let Some(entry) = entry.filter(|e| e.holders.contains(&id)) else {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("this instance does not hold {} {}", key.network, key.addr),
            ));
        };
        entry.holders.remove(&id);
        if entry.holders.is_empty() {
            self.entries.remove(&key);
        }
        Ok(())
    }

    /// Instance `id` of `app` is gone: it holds nothing any more. Its
    /// sockets stay open; [`settle`](Self::settle) decides their fate.
    pub fn release_instance(&mut self, app: &str, id: u64) {
        for (key, entry) in &mut self.entries {
            if key.app == app {
                entry.holders.remove(&id);
            }
        }
    }

    /// Closes every socket that [`Standing::keeps`] no longer keeps;
    /// `standing` says where an app stands, asked only for apps with a
    /// socket no live instance holds. Cheap when every socket is held (a
    /// pass over the table), so the loop calls it after every change.
    /// Each one closed is logged, with why: a socket gone from under
    /// clients is something an operator must be able to find.
    pub fn settle(&mut self, standing: impl Fn(&str) -> Standing) {
        self.entries.retain(|key, entry| {
            let held = !entry.holders.is_empty();
            if held {
                return true;
            }
            let standing = standing(&key.app);
            if standing.keeps(held) {
                return true;
            }
            let (asked, local) = (key.addr.to_string(), entry.bound.local.to_string());
            let at = if asked == local {
                asked
            } else {
                format!("{asked} (bound at {local})")
            };
            log!(
                "{}: closed {} {at}: no instance holds it, and {}",
                key.app,
                key.network,
                standing.why_closed()
            );
            false
        });
    }

    /// How many sockets instance `id` of `app` holds (kept sockets no
    /// live instance holds count for none).
    pub fn held_by(&self, app: &str, id: u64) -> u32 {
        let held = self
            .entries
            .iter()
            .filter(|(key, entry)| key.app == app && entry.holders.contains(&id))
            .count();
        u32::try_from(held).unwrap_or(u32::MAX)
    }

    /// The sockets of `app` (network, bound address, holders), by
    /// network and address.
    pub fn of_app(&self, app: &str) -> Vec<(Network, String, Vec<u64>)> {
        let mut found: Vec<_> = self
            .entries
            .iter()
            .filter(|(key, _)| key.app == app)
            .map(|(key, entry)| {
                let holders = entry.holders.iter().copied().collect();
                (key.network, entry.bound.local.clone(), holders)
            })
            .collect();
        found.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
        found
    }

    /// Closes every socket (the master is exiting).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The refusal of a request for `key` with another mode than its socket's.
pub fn mode_mismatch(key: &Key, mode: Option<u32>) -> Failure {
    Failure::new(
        ErrorCode::BadRequest,
        format!(
            "{} {} is already bound with mode {}; ask with the same mode",
            key.network,
            key.addr,
            describe_mode(mode)
        ),
    )
}

/// A failure to listen on `key`, because of `why`.
pub fn cannot(key: &Key, why: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        ErrorCode::ListenFailed,
        format!("cannot listen on {} {}: {why}", key.network, key.addr),
    )
}

/// Whether `failure` (from binding) says another socket holds the address:
/// `EADDRINUSE`, or a unix socket file something is bound to.
pub fn is_in_use(failure: &Failure) -> bool {
    let in_use = io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    failure.code == ErrorCode::ListenFailed
        && (failure.message.ends_with(&in_use)
            || failure.message.contains(crate::path_socket::FILE_IN_USE))
}

fn internal(e: io::Error) -> Failure {
    Failure::new(ErrorCode::Internal, format!("cannot duplicate socket: {e}"))
}

fn describe_mode(mode: Option<u32>) -> String {
    mode.map_or_else(|| "default".to_owned(), |m| format!("{m:#o}"))
}

/// A new non-blocking, close-on-exec socket for `key`, not bound yet.
pub fn new_socket(key: &Key) -> io::Result<OwnedFd> {
    let family = match &key.addr {
        ListenAddr::Inet(SocketAddr::V4(_)) => AddressFamily::INET,
        ListenAddr::Inet(SocketAddr::V6(_)) => AddressFamily::INET6,
        ListenAddr::Path(_) | ListenAddr::Abstract(_) => AddressFamily::UNIX,
    };
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    Ok(rustix::net::socket_with(family, key.kind(), flags, None)?)
}

/// Creates, binds and (for stream sockets) listens on a socket for an IP
/// or abstract address.
fn bind_direct(key: &Key) -> io::Result<OwnedFd> {
    let fd = new_socket(key)?;
    match &key.addr {
        ListenAddr::Inet(sa) => {
            if key.kind() == SocketType::STREAM {
                rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
            }
            rustix::net::bind(&fd, sa)?;
        }
        ListenAddr::Abstract(name) => {
            rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
        }
        ListenAddr::Path(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a unix path is bound by the path-socket helper",
            ));
        }
    }
    if key.kind() == SocketType::STREAM {
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    }
    Ok(fd)
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

mod handover;
#[cfg(test)]
mod tests;
