//! Managed or simulate mode, decided once from the environment.
//!
//! `ALLY_CHANNEL_FD` set means managed: the master started this process and
//! left it one end of a socket pair at that descriptor, and
//! `ALLY_MASTER_PID` must name the parent process when the library first
//! looks. When the environment says managed but does not hold up, every
//! call fails with an error that says so; the library never falls back to
//! binding sockets itself, which would silently give up zero-downtime
//! reloads.

use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;

use ally_proto::env;

use crate::channel::Channel;
use crate::error::Error;

/// The variable an older master set instead of [`env::CHANNEL_FD`].
const OLD_SOCKET_VAR: &str = "ALLY_SOCKET";

/// How long the master may take to answer one request when the
/// environment does not say (`ALLY_REQUEST_TIMEOUT_MS`).
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How this process runs.
#[derive(Debug)]
pub(crate) enum Mode {
    /// No master: everything is done locally.
    Simulate,
    /// Under a master; its details from the environment. Boxed: the mode
    /// is made once, and simulate mode should not pay for the channel.
    Managed(Box<Managed>),
}

/// The environment a master gives an instance, and the channel it left.
#[derive(Debug)]
pub(crate) struct Managed {
    /// The instance's own channel to the master.
    pub channel: Channel,
    /// `ALLY_APP`, if set.
    pub app: Option<String>,
    /// `ALLY_INSTANCE`, raw, if set.
    pub instance: Option<String>,
    /// `ALLY_STOP_SIGNAL`, raw, if set.
    pub stop_signal: Option<String>,
    /// How long one request may take (`ALLY_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
}

/// What the environment says, before the channel is adopted.
#[derive(Debug, PartialEq, Eq)]
struct Env {
    channel_fd: i32,
    /// `ALLY_OUTPUT_FDS`: read ends of this process's stdout and stderr.
    output_fds: Option<(i32, i32)>,
    master_pid: u32,
    app: Option<String>,
    instance: Option<String>,
    stop_signal: Option<String>,
    request_timeout: Duration,
}

/// Why the environment does not hold up; kept so that every call reports
/// the same error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    BadEnv {
        var: &'static str,
        value: Option<String>,
        expected: &'static str,
    },
    NotMasterChild {
        parent: Option<u32>,
        master: u32,
    },
    Channel {
        fd: i32,
        reason: String,
    },
    MasterTooOld,
}

impl Fault {
    fn to_error(&self) -> Error {
        match self.clone() {
            Fault::BadEnv {
                var,
                value,
                expected,
            } => Error::BadEnv {
                var,
                value,
                expected,
            },
            Fault::NotMasterChild { parent, master } => Error::NotMasterChild { parent, master },
            Fault::Channel { fd, reason } => Error::Channel { fd, reason },
            Fault::MasterTooOld => Error::MasterTooOld,
        }
    }
}

/// The mode, detected on first use and then fixed for the process's life.
///
/// # Errors
///
/// [`Error::BadEnv`], [`Error::NotMasterChild`], [`Error::Channel`] or
/// [`Error::MasterTooOld`] when `ALLY_CHANNEL_FD` is set but the rest does
/// not check out.
pub(crate) fn mode() -> Result<&'static Mode, Error> {
    static MODE: OnceLock<Result<Mode, Fault>> = OnceLock::new();
    MODE.get_or_init(|| {
        let Some(env) = detect(&|var| std::env::var_os(var), parent_pid())? else {
            return Ok(Mode::Simulate);
        };
        let stop =
            crate::stop::parse_signal(env.stop_signal.as_deref()).map_err(|_| Fault::BadEnv {
                var: env::STOP_SIGNAL,
                value: env.stop_signal.clone(),
                expected: "a signal name such as SIGTERM",
            })?;
        let channel = Channel::adopt(
            env.channel_fd,
            env.output_fds,
            env.master_pid,
            stop,
            env.request_timeout,
        )
        .map_err(|reason| Fault::Channel {
            fd: env.channel_fd,
            reason,
        })?;
        Ok(Mode::Managed(Box::new(Managed {
            channel,
            app: env.app,
            instance: env.instance,
            stop_signal: env.stop_signal,
            request_timeout: env.request_timeout,
        })))
    })
    .as_ref()
    .map_err(Fault::to_error)
}

/// The managed environment, or `Ok(None)` in simulate mode.
///
/// # Errors
///
/// As [`mode`]; and, managed, [`Error::Forked`] in a fork of the instance
/// and [`Error::MasterGone`] once the master has exited.
pub(crate) fn managed() -> Result<Option<&'static Managed>, Error> {
    match mode()? {
        Mode::Simulate => Ok(None),
        Mode::Managed(m) => {
            m.channel.check()?;
            Ok(Some(m))
        }
    }
}

/// This process's parent pid, `None` when it has none (it is PID 1).
pub(crate) fn parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get().unsigned_abs())
}

fn detect(
    var: &dyn Fn(&str) -> Option<OsString>,
    parent: Option<u32>,
) -> Result<Option<Env>, Fault> {
    let text = |name: &'static str| var(name).map(|v| v.to_string_lossy().into_owned());
    let Some(raw_fd) = text(env::CHANNEL_FD) else {
        if var(OLD_SOCKET_VAR).is_some() && var(env::MASTER_PID).is_some() {
            return Err(Fault::MasterTooOld);
        }
        return Ok(None);
    };
    let channel_fd = raw_fd
        .parse::<i32>()
        .ok()
        .filter(|&fd| fd > 2)
        .ok_or_else(|| Fault::BadEnv {
            var: env::CHANNEL_FD,
            value: Some(raw_fd.clone()),
            expected: "a descriptor number above 2",
        })?;
    let output_fds = match text(env::OUTPUT_FDS) {
        None => None,
        Some(raw) => Some(
            raw.split_once(',')
                .and_then(|(a, b)| Some((a.parse::<i32>().ok()?, b.parse::<i32>().ok()?)))
                .filter(|&(a, b)| a > 2 && b > 2)
                .ok_or(Fault::BadEnv {
                    var: env::OUTPUT_FDS,
                    value: Some(raw.clone()),
                    expected: "two descriptor numbers above 2, as OUT,ERR",
                })?,
        ),
    };
    let raw_pid = text(env::MASTER_PID);
    let master_pid = raw_pid
        .as_deref()
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| Fault::BadEnv {
            var: env::MASTER_PID,
            value: raw_pid.clone(),
            expected: "the master's pid",
        })?;
    if parent != Some(master_pid) {
        return Err(Fault::NotMasterChild {
            parent,
            master: master_pid,
        });
    }
    let request_timeout = match text(env::REQUEST_TIMEOUT_MS) {
        None => DEFAULT_REQUEST_TIMEOUT,
        Some(ms) => ms
            .parse::<u64>()
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
            .ok_or(Fault::BadEnv {
                var: env::REQUEST_TIMEOUT_MS,
                value: Some(ms),
                expected: "a number of milliseconds above 0",
            })?,
    };
    Ok(Some(Env {
        channel_fd,
        output_fds,
        master_pid,
        app: text(env::APP),
        instance: text(env::INSTANCE),
        stop_signal: text(env::STOP_SIGNAL),
        request_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_with(vars: &[(&str, &str)], parent: Option<u32>) -> Result<Option<Env>, Fault> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        detect(&lookup, parent)
    }

    #[test]
    fn no_channel_means_simulate() {
        assert_eq!(detect_with(&[], Some(1)), Ok(None));
        // Other ALLY_* variables alone do not make a process managed.
        assert_eq!(detect_with(&[(env::MASTER_PID, "5")], Some(1)), Ok(None));
    }

    #[test]
    fn managed_when_parent_is_master() {
        let vars = [
            (env::CHANNEL_FD, "4"),
            (env::MASTER_PID, "42"),
            (env::APP, "web"),
            (env::INSTANCE, "3"),
            (env::REQUEST_TIMEOUT_MS, "1500"),
        ];
        let m = detect_with(&vars, Some(42)).unwrap().unwrap();
        assert_eq!((m.channel_fd, m.master_pid), (4, 42));
        assert_eq!(m.app.as_deref(), Some("web"));
        assert_eq!(m.instance.as_deref(), Some("3"));
        assert_eq!(m.stop_signal, None);
        assert_eq!(m.request_timeout, Duration::from_millis(1500));
        let vars = [(env::CHANNEL_FD, "4"), (env::MASTER_PID, "42")];
        let m = detect_with(&vars, Some(42)).unwrap().unwrap();
        assert_eq!(m.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn never_falls_back_when_env_says_managed() {
        let vars = [(env::CHANNEL_FD, "4"), (env::MASTER_PID, "42")];
        assert_eq!(
            detect_with(&vars, Some(7)),
            Err(Fault::NotMasterChild {
                parent: Some(7),
                master: 42
            })
        );
        assert!(matches!(
            detect_with(&[(env::CHANNEL_FD, "4")], Some(7)),
            Err(Fault::BadEnv { value: None, .. })
        ));
        for fd in ["x", "", "2", "-1"] {
            assert!(matches!(
                detect_with(&[(env::CHANNEL_FD, fd), (env::MASTER_PID, "7")], Some(7)),
                Err(Fault::BadEnv { .. })
            ));
        }
        let vars = [
            (env::CHANNEL_FD, "4"),
            (env::MASTER_PID, "7"),
            (env::REQUEST_TIMEOUT_MS, "0"),
        ];
        assert!(matches!(
            detect_with(&vars, Some(7)),
            Err(Fault::BadEnv { .. })
        ));
    }

    #[test]
    fn an_older_masters_environment_is_named() {
        let vars = [("ALLY_SOCKET", "/run/ally/x.sock"), (env::MASTER_PID, "42")];
        assert_eq!(detect_with(&vars, Some(42)), Err(Fault::MasterTooOld));
    }
}
