//! The instance's side channel for programs that speak systemd's notify
//! protocol: each instance gets a private `NOTIFY_SOCKET` (a datagram
//! socket in the abstract namespace) and may send `READY=1`, `STATUS=...`,
//! `STOPPING=1`, `RELOADING=1`, `MAINPID=...` on it.
//!
//! Only datagrams whose `SCM_CREDENTIALS` name the instance's own pid are
//! taken (systemd's `NotifyAccess=main`): any local process can reach an
//! abstract socket, but not forge its pid. The others are dropped
//! unparsed and only counted, reported at most once per
//! [`NOTIFY_STRANGER_REPORT_INTERVAL`].
//!
//! The name is `@ally-notify/<app>/<id>/<32 hex digits from getrandom>`:
//! abstract names have no owner or permissions, so a name that can be
//! guessed can be bound first by any local user, failing the instance's
//! start.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use rustix::process::Pid;
use rustix::rand::GetRandomFlags;

use crate::limits::{
    MAX_NOTIFY_DATAGRAM, NOTIFY_BIND_ATTEMPTS, NOTIFY_DATAGRAMS_PER_TURN,
    NOTIFY_STRANGER_REPORT_INTERVAL,
};

/// Random bytes in a notify socket's name: 128 bits, as hex.
const NAME_RANDOM_BYTES: usize = 16;

/// Longest abstract socket name: `sun_path` (108 bytes) less its leading
/// NUL.
const MAX_ABSTRACT_NAME: usize = 107;

/// The fixed start of every notify socket's name.
const NAME_PREFIX: &str = "ally-notify/";

/// One thing an instance said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`: it serves.
    Ready,
    /// `STATUS=...`: free text for `ally-ctl status`.
    Status(String),
    /// `STOPPING=1`: it is shutting down.
    Stopping,
    /// `RELOADING=1`: it is reloading its own configuration.
    Reloading,
    /// `MAINPID=...`: it says another process is its main one.
    MainPid(String),
}

/// Reads the messages of one datagram: newline-separated `KEY=VALUE`
/// assignments; unknown keys (`WATCHDOG=1`, `FDSTORE=1`, ...) and
/// malformed lines are skipped.
pub fn parse(datagram: &[u8]) -> Vec<Message> {
    let text = String::from_utf8_lossy(datagram);
    text.split('\n')
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match (key, value) {
                ("READY", "1") => Some(Message::Ready),
                ("STATUS", text) => Some(Message::Status(text.to_owned())),
                ("STOPPING", "1") => Some(Message::Stopping),
                ("RELOADING", "1") => Some(Message::Reloading),
                ("MAINPID", pid) => Some(Message::MainPid(pid.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// Datagrams from processes other than the instance: dropped, counted,
/// and reported at most once per [`NOTIFY_STRANGER_REPORT_INTERVAL`].
#[derive(Debug, Default)]
pub struct Strangers {
    unreported: u64,
    last_report: Option<Instant>,
}

impl Strangers {
    /// Counts `n` more; returns the count to report now, if a report is
    /// due (the first one is at once).
    pub fn add(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.unreported = self.unreported.saturating_add(n);
        self.take_due(now)
    }

    /// When the count not reported yet is due, if there is one. (Before
    /// the first report there is none: [`add`](Self::add) reports at once.)
    pub fn due(&self) -> Option<Instant> {
        let last = self.last_report.filter(|_| self.unreported > 0)?;
        Some(last + NOTIFY_STRANGER_REPORT_INTERVAL)
    }

    /// The count to report at `now`, if one is due; it is then reset.
    pub fn take_due(&mut self, now: Instant) -> Option<u64> {
        if self.unreported == 0 || self.due().is_some_and(|due| now < due) {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// The count not reported yet and when the last report was: what an
    /// upgraded master carries over.
    pub fn parts(&self) -> (u64, Option<Instant>) {
        (self.unreported, self.last_report)
    }

    /// Counts as [`parts`](Self::parts) gave them.
    pub fn from_parts(unreported: u64, last_report: Option<Instant>) -> Strangers {
        Strangers {
            unreported,
            last_report,
        }
    }

    /// The count not reported yet, if any, reset: for a last report.
    pub fn take_all(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.unreported)).filter(|&n| n > 0)
    }
}

/// An instance's notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    fd: OwnedFd,
    address: String,
    /// Datagrams dropped because another process sent them.
    pub strangers: Strangers,
}

impl NotifySocket {
    /// Binds `@ally-notify/<app>/<id>/<random>`: non-blocking,
    /// close-on-exec, receiving credentials. A name in use is replaced by
    /// another random one, up to [`NOTIFY_BIND_ATTEMPTS`] times.
    ///
    /// # Errors
    ///
    /// If the socket cannot be made, the kernel gives no random bytes, or
    /// every name tried was taken.
    pub fn bind(app: &str, id: u64) -> io::Result<NotifySocket> {
        Self::bind_named(|| Ok(name(app, id, &random_hex()?)))
    }

    /// Binds the first name from `names` that is free.
    fn bind_named(mut names: impl FnMut() -> io::Result<String>) -> io::Result<NotifySocket> {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        rustix::net::sockopt::set_socket_passcred(&fd, true)?;
        for _ in 0..NOTIFY_BIND_ATTEMPTS {
            let name = names()?;
            match rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name.as_bytes())?) {
                Ok(()) => {
                    return Ok(NotifySocket {
                        fd,
                        address: format!("@{name}"),
                        strangers: Strangers::default(),
                    });
                }
                Err(Errno::ADDRINUSE) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "cannot bind a notify socket: {NOTIFY_BIND_ATTEMPTS} random names in a row \
                 were in use"
            ),
        ))
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Its descriptor, to hand it over in an upgrade.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A socket handed over by the master's previous image: `fd` bound to
    /// `address`, with `strangers` not reported yet.
    pub fn adopt(fd: OwnedFd, address: String, strangers: Strangers) -> NotifySocket {
        NotifySocket {
            fd,
            address,
            strangers,
        }
    }

    /// The messages waiting from process `pid`, reading at most
    /// [`NOTIFY_DATAGRAMS_PER_TURN`] datagrams (the rest stay queued for
    /// the next turn); datagrams from anyone else are dropped and counted
    /// in [`strangers`](Self::strangers). The second value is the count
    /// to report now, if a report is due.
    pub fn receive(&mut self, pid: Pid) -> (Vec<Message>, Option<u64>) {
        self.receive_at_most(pid, NOTIFY_DATAGRAMS_PER_TURN)
    }

    /// [`receive`](Self::receive) with a budget of `budget` datagrams.
    fn receive_at_most(&mut self, pid: Pid, budget: usize) -> (Vec<Message>, Option<u64>) {
        let mut messages = Vec::new();
        let mut strangers = 0;
        let mut buf = vec![0u8; MAX_NOTIFY_DATAGRAM];
        for _ in 0..budget {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let received = match rustix::net::recvmsg(
                &self.fd,
                &mut iov,
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            ) {
                Ok(msg) => msg,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            };
            let sender = control.drain().find_map(|m| match m {
                RecvAncillaryMessage::ScmCredentials(cred) => Some(cred.pid),
                _ => None,
            });
            if sender != Some(pid) {
                strangers += 1;
                continue;
            }
            let len = received.bytes.min(buf.len());
            messages.extend(parse(&buf[..len]));
        }
        let report = if strangers > 0 {
            self.strangers.add(strangers, Instant::now())
        } else {
            None
        };
        (messages, report)
    }
}

/// `ally-notify/<app>/<id>/<random>`, the app name cut so that the whole
/// fits in an abstract socket address.
fn name(app: &str, id: u64, random: &str) -> String {
    let fixed = NAME_PREFIX.len() + format!("/{id}/{random}").len();
    let mut keep = MAX_ABSTRACT_NAME.saturating_sub(fixed).min(app.len());
    while !app.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{NAME_PREFIX}{}/{id}/{random}", &app[..keep])
}

/// `getrandom` — [`NAME_RANDOM_BYTES`] bytes from the kernel, as hex.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; NAME_RANDOM_BYTES];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn parses_the_known_assignments() {
        let got = parse(b"READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1\nbogus\nMAINPID=42\n");
        assert_eq!(
            got,
            [
                Message::Ready,
                Message::Status("serving 3 clients".into()),
                Message::MainPid("42".into()),
            ]
        );
        assert!(parse(b"READY=0").is_empty());
        assert!(parse(&[0xff, b'=', 0]).is_empty());
    }

    #[test]
    fn takes_messages_from_the_right_pid_only() {
        let mut socket = NotifySocket::bind("test", u64::from(std::process::id())).unwrap();
        let name = &socket.address()[1..];
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to_addr(b"READY=1", &addr).unwrap();
        let me = rustix::process::getpid();
        let (messages, strangers) = socket.receive(me);
        assert_eq!((messages, strangers), (vec![Message::Ready], None));
        client.send_to_addr(b"READY=1", &addr).unwrap();
        let other = Pid::from_raw(1).unwrap();
        assert_eq!(socket.receive(other), (vec![], Some(1)));
        // The next ones are counted, not reported, until the interval passed.
        client.send_to_addr(b"READY=1", &addr).unwrap();
        assert_eq!(socket.receive(other), (vec![], None));
        assert!(socket.strangers.due().is_some());
    }

    #[test]
    fn names_are_random_and_fit_a_socket_address() {
        let a = NotifySocket::bind("web", 3).unwrap();
        let b = NotifySocket::bind("web", 3).unwrap();
        assert_ne!(a.address(), b.address());
        let random = a.address().strip_prefix("@ally-notify/web/3/").unwrap();
        assert_eq!(random.len(), 2 * NAME_RANDOM_BYTES);
        assert!(random.bytes().all(|c| c.is_ascii_hexdigit()));

        let long = "a".repeat(64);
        let cut = name(&long, u64::MAX, &"f".repeat(2 * NAME_RANDOM_BYTES));
        assert_eq!(cut.len(), MAX_ABSTRACT_NAME);
        assert!(cut.ends_with(&format!("/{}/{}", u64::MAX, "f".repeat(32))));
        let socket = NotifySocket::bind(&long, u64::MAX).unwrap();
        assert!(socket.address().len() <= 1 + MAX_ABSTRACT_NAME);
    }

    #[test]
    fn a_name_in_use_is_replaced_by_another() {
        let taken = format!("ally-notify-test/{}/taken", std::process::id());
        let _squatter = UnixDatagram::bind_addr(
            &std::os::unix::net::SocketAddr::from_abstract_name(&taken).unwrap(),
        )
        .unwrap();
        let free = format!("ally-notify-test/{}/free", std::process::id());
        let mut names = [taken.clone(), taken.clone(), free.clone()].into_iter();
        let socket = NotifySocket::bind_named(|| Ok(names.next().unwrap())).unwrap();
        assert_eq!(socket.address(), format!("@{free}"));

        let e = NotifySocket::bind_named(|| Ok(taken.clone())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("random names in a row"), "{e}");
    }

    #[test]
    fn a_flood_is_read_a_budget_at_a_time() {
        // The kernel queues net.unix.max_dgram_qlen (often 10) datagrams and
        // more: a budget below that shows.
        const BUDGET: usize = 4;
        let mut socket = NotifySocket::bind("flood", 1).unwrap();
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&socket.address()[1..]).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < 3 * BUDGET && client.send_to_addr(b"X=1", &addr).is_ok() {
            sent += 1;
        }
        assert!(sent > BUDGET, "only {sent} datagrams queued");
        let other = Pid::from_raw(1).unwrap();
        let (_, first) = socket.receive_at_most(other, BUDGET);
        assert_eq!(first, Some(BUDGET as u64));
        let (_, later) = socket.receive_at_most(other, BUDGET);
        assert_eq!(later, None, "the next report waits for the interval");
        let rest = (sent - BUDGET).min(BUDGET);
        assert_eq!(socket.strangers.take_all(), Some(rest as u64));
    }

    #[test]
    fn strangers_are_reported_at_once_then_once_per_interval() {
        let t0 = Instant::now();
        let mut s = Strangers::default();
        assert_eq!(s.due(), None);
        assert_eq!(s.add(1, t0), Some(1));
        assert_eq!(s.add(500, t0), None);
        assert_eq!(s.add(500, t0 + NOTIFY_STRANGER_REPORT_INTERVAL / 2), None);
        assert_eq!(s.due(), Some(t0 + NOTIFY_STRANGER_REPORT_INTERVAL));
        let t1 = t0 + NOTIFY_STRANGER_REPORT_INTERVAL;
        assert_eq!(s.take_due(t1), Some(1000));
        assert_eq!(s.due(), None);
        assert_eq!(s.add(7, t1), None);
        assert_eq!(s.take_all(), Some(7));
        assert_eq!(s.take_all(), None);
    }
}
