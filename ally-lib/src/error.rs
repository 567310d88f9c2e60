//! The crate's error type.
//!
//! Public functions return [`std::io::Result`] so they slot into std code;
//! the [`io::Error`] they return wraps an [`Error`] from this module, which a
//! caller can inspect with [`io::Error::get_ref`] and
//! [`downcast_ref`](std::error::Error#method.downcast_ref).

use std::fmt;
use std::io;
use std::path::PathBuf;

use ally_proto::{AddrError, ErrorCode, Failure, Network};

/// What went wrong, and what to do about it.
///
/// Converted into an [`io::Error`] whose [`kind`](io::Error::kind) follows
/// the cause (for example [`io::ErrorKind::AddrInUse`] when a simulate-mode
/// bind fails because the port is taken).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `ALLY_CHANNEL_FD` is set, but it or another `ALLY_*` variable is
    /// missing or malformed.
    BadEnv {
        /// The variable's name.
        var: &'static str,
        /// Its value, `None` when unset.
        value: Option<String>,
        /// What it should look like.
        expected: &'static str,
    },
    /// `ALLY_CHANNEL_FD` is set, but the parent process is not the master
    /// that `ALLY_MASTER_PID` names when the library first looks (the
    /// process was started by something else — a wrapper that did not
    /// `exec`, or a fork of the instance — or the master died and the
    /// process was re-parented).
    NotMasterChild {
        /// This process's parent pid, `None` if it has none.
        parent: Option<u32>,
        /// The pid in `ALLY_MASTER_PID`.
        master: u32,
    },
    /// The descriptor `ALLY_CHANNEL_FD` names is not this instance's
    /// channel to the master (closed, not a unix stream socket, or made by
    /// another process).
    Channel {
        /// The descriptor number.
        fd: i32,
        /// What it is instead.
        reason: String,
    },
    /// The environment is that of an older master, which instances reached
    /// by a socket path (`ALLY_SOCKET`); this library needs its channel.
    MasterTooOld,
    /// This process is a fork of the instance that holds the channel: the
    /// channel and its connections are the parent's, and sharing them would
    /// mix the two processes' requests.
    Forked {
        /// The instance's pid (which holds the channel).
        owner: u32,
        /// This process's pid.
        pid: u32,
    },
    /// The master exited: the channel reached end of file. The library sent
    /// this process its stop signal when it saw that.
    MasterGone,
    /// The master speaks another protocol version.
    Version {
        /// The master's version.
        master: u32,
    },
    /// The master refused this process's connection.
    Refused(Failure),
    /// The master could not do what was asked.
    Master {
        /// The request, for example `listen tcp 0.0.0.0:80`.
        request: String,
        /// The master's reason.
        failure: Failure,
    },
    /// The master sent bytes that are not a valid frame.
    Frame(ally_proto::Error),
    /// The master answered with a message that does not fit the request.
    Unexpected {
        /// The request.
        request: String,
        /// The answer, debug-formatted.
        response: String,
    },
    /// The master announced file descriptors that did not arrive.
    MissingFds {
        /// How many were announced.
        expected: usize,
        /// How many arrived.
        got: usize,
    },
    /// The kernel truncated the control data carrying file descriptors
    /// (`MSG_CTRUNC`): descriptors were lost.
    ControlTruncated,
    /// The master closed the connection.
    Disconnected,
    /// The master did not answer in time.
    Timeout {
        /// The request.
        request: String,
    },
    /// An I/O error on the connection to the master.
    Io(io::Error),
    /// A listen address was refused before anything was sent or bound.
    Address(AddrError),
    /// A unix socket path is not valid UTF-8, which the wire format needs.
    NonUtf8Path(PathBuf),
    /// The socket the master sent is not the one asked for; it was closed.
    SocketMismatch {
        /// The network asked for.
        network: Network,
        /// The address asked for, normalized.
        address: String,
        /// What the socket turned out to be.
        found: String,
    },
    /// In simulate mode, the sockets passed by systemd (`LISTEN_FDS`) under
    /// the name asked for with
    /// [`ListenOptions::systemd_name`](crate::ListenOptions::systemd_name)
    /// do not fit the network asked for.
    InheritedMismatch {
        /// The name asked for, as in `LISTEN_FDNAMES`.
        name: String,
        /// The network asked for.
        network: Network,
        /// What the socket turned out to be.
        found: String,
    },
    /// Binding a socket in simulate mode failed.
    Bind {
        /// The network asked for.
        network: Network,
        /// The address asked for, normalized.
        address: String,
        /// The step that failed (`socket`, `bind`, `listen`, ...).
        step: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The operation needs a master and the process runs without one.
    NoMaster {
        /// What was asked, for example `reload`.
        operation: &'static str,
    },
    /// A shared-state operation (cache, atomic, lock) was refused: a limit
    /// was reached, a name or time to live is out of bounds, an atomic
    /// would overflow, or a lock is not held. The same failures, with the
    /// same messages, come from the master and from the in-process state of
    /// simulate mode.
    State {
        /// The operation, for example `set key "k" in cache "sessions"`.
        request: String,
        /// Why; its [`code`](Failure::code) says which kind of refusal.
        failure: Failure,
    },
    /// A request is larger than a frame may be, so it was not sent (and is
    /// refused in simulate mode too).
    TooLarge {
        /// The request.
        request: String,
        /// Its encoded size in bytes.
        len: usize,
        /// The limit, [`MAX_FRAME_LEN`](ally_proto::frame::MAX_FRAME_LEN).
        max: usize,
    },
    /// In simulate mode, `NOTIFY_SOCKET` is set but is not an address
    /// `sd_notify` messages can go to.
    BadNotifySocket {
        /// Its value.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// In simulate mode, an `sd_notify` message to `NOTIFY_SOCKET` could not
    /// be sent.
    Notify {
        /// `NOTIFY_SOCKET`.
        socket: String,
        /// The message, for example `READY=1` (its first 64 characters).
        message: String,
        /// The cause.
        source: io::Error,
    },
}

impl Error {
    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::BadEnv { .. } | Error::Address(_) | Error::NonUtf8Path(_) => K::InvalidInput,
            Error::NotMasterChild { .. } | Error::Channel { .. } | Error::Forked { .. } => {
                K::PermissionDenied
            }
            Error::MasterTooOld => K::Unsupported,
            Error::MasterGone => K::NotConnected,
            Error::Bind { source, .. } => source.kind(),
            Error::Io(e) => e.kind(),
            Error::Refused(f)
            | Error::Master { failure: f, .. }
            | Error::State { failure: f, .. } => failure_kind(f.code),
            Error::TooLarge { .. } => K::InvalidInput,
            Error::Version { .. }
            | Error::Frame(_)
            | Error::Unexpected { .. }
            | Error::MissingFds { .. }
            | Error::ControlTruncated
            | Error::SocketMismatch { .. }
            | Error::InheritedMismatch { .. } => K::InvalidData,
            Error::Disconnected => K::ConnectionAborted,
            Error::Timeout { .. } => K::TimedOut,
            Error::NoMaster { .. } => K::Unsupported,
            Error::BadNotifySocket { .. } => K::InvalidInput,
            Error::Notify { source, .. } => source.kind(),
        }
    }
}

/// The [`io::ErrorKind`] of a failure with `code`.
fn failure_kind(code: ErrorCode) -> io::ErrorKind {
    use io::ErrorKind as K;
    match code {
        ErrorCode::NotPermitted => K::PermissionDenied,
        ErrorCode::BadRequest | ErrorCode::Overflow => K::InvalidInput,
        ErrorCode::LimitExceeded => K::QuotaExceeded,
        _ => K::Other,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadEnv {
                var,
                value: Some(v),
                expected,
            } => write!(
                f,
                "ALLY_CHANNEL_FD is set but {var}={v:?} is not {expected}; \
                 unset ALLY_* to run standalone"
            ),
            Error::BadEnv {
                var,
                value: None,
                expected,
            } => write!(
                f,
                "ALLY_CHANNEL_FD is set but {var} is not (expected {expected}); \
                 unset ALLY_* to run standalone"
            ),
            Error::NotMasterChild { parent, master } => {
                let parent = parent.map_or_else(|| "none".to_owned(), |p| p.to_string());
                write!(
                    f,
                    "ALLY_CHANNEL_FD is set but the parent process (pid {parent}) is not \
                     the master (pid {master}): start the program with `exec` from a \
                     wrapper, use the library only in the process the master started, \
                     or unset ALLY_* to run standalone"
                )
            }
            Error::Channel { fd, reason } => write!(
                f,
                "descriptor {fd} (ALLY_CHANNEL_FD) is not this instance's channel to the \
                 ally master: {reason}; was the process started by ally-master, and did \
                 nothing close or replace that descriptor?"
            ),
            Error::MasterTooOld => f.write_str(
                "the ally master that started this process is older than this library \
                 (it sets ALLY_SOCKET, not ALLY_CHANNEL_FD); upgrade ally-master",
            ),
            Error::Forked { owner, pid } => write!(
                f,
                "this process (pid {pid}) is a fork of the ally instance (pid {owner}); \
                 only the instance itself may talk to the master"
            ),
            Error::MasterGone => f.write_str(
                "the ally master exited; this instance was sent its stop signal and \
                 should drain and exit",
            ),
            Error::Version { master } => write!(
                f,
                "the ally master speaks protocol version {master}, this library {}; \
                 rebuild the service against a matching ally version",
                ally_proto::PROTOCOL_VERSION
            ),
            Error::Refused(failure) => {
                write!(f, "the ally master refused this process: {failure}")
            }
            Error::Master { request, failure } => {
                write!(f, "the ally master could not {request}: {failure}")
            }
            Error::Frame(e) => write!(f, "bad frame from the ally master: {e}"),
            Error::Unexpected { request, response } => write!(
                f,
                "the ally master answered {request} with {response}; \
                 are the master and the library of the same version?"
            ),
            Error::MissingFds { expected, got } => write!(
                f,
                "the ally master announced {expected} file descriptor(s) but {got} arrived"
            ),
            Error::ControlTruncated => f.write_str(
                "file descriptors from the ally master were truncated (MSG_CTRUNC); \
                 the process may be at its open-file limit (ulimit -n)",
            ),
            Error::Disconnected => f.write_str(
                "the ally master closed the connection; it may be shutting down or have crashed",
            ),
            Error::Timeout { request } => {
                write!(f, "the ally master did not answer {request} in time")
            }
            Error::Io(e) => write!(f, "i/o error talking to the ally master: {e}"),
            Error::Address(e) => write!(f, "bad listen address: {e}"),
            Error::NonUtf8Path(p) => write!(
                f,
                "unix socket path {} is not valid UTF-8; choose a UTF-8 path",
                p.display()
            ),
            Error::SocketMismatch {
                network,
                address,
                found,
            } => write!(
                f,
                "the ally master sent a socket that is not {network} {address} \
                 (it is {found}); the socket was closed"
            ),
            Error::InheritedMismatch {
                name,
                network,
                found,
            } => write!(
                f,
                "the socket passed as `{name}` (LISTEN_FDNAMES) is not a {network} socket \
                 (it is {found}); check the socket unit's FileDescriptorName= against \
                 the listen call"
            ),
            Error::Bind {
                network,
                address,
                step,
                source,
            } => write!(f, "cannot listen on {network} {address}: {step}: {source}"),
            Error::NoMaster { operation } => write!(
                f,
                "cannot {operation}: this process runs without an ally master \
                 (ALLY_CHANNEL_FD is not set); start it with ally-master"
            ),
            Error::State { request, failure } => write!(f, "cannot {request}: {failure}"),
            Error::TooLarge { request, len, max } => write!(
                f,
                "cannot {request}: the request takes {len} bytes, more than the \
                 {max}-byte frame limit; store smaller values"
            ),
            Error::BadNotifySocket { value, expected } => write!(
                f,
                "NOTIFY_SOCKET={value:?} is not {expected}; it is set by the \
                 supervisor (systemd's Type=notify): fix or unset it"
            ),
            Error::Notify {
                socket,
                message,
                source,
            } => write!(
                f,
                "cannot send {message} to the supervisor at NOTIFY_SOCKET={socket}: \
                 {source}; is it still there and reading?"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } | Error::Notify { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Frame(e) => Some(e),
            Error::Address(e) => Some(e),
            Error::Refused(f)
            | Error::Master { failure: f, .. }
            | Error::State { failure: f, .. } => Some(f),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.kind(), e)
    }
}

impl From<AddrError> for Error {
    fn from(e: AddrError) -> Self {
        Error::Address(e)
    }
}

impl From<ally_proto::Error> for Error {
    fn from(e: ally_proto::Error) -> Self {
        match e {
            ally_proto::Error::Closed => Error::Disconnected,
            ally_proto::Error::Io(e) => Error::Io(e),
            other => Error::Frame(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_keeps_kind_and_inner_error() {
        let e: io::Error = Error::NotMasterChild {
            parent: Some(10),
            master: 20,
        }
        .into();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let msg = e.to_string();
        assert!(msg.contains("parent process (pid 10)"), "{msg}");
        assert!(msg.contains("master (pid 20)"), "{msg}");
        assert!(msg.contains("unset ALLY_*"), "{msg}");
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::NotMasterChild { .. })));
    }

    #[test]
    fn state_failures_map_to_kinds() {
        let kind = |code| {
            io::Error::from(Error::State {
                request: "set key \"k\" in cache \"c\"".into(),
                failure: Failure::new(code, "why"),
            })
            .kind()
        };
        assert_eq!(kind(ErrorCode::LimitExceeded), io::ErrorKind::QuotaExceeded);
        assert_eq!(kind(ErrorCode::Overflow), io::ErrorKind::InvalidInput);
        assert_eq!(kind(ErrorCode::BadRequest), io::ErrorKind::InvalidInput);
        assert_eq!(kind(ErrorCode::Internal), io::ErrorKind::Other);
        let e = Error::State {
            request: "add to atomic \"n\"".into(),
            failure: Failure::new(ErrorCode::Overflow, "it would overflow"),
        };
        assert_eq!(
            e.to_string(),
            "cannot add to atomic \"n\": it would overflow (overflow)"
        );
    }

    #[test]
    fn bind_error_keeps_os_kind() {
        let e: io::Error = Error::Bind {
            network: Network::Tcp,
            address: "127.0.0.1:1".into(),
            step: "bind",
            source: io::ErrorKind::AddrInUse.into(),
        }
        .into();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }
}
