//! The protocol half of the systemd stand-in (`fake-systemd`): what
//! systemd does with a datagram on a service's `NOTIFY_SOCKET`, as
//! `sd_notify(3)`, `systemd.service(5)` and systemd's `service.c` say, for
//! a unit with `NotifyAccess=main` and `FileDescriptorStoreMax=`:
//!
//! - only the main process is heard (the sender's pid, from
//!   `SCM_CREDENTIALS`); descriptors from anyone else are closed;
//! - `FDSTORE=1` keeps every descriptor of the message under `FDNAME=`,
//!   or under `stored` when the name is missing or not valid (at most 255
//!   printable ASCII characters, no `:`); a descriptor of a file the store
//!   holds already is not kept twice; past the store's size the rest are
//!   closed;
//! - `FDSTOREREMOVE=1` with a valid `FDNAME=` closes every descriptor of
//!   that name; without one it is ignored;
//! - descriptors sent without `FDSTORE=1` are closed;
//! - `READY=1`, `RELOADING=1`, `STOPPING=1` and `STATUS=` are noticed.
//!
//! [`Store::listen_env`] gives what the next start of the service gets:
//! the descriptors, in the order stored, for fds 3.., and their names for
//! `LISTEN_FDNAMES`, colon-separated.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Longest name systemd takes (`FDNAME_MAX`).
pub const MAX_FDNAME: usize = 255;

/// What a datagram did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `READY=1`.
    Ready,
    /// `RELOADING=1`.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
    /// `STATUS=`.
    Status(String),
    /// A descriptor kept under this name.
    Stored(String),
    /// A descriptor not kept, and why.
    Refused(String),
    /// Descriptors of this name closed (how many).
    Removed(String, usize),
    /// A message from a process other than the main one, ignored.
    Ignored(Option<u32>),
}

/// `fdname_is_valid`: at most [`MAX_FDNAME`] characters, each printable
/// ASCII other than `:`.
pub fn fdname_is_valid(name: &str) -> bool {
    name.len() <= MAX_FDNAME
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b':')
}

/// The descriptors a service has stored.
#[derive(Debug)]
pub struct Store {
    max: usize,
    entries: Vec<(String, OwnedFd)>,
}

impl Store {
    /// An empty store keeping at most `max` descriptors
    /// (`FileDescriptorStoreMax=`).
    pub fn new(max: usize) -> Store {
        Store {
            max,
            entries: Vec::new(),
        }
    }

    /// Handles one datagram `text` with `fds` attached, sent by `sender`
    /// (its pid, if credentials came with it) to a service whose main
    /// process is `main`.
    pub fn handle(
        &mut self,
        sender: Option<u32>,
        main: u32,
        text: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Vec<Event> {
        if sender != Some(main) {
            return vec![Event::Ignored(sender)];
        }
        let text = String::from_utf8_lossy(text);
        let tags: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
        let value = |key: &str| tags.iter().rev().find_map(|t| t.strip_prefix(key));
        let set = |key: &str| value(key).is_some_and(|v| v == "1");
        let mut events = Vec::new();
        if set("READY=") {
            events.push(Event::Ready);
        }
        if set("RELOADING=") {
            events.push(Event::Reloading);
        }
        if set("STOPPING=") {
            events.push(Event::Stopping);
        }
        if let Some(status) = value("STATUS=") {
            events.push(Event::Status(status.to_owned()));
        }
        let name = value("FDNAME=");
        if set("FDSTOREREMOVE=") {
            match name.filter(|n| fdname_is_valid(n)) {
                Some(name) => {
                    let before = self.entries.len();
                    self.entries.retain(|(n, _)| n != name);
                    events.push(Event::Removed(name.to_owned(), before - self.entries.len()));
                }
                None => events.push(Event::Refused(
                    "FDSTOREREMOVE=1 without a valid FDNAME=".into(),
                )),
            }
        }
        if set("FDSTORE=") {
            let name = name.filter(|n| fdname_is_valid(n)).unwrap_or("stored");
            for fd in fds {
                events.push(self.add(name, fd));
            }
        } else if !fds.is_empty() {
            events.push(Event::Refused(format!(
                "{} descriptor(s) without FDSTORE=1",
                fds.len()
            )));
        }
        events
    }

    fn add(&mut self, name: &str, fd: OwnedFd) -> Event {
        if self
            .entries
            .iter()
            .any(|(_, held)| same_file(held.as_fd(), fd.as_fd()))
        {
            return Event::Refused(format!("{name}: the store holds this one already"));
        }
        if self.entries.len() >= self.max {
            return Event::Refused(format!(
                "{name}: the store is full ({} descriptors)",
                self.max
            ));
        }
        self.entries.push((name.to_owned(), fd));
        Event::Stored(name.to_owned())
    }

    /// How many descriptors it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The descriptors for fds 3.., and `LISTEN_FDNAMES`.
    pub fn listen_env(&self) -> (Vec<BorrowedFd<'_>>, String) {
        let fds = self.entries.iter().map(|(_, fd)| fd.as_fd()).collect();
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        (fds, names.join(":"))
    }
}

/// Whether two descriptors are the same open file (systemd's `same_fd`,
/// by device and inode: enough for sockets, each its own inode).
fn same_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn socket() -> OwnedFd {
        OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn names(store: &Store) -> String {
        store.listen_env().1
    }

    #[test]
    fn several_descriptors_of_one_message_share_its_name_and_a_missing_name_is_stored() {
        let mut store = Store::new(8);
        let events = store.handle(
            Some(7),
            7,
            b"FDSTORE=1\nFDNAME=web",
            vec![socket(), socket()],
        );
        assert_eq!(
            events,
            [Event::Stored("web".into()), Event::Stored("web".into())]
        );
        store.handle(Some(7), 7, b"FDSTORE=1", vec![socket()]);
        store.handle(Some(7), 7, b"FDSTORE=1\nFDNAME=bad:name", vec![socket()]);
        assert_eq!(names(&store), "web:web:stored:stored");
        assert_eq!(store.listen_env().0.len(), 4);
    }

    #[test]
    fn removal_is_by_name_and_needs_a_valid_one() {
        let mut store = Store::new(8);
        store.handle(Some(1), 1, b"FDSTORE=1\nFDNAME=a", vec![socket(), socket()]);
        store.handle(Some(1), 1, b"FDSTORE=1\nFDNAME=b", vec![socket()]);
        let refused = store.handle(Some(1), 1, b"FDSTOREREMOVE=1", vec![]);
        assert!(matches!(refused[..], [Event::Refused(_)]), "{refused:?}");
        let removed = store.handle(Some(1), 1, b"FDSTOREREMOVE=1\nFDNAME=a", vec![]);
        assert_eq!(removed, [Event::Removed("a".into(), 2)]);
        assert_eq!(names(&store), "b");
        assert_eq!(
            store.handle(Some(1), 1, b"FDSTOREREMOVE=1\nFDNAME=zz", vec![]),
            [Event::Removed("zz".into(), 0)]
        );
    }

    #[test]
    fn only_the_main_process_is_heard() {
        let mut store = Store::new(8);
        assert_eq!(
            store.handle(Some(8), 7, b"FDSTORE=1\nFDNAME=x", vec![socket()]),
            [Event::Ignored(Some(8))]
        );
        assert_eq!(
            store.handle(None, 7, b"READY=1", vec![]),
            [Event::Ignored(None)]
        );
        assert!(store.is_empty());
        assert_eq!(
            store.handle(Some(7), 7, b"READY=1\nSTATUS=serving", vec![]),
            [Event::Ready, Event::Status("serving".into())]
        );
    }

    #[test]
    fn duplicates_overflow_and_stray_descriptors_are_not_kept() {
        let mut store = Store::new(2);
        let one = socket();
        let again = one.try_clone().unwrap();
        store.handle(Some(1), 1, b"FDSTORE=1\nFDNAME=one", vec![one]);
        let dup = store.handle(Some(1), 1, b"FDSTORE=1\nFDNAME=other", vec![again]);
        assert!(matches!(dup[..], [Event::Refused(_)]), "{dup:?}");
        store.handle(Some(1), 1, b"FDSTORE=1\nFDNAME=two", vec![socket()]);
        let full = store.handle(Some(1), 1, b"FDSTORE=1\nFDNAME=three", vec![socket()]);
        assert!(
            matches!(&full[..], [Event::Refused(why)] if why.contains("full")),
            "{full:?}"
        );
        let stray = store.handle(Some(1), 1, b"STATUS=x", vec![socket()]);
        assert!(
            matches!(stray[..], [Event::Status(_), Event::Refused(_)]),
            "{stray:?}"
        );
        assert_eq!(names(&store), "one:two");
        assert!(fdname_is_valid(&"x".repeat(255)) && !fdname_is_valid(&"x".repeat(256)));
        assert!(!fdname_is_valid("a\nb") && fdname_is_valid(""));
    }
}
