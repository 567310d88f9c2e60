//! Simulate mode under a plain supervisor: `sd_notify` messages to the
//! `NOTIFY_SOCKET` it gave (systemd's `Type=notify`), so the same binary
//! that runs under `ally-master` is a notify unit under systemd alone.
//!
//! - [`ready`](crate::ready) sends `READY=1`;
//! - [`report`](crate::report) sends `STATUS=` and a one-line summary
//!   ([`status_line`]);
//! - the stop path sends `STOPPING=1`, once, the first time the library
//!   sees the stop signal set (see [`StopSignal`](crate::StopSignal)),
//!   without waiting: a supervisor whose queue is full must not hold up
//!   the drain (the other messages wait at most [`SEND_TIMEOUT`]).
//!
//! As `sd_notify(3)` does: one `AF_UNIX` datagram per call, from a fresh
//! close-on-exec socket, to the path or (`@` prefix) abstract name in
//! `NOTIFY_SOCKET`; no `MAINPID` (the sender is the main process), no
//! watchdog (`WATCHDOG=1` is left to the service). Without `NOTIFY_SOCKET`
//! every call does nothing; a malformed one or a failed send is an error.
//! Under a master none of this runs: the master is systemd's client.
//!
//! The variable is read once, at the first message, and left in the
//! environment (changing the environment of a process whose other threads
//! may read it is unsound, so a library must not). It is ignored when
//! `SYSTEMD_EXEC_PID` names another process: that process is the one
//! systemd started, and this one a child that inherited the variable, which
//! must not speak for it (as `LISTEN_PID` does for sockets; a wrapper must
//! `exec` the service).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::net::sockopt::{Timeout, set_socket_timeout};
use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

use ally_proto::Report;

use crate::error::Error;

/// The variable systemd names its notification socket in.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The variable systemd (248 and newer) names the process it started in.
const EXEC_PID: &str = "SYSTEMD_EXEC_PID";

/// Longest datagram sent: systemd reads at most this much of one
/// (`NOTIFY_BUFFER_MAX`, `PIPE_BUF`).
pub(crate) const MAX_DATAGRAM: usize = 4096;

/// Longest text field of a status line, in bytes; longer ones are cut at a
/// character boundary and end in `…` (as the master cuts report texts).
const MAX_FIELD: usize = 1024;

/// How long one send may wait for room in the supervisor's queue
/// (`SO_SNDTIMEO`) before it fails with `EAGAIN`.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where messages go: `NOTIFY_SOCKET` as given, and its address.
#[derive(Debug, Clone)]
struct Target {
    shown: String,
    address: SocketAddrUnix,
}

/// Sends `READY=1`, if a supervisor asked for notifications.
///
/// # Errors
///
/// [`Error::BadNotifySocket`] or [`Error::Notify`].
pub(crate) fn ready() -> Result<(), Error> {
    send("READY=1")
}

/// Sends `STATUS=` with [`status_line`] of `report`.
///
/// # Errors
///
/// As [`ready`].
pub(crate) fn status(report: &Report) -> Result<(), Error> {
    send(&format!("STATUS={}", status_line(report)))
}

/// Sends `STOPPING=1`, without waiting for room: it is sent from the first
/// look at a set stop signal, which may be on an async runtime's worker
/// (`ally::tokio::Stop`) or the accept loop, and the drain must not wait on
/// the supervisor. No caller can take an error there, so a failure (a full
/// queue included) is one line on stderr.
pub(crate) fn stopping() {
    if let Err(e) = send_with("STOPPING=1", Wait::No) {
        let _ =
            std::io::Write::write_all(&mut std::io::stderr(), format!("ally: {e}\n").as_bytes());
    }
}

/// A report on one line: the fields that are set, in the order text,
/// `tasks N`, `version V`, `commit C`, joined by `, ` (for example
/// `warming up, tasks 12, version 1.4.2, commit 3f2a1c`); empty when none
/// is. Control characters (newlines included, which would start another
/// assignment) become spaces, and each text is cut to [`MAX_FIELD`] bytes.
pub(crate) fn status_line(report: &Report) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(text) = &report.text {
        parts.push(clean(text));
    }
    if let Some(tasks) = report.tasks {
        parts.push(format!("tasks {tasks}"));
    }
    if let Some(version) = &report.version {
        parts.push(format!("version {}", clean(version)));
    }
    if let Some(commit) = &report.commit {
        parts.push(format!("commit {}", clean(commit)));
    }
    parts.join(", ")
}

/// `text` with control characters as spaces, cut to [`MAX_FIELD`] bytes.
fn clean(text: &str) -> String {
    let mut end = text.len().min(MAX_FIELD);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if end < text.len() {
        out.push('…');
    }
    out
}

/// Whether a send waits for room in the supervisor's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// At most [`SEND_TIMEOUT`].
    Bounded,
    /// Not at all: a full queue is an error at once.
    No,
}

/// Sends `message` as one datagram, if `NOTIFY_SOCKET` is set for this
/// process, waiting at most [`SEND_TIMEOUT`] for room.
fn send(message: &str) -> Result<(), Error> {
    send_with(message, Wait::Bounded)
}

fn send_with(message: &str, wait: Wait) -> Result<(), Error> {
    static TARGET: OnceLock<Result<Option<Target>, (String, &'static str)>> = OnceLock::new();
    let target = TARGET.get_or_init(|| {
        target(
            std::env::var_os(NOTIFY_SOCKET),
            std::env::var_os(EXEC_PID),
            std::process::id(),
        )
    });
    match target {
        Ok(Some(target)) => send_to(target, message, wait),
        Ok(None) => Ok(()),
        Err((value, expected)) => Err(Error::BadNotifySocket {
            value: value.clone(),
            expected,
        }),
    }
}

fn send_to(target: &Target, message: &str, wait: Wait) -> Result<(), Error> {
    let fail = |source: rustix::io::Errno| Error::Notify {
        socket: target.shown.clone(),
        message: message.chars().take(64).collect(),
        source: source.into(),
    };
    if message.len() > MAX_DATAGRAM {
        return Err(fail(rustix::io::Errno::MSGSIZE));
    }
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(fail)?;
    set_socket_timeout(&socket, Timeout::Send, Some(SEND_TIMEOUT)).map_err(fail)?;
    let flags = match wait {
        Wait::Bounded => SendFlags::NOSIGNAL,
        Wait::No => SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    };
    loop {
        match rustix::net::sendto(&socket, message.as_bytes(), flags, &target.address) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(fail(e)),
        }
    }
}

/// The target for `NOTIFY_SOCKET`=`value`, `None` when unset or meant for
/// another process (`SYSTEMD_EXEC_PID`=`exec_pid` is a pid other than
/// `pid`), or the value and what it should be.
fn target(
    value: Option<OsString>,
    exec_pid: Option<OsString>,
    pid: u32,
) -> Result<Option<Target>, (String, &'static str)> {
    let Some(value) = value else {
        return Ok(None);
    };
    let for_other = exec_pid
        .and_then(|p| p.to_str()?.trim().parse::<u32>().ok())
        .is_some_and(|p| p != pid);
    if for_other {
        return Ok(None);
    }
    let shown = value.to_string_lossy().into_owned();
    let bytes = OsStr::as_bytes(&value);
    let address = if let Some(name) = bytes.strip_prefix(b"@") {
        if name.is_empty() {
            return Err((shown, "an abstract socket name after the @"));
        }
        SocketAddrUnix::new_abstract_name(name)
    } else if bytes.starts_with(b"/") {
        SocketAddrUnix::new(bytes)
    } else if bytes.starts_with(b"vsock:") {
        return Err((
            shown,
            "a unix socket (an absolute path or @name); vsock is not supported",
        ));
    } else {
        return Err((shown, "an absolute socket path or @name"));
    };
    match address {
        Ok(address) => Ok(Some(Target { shown, address })),
        Err(_) => Err((shown, "a unix socket address of at most 107 bytes")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn notify_socket_forms() {
        assert!(target(None, None, 7).unwrap().is_none());
        assert!(
            target(os("/run/systemd/notify"), None, 7)
                .unwrap()
                .is_some()
        );
        assert!(target(os("@x/notify"), None, 7).unwrap().is_some());
        // Meant for the process systemd started, not for this child.
        assert!(target(os("/run/n"), os("8"), 7).unwrap().is_none());
        assert!(target(os("/run/n"), os("7"), 7).unwrap().is_some());
        for bad in ["", "relative/n", "@", "vsock:2:1234"] {
            let (value, _) = target(os(bad), None, 7).unwrap_err();
            assert_eq!(value, bad);
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(target(os(&long), None, 7).is_err());
    }

    #[test]
    fn status_is_one_bounded_line() {
        assert_eq!(status_line(&Report::default()), "");
        let report = Report {
            tasks: Some(12),
            version: Some("1.4.2".into()),
            commit: Some("3f2a1c".into()),
            text: Some("warming\nup".into()),
        };
        assert_eq!(
            status_line(&report),
            "warming up, tasks 12, version 1.4.2, commit 3f2a1c"
        );
        let huge = "é".repeat(4 * MAX_FIELD);
        let report = Report {
            tasks: Some(u64::MAX),
            version: Some(huge.clone()),
            commit: Some(huge.clone()),
            text: Some(huge),
        };
        let line = format!("STATUS={}", status_line(&report));
        assert!(line.len() <= MAX_DATAGRAM, "{} bytes", line.len());
        assert!(!line.contains('\n'));
    }

    fn bound() -> (UnixDatagram, Target, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "ally-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let target = target(Some(path.clone().into()), None, 1).unwrap().unwrap();
        (socket, target, path)
    }

    #[test]
    fn one_datagram_per_message() {
        let (socket, target, path) = bound();
        send_to(&target, "READY=1", Wait::Bounded).unwrap();
        send_to(&target, "STATUS=a, tasks 1", Wait::Bounded).unwrap();
        let mut buf = [0; MAX_DATAGRAM + 1];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=a, tasks 1");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_failed_send_is_an_error_naming_the_socket() {
        let (socket, target, path) = bound();
        drop(socket);
        let _ = std::fs::remove_file(&path);
        let e = send_to(&target, "READY=1", Wait::Bounded).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("READY=1") && text.contains(&target.shown),
            "{text}"
        );
    }

    #[test]
    fn a_supervisor_that_does_not_read_costs_a_bounded_wait() {
        let (socket, target, path) = bound();
        let start = std::time::Instant::now();
        let failed = (0..10_000).find_map(|_| send_to(&target, "STATUS=x", Wait::Bounded).err());
        assert!(failed.is_some(), "the queue never filled");
        assert!(start.elapsed() < SEND_TIMEOUT * 3);
        drop(socket);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn stopping_never_waits_for_a_supervisor_that_does_not_read() {
        let (socket, target, path) = bound();
        let full = (0..10_000).find_map(|_| send_to(&target, "X=1", Wait::No).err());
        assert!(full.is_some(), "the queue never filled");
        let start = std::time::Instant::now();
        assert!(send_to(&target, "STOPPING=1", Wait::No).is_err());
        // A waiting send takes the whole timeout: anything less did not.
        assert!(
            start.elapsed() < SEND_TIMEOUT,
            "waited {:?}",
            start.elapsed()
        );
        drop(socket);
        let _ = std::fs::remove_file(&path);
    }
}
