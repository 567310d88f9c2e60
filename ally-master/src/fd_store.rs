//! systemd's file descriptor store: every listening socket the master
//! holds is parked there, so a master that crashes and is started again
//! gets the very same sockets back (`LISTEN_FDS`), and connections that
//! arrive meanwhile wait in their accept queues instead of being refused.
//!
//! One rule, kept in one place: a socket is parked (`FDSTORE=1` with its
//! [`FdName`]) when the master binds it, and removed (`FDSTOREREMOVE=1`)
//! when the master really closes it — [`crate::listeners::Bound`] holds a
//! [`Parked`] for as long as it lives, and dropping it sends the removal.
//! What is parked is therefore always what the listener tables hold. A
//! socket the store holds already (adopted at start, or carried across
//! an in-place upgrade) is entered with [`FdStore::keep`], which sends
//! nothing.
//!
//! The store is used when `NOTIFY_SOCKET` is set, unless systemd says it
//! has none: systemd 254 and newer set `FDSTORE` to the unit's
//! `FileDescriptorStoreMax=` (absent or 0: no store); older ones say
//! nothing, and then the master parks anyway (systemd drops what it cannot
//! keep, with a warning). Beyond the store's size, a socket is not parked
//! and the log says so: a crash closes that one. Sends never block; a
//! failure is counted and reported through the master's tally
//! ([`FdStore::take_trouble`]), never fatal.

use std::cell::{Cell, RefCell};
use std::os::fd::BorrowedFd;
use std::rc::Rc;

use crate::sd_notify::{Notifier, Target};

mod adopt;
mod name;

pub use adopt::{Adopted, Inherited};
pub use name::{FdName, NamedAddr, Parsed, Table};

/// The master's handle on the store; cheap to clone, and inert when there
/// is no store.
#[derive(Debug, Clone, Default)]
pub struct FdStore {
    inner: Option<Rc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    target: Rc<Target>,
    /// `FDSTORE`: how many descriptors the store keeps, if systemd said.
    max: Option<usize>,
    /// How many sockets are parked now.
    parked: Cell<usize>,
    trouble: RefCell<Option<Trouble>>,
}

/// Failures not reported yet: how many, and the last one.
#[derive(Debug)]
struct Trouble {
    count: u64,
    last: String,
}

impl Inner {
    fn note(&self, line: String) {
        let mut trouble = self.trouble.borrow_mut();
        match trouble.as_mut() {
            Some(t) => {
                t.count += 1;
                t.last = line;
            }
            None => {
                *trouble = Some(Trouble {
                    count: 1,
                    last: line,
                })
            }
        }
    }
}

impl FdStore {
    /// The store behind `notifier`'s socket, unless systemd said there is
    /// none (`FDSTORE` unset while other systemd 254 variables are there
    /// cannot be told from an older systemd, so only `FDSTORE=0` or a
    /// value that is not a number turn it off).
    pub fn new(notifier: &Notifier) -> FdStore {
        let max = std::env::var("FDSTORE")
            .ok()
            .map(|v| v.trim().parse::<usize>().unwrap_or(0));
        match (notifier.target(), max) {
            (None, _) | (_, Some(0)) => FdStore::default(),
            (Some(target), max) => FdStore::to(target, max),
        }
    }

    /// A store at `target` keeping at most `max` descriptors.
    fn to(target: Rc<Target>, max: Option<usize>) -> FdStore {
        FdStore {
            inner: Some(Rc::new(Inner {
                target,
                max,
                parked: Cell::new(0),
                trouble: RefCell::new(None),
            })),
        }
    }

    /// Whether sockets are parked at all.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Parks `fd` as `name` (`FDSTORE=1`); the guard removes it when
    /// dropped. Not parked (and noted) when the store is full or the send
    /// fails.
    pub fn park(&self, fd: BorrowedFd<'_>, name: FdName) -> Parked {
        let Some(inner) = &self.inner else {
            return Parked::none();
        };
        if inner.max.is_some_and(|max| inner.parked.get() >= max) {
            inner.note(format!(
                "{name} not parked in systemd's fd store: it holds {} descriptors, its most \
                 (raise FileDescriptorStoreMax=); a crash of the master closes this socket",
                inner.parked.get()
            ));
            return Parked::none();
        }
        let message = format!("FDSTORE=1\nFDNAME={name}");
        match inner.target.send(&message, &[fd]) {
            Ok(()) => self.keep(name),
            Err(e) => {
                inner.note(format!("cannot park {name} in systemd's fd store: {e}"));
                Parked::none()
            }
        }
    }

    /// `name`, which the store holds already (adopted, or carried across
    /// an upgrade): sends nothing now, and removes it when dropped.
    pub fn keep(&self, name: FdName) -> Parked {
        let Some(inner) = &self.inner else {
            return Parked::none();
        };
        inner.parked.set(inner.parked.get() + 1);
        Parked(Some((inner.clone(), name)))
    }

    /// The failures since the last call: how many, and the last one's line.
    pub fn take_trouble(&self) -> Option<(u64, String)> {
        let inner = self.inner.as_ref()?;
        inner.trouble.borrow_mut().take().map(|t| (t.count, t.last))
    }
}

/// A socket's place in the store: removed from it (`FDSTOREREMOVE=1`)
/// when dropped, that is when the socket is really closed.
#[derive(Debug)]
pub struct Parked(Option<(Rc<Inner>, FdName)>);

impl Parked {
    /// Not in the store (there is none, or it did not take the socket).
    pub fn none() -> Parked {
        Parked(None)
    }

    /// Its name, if the store holds it: what an upgrade carries, to
    /// [`keep`](FdStore::keep) it again.
    pub fn name(&self) -> Option<&FdName> {
        self.0.as_ref().map(|(_, name)| name)
    }

    /// Whether the store holds it.
    #[cfg(test)]
    pub fn is_parked(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let Some((inner, name)) = self.0.take() else {
            return;
        };
        inner.parked.set(inner.parked.get().saturating_sub(1));
        let message = format!("FDSTOREREMOVE=1\nFDNAME={name}");
        if let Err(e) = inner.target.send(&message, &[]) {
            inner.note(format!(
                "cannot remove {name} from systemd's fd store: {e}; it stays open there until \
                 the master starts again"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    use ally_proto::{ListenAddr, Network};

    use super::*;
    use crate::listeners::Key;

    fn name(port: u16) -> FdName {
        let key = Key {
            app: "web".into(),
            network: Network::Tcp,
            addr: ListenAddr::Inet(([127, 0, 0, 1], port).into()),
        };
        FdName::new(Table::Library, &key, None, None)
    }

    fn systemd(test: &str) -> (UnixDatagram, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("ally-fdstore-{test}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (UnixDatagram::bind(&path).unwrap(), path)
    }

    fn next(systemd: &UnixDatagram) -> String {
        let mut buf = [0; 512];
        let n = systemd.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_socket_is_parked_once_and_removed_when_dropped() {
        let (systemd, path) = systemd("park");
        systemd.set_nonblocking(true).unwrap();
        let store = FdStore::to(Rc::new(Target::to_path(&path)), Some(1));
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let parked = store.park(socket.as_fd(), name(1));
        assert!(parked.is_parked());
        assert_eq!(next(&systemd), format!("FDSTORE=1\nFDNAME={}", name(1)));
        // The store is full: the second is not parked, and that is noted.
        let second = store.park(socket.as_fd(), name(2));
        assert!(!second.is_parked());
        let (count, line) = store.take_trouble().unwrap();
        assert_eq!(count, 1);
        assert!(line.contains("FileDescriptorStoreMax"), "{line}");
        drop(second);
        assert!(
            systemd.recv(&mut [0; 16]).is_err(),
            "an unparked socket was removed"
        );
        drop(parked);
        assert_eq!(
            next(&systemd),
            format!("FDSTOREREMOVE=1\nFDNAME={}", name(1))
        );
        // One kept from before counts, sends nothing, and is removed too.
        let kept = store.keep(name(3));
        assert!(systemd.recv(&mut [0; 16]).is_err());
        assert!(!store.park(socket.as_fd(), name(4)).is_parked());
        drop(kept);
        assert_eq!(
            next(&systemd),
            format!("FDSTOREREMOVE=1\nFDNAME={}", name(3))
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_systemd_that_is_gone_costs_a_noted_failure() {
        let (systemd, path) = systemd("gone");
        let store = FdStore::to(Rc::new(Target::to_path(&path)), None);
        drop(systemd);
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let parked = store.park(socket.as_fd(), name(1));
        assert!(!parked.is_parked());
        assert!(store.take_trouble().unwrap().1.contains("cannot park"));
        assert!(store.take_trouble().is_none());
        let _ = std::fs::remove_file(&path);
    }
}
