//! Telling the master about this instance: ready, status reports, and
//! self-triggered reloads.

use std::io;

use ally_proto::{InstanceRequest, InstanceResponse};

pub use ally_proto::Report;

use crate::client;
use crate::error::Error;
use crate::listen::unexpected;
use crate::mode;
use crate::notify;

/// Tells the master this instance serves: it becomes the app's main
/// instance and the master asks older instances to stop.
///
/// Call it once every listener is open and the service can take traffic,
/// and after [`stop_signal`](crate::stop_signal) (so the stop signal never
/// finds the process without a handler). Until then a reload keeps the old
/// instance serving; an instance that never calls it is killed after the
/// app's ready timeout.
///
/// In simulate mode it sends `READY=1` to `NOTIFY_SOCKET` when that is set
/// (so the service is a `Type=notify` unit under systemd alone; see the
/// crate docs, "Running without a master"), and otherwise does nothing.
///
/// # Errors
///
/// When managed: a missing or untrusted master, a broken connection, or the
/// master's refusal. In simulate mode: a malformed `NOTIFY_SOCKET`
/// ([`Error::BadNotifySocket`]) or a failed send ([`Error::Notify`]).
pub fn ready() -> io::Result<()> {
    match mode::managed()? {
        Some(m) => done(m, InstanceRequest::Ready, "mark the instance ready"),
        None => Ok(notify::ready()?),
    }
}

/// Records what this instance reports about itself (tasks in flight,
/// version, commit, free text), shown by `ally-ctl list`. Fields left
/// `None` are shown as unknown.
///
/// In simulate mode it sends `STATUS=` to `NOTIFY_SOCKET` when that is set,
/// with the fields that are set on one line: text, `tasks N`, `version V`,
/// `commit C`, joined by `, ` (`warming up, tasks 12, version 1.4.2`;
/// control characters become spaces, each text is cut to 1024 bytes), which
/// `systemctl status` shows; otherwise it does nothing.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// ally::report(ally::Report {
///     tasks: Some(12),
///     version: Some(env!("CARGO_PKG_VERSION").into()),
///     ..Default::default()
/// })?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// As [`ready`].
pub fn report(report: Report) -> io::Result<()> {
    match mode::managed()? {
        Some(m) => done(m, InstanceRequest::Report(report), "record the report"),
        None => Ok(notify::status(&report)?),
    }
}

/// Asks the master to reload this instance's app: it starts a new instance
/// from the binary on disk and, once that one is ready, sends this one the
/// stop signal. Returns the new instance's id as soon as it is started
/// (if a reload is already running, the master starts this one when that
/// one ends, so the call may wait up to the app's ready timeout). Other
/// threads' calls to the master go on meanwhile.
///
/// # Errors
///
/// In simulate mode, always (there is no master to start a successor).
/// When managed, the master's refusal or a connection error.
pub fn reload() -> io::Result<u64> {
    let Some(m) = mode::managed()? else {
        return Err(Error::NoMaster {
            operation: "reload",
        }
        .into());
    };
    let what = "reload the app";
    let reply = client::request(m, &InstanceRequest::Reload, what)?;
    match reply.response {
        InstanceResponse::ReloadStarted { instance } => Ok(instance),
        InstanceResponse::Error(failure) => Err(Error::Master {
            request: what.to_owned(),
            failure,
        }
        .into()),
        other => Err(unexpected(what.to_owned(), &other).into()),
    }
}

/// Sends `req` to the master and expects [`InstanceResponse::Done`].
fn done(m: &mode::Managed, req: InstanceRequest, what: &str) -> io::Result<()> {
    let reply = client::request(m, &req, what)?;
    match reply.response {
        InstanceResponse::Done => Ok(()),
        InstanceResponse::Error(failure) => Err(Error::Master {
            request: what.to_owned(),
            failure,
        }
        .into()),
        other => Err(unexpected(what.to_owned(), &other).into()),
    }
}
