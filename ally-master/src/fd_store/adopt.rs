//! At start: the sockets systemd hands back from the store (`LISTEN_FDS`,
//! `LISTEN_FDNAMES`), put back where they were — an app's `listen =`
//! socket instead of binding it anew, a library socket into the listener
//! table with no holder, so the first instance asking for its address
//! gets the very same socket (port 0 keeps its port).
//!
//! Nothing is trusted by its name alone: each socket's type, family,
//! address and listening state are checked against what its name says (as
//! the library checks what it receives). Whatever does not fit the config
//! as it is now — a name that is not this master's, an app or a `listen`
//! entry gone, a library socket at an address an app now declares, a
//! socket that is not what its name says — is closed with a log line and
//! removed from the store (`FDSTOREREMOVE=1`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use ally_proto::{ListenAddr, ListenSpec, Network};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType, sockopt};

use super::{FdName, FdStore, NamedAddr, Parsed, Table};
use crate::config::Config;
use crate::helpers::Owner;
use crate::limits::{MAX_LISTEN_FDS, MAX_LISTENERS_PER_APP};
use crate::listeners::{Bound, Key};
use crate::log;
use crate::sys;

/// The descriptors passed by systemd, taken first thing in `main`.
#[derive(Debug, Default)]
pub struct Inherited {
    fds: Vec<(i32, OwnedFd, Option<String>)>,
}

impl Inherited {
    /// Takes descriptors 3 to 3 + `LISTEN_FDS` − 1 if `LISTEN_PID` is this
    /// process, with their names from `LISTEN_FDNAMES`, and removes the
    /// three variables, so that nothing started later (nor this binary
    /// executed again in place) takes them for its own. They are
    /// close-on-exec already ([`sys::cloexec_inherited_fds`] runs first).
    ///
    /// Call it from `main` while no other thread exists.
    pub fn from_env() -> Inherited {
        let var = |name| std::env::var(name).ok();
        let for_us = var("LISTEN_PID")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|p| p == std::process::id());
        let count = var("LISTEN_FDS").and_then(|n| n.trim().parse::<usize>().ok());
        let names = var("LISTEN_FDNAMES");
        sys::forget_listen_env();
        let Some(count) = count.filter(|_| for_us) else {
            return Inherited::default();
        };
        if count > MAX_LISTEN_FDS {
            log!("LISTEN_FDS={count} is more than {MAX_LISTEN_FDS}; ignoring the passed sockets");
            return Inherited::default();
        }
        let names: Vec<&str> = names
            .as_deref()
            .map(|n| n.split(':').collect())
            .unwrap_or_default();
        let names_fit = names.len() == count;
        (0..count)
            .filter_map(|i| {
                let raw = sys::FIRST_PASSED_FD + i as i32;
                match sys::adopt_fd(raw) {
                    Ok(fd) => Some((raw, fd, names_fit.then(|| names[i].to_owned()))),
                    Err(e) => {
                        log!("LISTEN_FDS: descriptor {raw}: {e}; skipped");
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
            .into()
    }

    /// Whether `raw` is one of the descriptors taken.
    pub fn contains(&self, raw: i32) -> bool {
        self.fds.iter().any(|(n, _, _)| *n == raw)
    }
}

impl From<Vec<(i32, OwnedFd, Option<String>)>> for Inherited {
    fn from(fds: Vec<(i32, OwnedFd, Option<String>)>) -> Inherited {
        Inherited { fds }
    }
}

/// One socket from the store, not placed yet.
#[derive(Debug)]
struct Candidate {
    fd: OwnedFd,
    name: FdName,
    parsed: Parsed,
    /// Its name was given twice: the store was told to drop the name, so
    /// this one must be parked anew.
    repark: bool,
}

/// The sockets from the store, sorted for the config; see the module docs.
#[derive(Debug)]
pub struct Adopted {
    store: FdStore,
    config: Vec<Candidate>,
    library: Vec<Candidate>,
}

impl Adopted {
    /// Sorts `inherited` for `config`, closing at once what cannot be
    /// used (so that an address an app declares is free to bind).
    pub fn new(inherited: Inherited, store: &FdStore, config: &Config) -> Adopted {
        let mut adopted = Adopted {
            store: store.clone(),
            config: Vec::new(),
            library: Vec::new(),
        };
        let declared: Vec<(&str, Network, ListenAddr)> = config
            .apps
            .iter()
            .flat_map(|a| a.listen.iter().map(move |d| (a.name.as_str(), &d.spec)))
            .filter_map(|(app, s)| {
                Some((
                    app,
                    s.network,
                    ListenAddr::parse(s.network, &s.address).ok()?,
                ))
            })
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (raw, fd, name) in inherited.fds {
            let Some(name) = name.as_deref().and_then(FdName::given) else {
                log!("passed descriptor {raw} has no usable name; closed it");
                continue;
            };
            let Some(parsed) = name.parse() else {
                adopted.reject(fd, &name, "the name is not one this master gives");
                continue;
            };
            *seen.entry(name.as_str().to_owned()).or_default() += 1;
            if seen[name.as_str()] > 1 {
                log!("{name}: passed twice; closed the second");
                // The store drops every descriptor of the name; the first
                // one is parked again when it is used.
                drop(store.keep(name.clone()));
                for c in adopted.config.iter_mut().chain(adopted.library.iter_mut()) {
                    c.repark |= c.name == name;
                }
                continue;
            }
            if !config.apps.iter().any(|a| a.name == parsed.app) {
                adopted.reject(fd, &name, "its app is not in the config any more");
                continue;
            }
            let candidate = Candidate {
                fd,
                name,
                parsed,
                repark: false,
            };
            match candidate.parsed.table {
                Table::Config => adopted.config.push(candidate),
                Table::Library => {
                    let taken = declared.iter().find(|(_, network, addr)| {
                        *network == candidate.parsed.network && candidate.parsed.addr.is(addr)
                    });
                    match taken {
                        Some((app, _, _)) => adopted.reject(
                            candidate.fd,
                            &candidate.name,
                            &format!("app {app} declares this address in `listen` now"),
                        ),
                        None => adopted.library.push(candidate),
                    }
                }
            }
        }
        adopted
    }

    /// Closes `fd` for `why`, and tells the store to drop `name`.
    fn reject(&self, fd: OwnedFd, name: &FdName, why: &str) {
        log!("{name}: handed back by systemd, but {why}; closed it");
        drop(self.store.keep(name.clone()));
        drop(fd);
    }

    /// The socket to use for `app`'s `listen` entry `spec`, if the store
    /// gave it back, checked; one that does not check out is closed.
    pub fn take_config(
        &mut self,
        app: &str,
        spec: &ListenSpec,
        owner: Option<Owner>,
    ) -> Option<Bound> {
        let addr = ListenAddr::parse(spec.network, &spec.address).ok()?;
        let mode = spec.mode.filter(|_| matches!(addr, ListenAddr::Path(_)));
        let index = self.config.iter().position(|c| {
            c.parsed.app == app
                && c.parsed.network == spec.network
                && c.parsed.mode == mode
                && c.parsed.addr.is(&addr)
        })?;
        let candidate = self.config.swap_remove(index);
        self.place(candidate, Some(spec.clone()), owner)
            .map(|(_, bound)| bound)
    }

    /// The library sockets, checked, for the listener table, with their
    /// file modes; closes every config socket no `listen` entry took, and
    /// whatever passes [`MAX_LISTENERS_PER_APP`] for one app. `owner` says
    /// who each app's instances run as (for a unix socket's file).
    pub fn into_library(
        mut self,
        owner: impl Fn(&str) -> Option<Owner>,
    ) -> Vec<(Key, Bound, Option<u32>)> {
        for c in std::mem::take(&mut self.config) {
            self.reject(
                c.fd,
                &c.name,
                "no `listen` entry of its app asks for it any more",
            );
        }
        let mut per_app: HashMap<String, usize> = HashMap::new();
        let mut placed = Vec::new();
        for c in std::mem::take(&mut self.library) {
            let count = per_app.entry(c.parsed.app.clone()).or_default();
            if *count >= MAX_LISTENERS_PER_APP {
                self.reject(
                    c.fd,
                    &c.name,
                    &format!("its app has {MAX_LISTENERS_PER_APP} listeners already"),
                );
                continue;
            }
            let mode = c.parsed.mode;
            let app_owner = owner(&c.parsed.app);
            if let Some((key, bound)) = self.place(c, None, app_owner) {
                *count += 1;
                placed.push((key, bound, mode));
            }
        }
        placed
    }

    /// Checks `c` and makes it a [`Bound`], with its key; closes it if it is
    /// not what its name says.
    fn place(
        &self,
        c: Candidate,
        spec: Option<ListenSpec>,
        owner: Option<Owner>,
    ) -> Option<(Key, Bound)> {
        let addr = match check(c.fd.as_fd(), c.parsed.network, &c.parsed.addr) {
            Ok(addr) => addr,
            Err(found) => {
                self.reject(c.fd, &c.name, &format!("it is {found}"));
                return None;
            }
        };
        let key = Key {
            app: c.parsed.app.clone(),
            network: c.parsed.network,
            addr,
        };
        let parked = if c.repark {
            self.store.park(c.fd.as_fd(), c.name.clone())
        } else {
            self.store.keep(c.name.clone())
        };
        let file = c.parsed.file.map(|id| (id, owner));
        match Bound::adopt(&key, c.fd, file, spec, parked) {
            Ok(bound) => {
                log!(
                    "{}: adopted {} {} from systemd's fd store",
                    key.app,
                    key.network,
                    bound.local
                );
                Some((key, bound))
            }
            // Dropping the guard inside told the store already.
            Err(failure) => {
                log!("{}: {}; closed it", c.name, failure.message);
                None
            }
        }
    }
}

/// A socket type as the log says it.
fn type_name(ty: SocketType) -> String {
    match ty {
        SocketType::STREAM => "stream".to_owned(),
        SocketType::DGRAM => "datagram".to_owned(),
        SocketType::SEQPACKET => "seqpacket".to_owned(),
        other => format!("type {}", other.as_raw()),
    }
}

/// Whether `fd` is a socket of `network` bound where `named` says (any
/// port when it says port 0), listening if a stream: its address as a key
/// if so, else what it is instead.
fn check(fd: BorrowedFd<'_>, network: Network, named: &NamedAddr) -> Result<ListenAddr, String> {
    let sys = |what: &str, e: rustix::io::Errno| format!("unreadable ({what}: {e})");
    let ty = sockopt::socket_type(fd).map_err(|e| match e {
        rustix::io::Errno::NOTSOCK => "not a socket at all".to_owned(),
        e => sys("SO_TYPE", e),
    })?;
    let want_ty = match network {
        Network::Tcp | Network::Unix => SocketType::STREAM,
        Network::Udp | Network::Unixgram => SocketType::DGRAM,
    };
    if ty != want_ty {
        return Err(format!(
            "a {} socket, where its name says {network}",
            type_name(ty)
        ));
    }
    if ty == SocketType::STREAM
        && !sockopt::socket_acceptconn(fd).map_err(|e| sys("SO_ACCEPTCONN", e))?
    {
        return Err("a stream socket that is not listening".to_owned());
    }
    let local = rustix::net::getsockname(fd).map_err(|e| sys("getsockname", e))?;
    let family = local.address_family();
    let got = if family == AddressFamily::UNIX && network.is_unix() {
        let unix = SocketAddrUnix::try_from(local).map_err(|e| sys("getsockname", e))?;
        if let Some(name) = unix.abstract_name() {
            ListenAddr::Abstract(name.to_vec())
        } else if let Some(path) = unix.path_bytes() {
            ListenAddr::Path(PathBuf::from(std::ffi::OsStr::from_bytes(path)))
        } else {
            return Err("an unnamed unix socket".to_owned());
        }
    } else if (family == AddressFamily::INET || family == AddressFamily::INET6)
        && !network.is_unix()
    {
        ListenAddr::Inet(SocketAddr::try_from(local).map_err(|e| sys("getsockname", e))?)
    } else {
        return Err(format!("a socket of family {family:?}"));
    };
    match named {
        NamedAddr::Exact(want) if want == &got => Ok(got),
        NamedAddr::Exact(ListenAddr::Inet(want)) => match &got {
            ListenAddr::Inet(sa) if want.port() == 0 && sa.ip() == want.ip() => {
                Ok(ListenAddr::Inet(*want))
            }
            _ => Err(format!("bound to {got}")),
        },
        NamedAddr::Exact(_) => Err(format!("bound to {got}")),
        NamedAddr::Hashed(_) if got_is_unix(&got) && named.is(&got) => Ok(got),
        NamedAddr::Hashed(_) => Err(format!("bound to {got}, which is not the address named")),
    }
}

fn got_is_unix(addr: &ListenAddr) -> bool {
    !matches!(addr, ListenAddr::Inet(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(network: Network, address: &str) -> NamedAddr {
        NamedAddr::Exact(ListenAddr::parse(network, address).unwrap())
    }

    #[test]
    fn a_socket_is_checked_against_what_its_name_says() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let fd = tcp.as_fd();
        let asked = ListenAddr::parse(Network::Tcp, "127.0.0.1:0").unwrap();
        assert_eq!(
            check(fd, Network::Tcp, &exact(Network::Tcp, "127.0.0.1:0")),
            Ok(asked)
        );
        let at = format!("127.0.0.1:{port}");
        assert!(check(fd, Network::Tcp, &exact(Network::Tcp, &at)).is_ok());
        let other = check(fd, Network::Tcp, &exact(Network::Tcp, "127.0.0.2:0")).unwrap_err();
        assert!(other.contains("bound to"), "{other}");
        let ty = check(fd, Network::Udp, &exact(Network::Udp, &at)).unwrap_err();
        assert_eq!(ty, "a stream socket, where its name says udp");
        let (pipe, _w) = rustix::pipe::pipe().unwrap();
        let pipe = check(pipe.as_fd(), Network::Tcp, &exact(Network::Tcp, &at)).unwrap_err();
        assert_eq!(pipe, "not a socket at all");
        let family = check(fd, Network::Unix, &exact(Network::Unix, "@x")).unwrap_err();
        assert!(family.contains("family"), "{family}");
        // Bound but not listening: not a listener, whatever its address.
        let idle = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&idle, &SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let not = check(
            idle.as_fd(),
            Network::Tcp,
            &exact(Network::Tcp, "127.0.0.1:0"),
        )
        .unwrap_err();
        assert!(not.contains("not listening"), "{not}");
        // A name too long to write out: the address comes from the socket,
        // and must hash to what the name says.
        let raw: Vec<u8> = format!("ally-adopt-{}-", std::process::id())
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat_n(1, 80))
            .collect();
        let addr = ListenAddr::Abstract(raw.clone());
        let unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
        rustix::net::bind(&unix, &SocketAddrUnix::new_abstract_name(&raw).unwrap()).unwrap();
        let key = Key {
            app: "a".repeat(64),
            network: Network::Unixgram,
            addr: addr.clone(),
        };
        let hashed = FdName::new(Table::Library, &key, None, None)
            .parse()
            .unwrap()
            .addr;
        assert!(matches!(hashed, NamedAddr::Hashed(_)), "{hashed:?}");
        assert_eq!(check(unix.as_fd(), Network::Unixgram, &hashed), Ok(addr));
    }
}
