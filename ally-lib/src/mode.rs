//! Managed or simulate mode, decided once from the environment.
//!
//! `ALLY_SOCKET` set means managed: the master started this process, and
//! `ALLY_MASTER_PID` must name the parent process. When the environment says
//! managed but does not hold up, every call fails with an error that says
//! so; the library never falls back to binding sockets itself, which would
//! silently give up zero-downtime reloads.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use ally_proto::env;

use crate::error::Error;

/// How this process runs.
#[derive(Debug)]
pub(crate) enum Mode {
    /// No master: everything is done locally.
    Simulate,
    /// Under a master; its details from the environment.
    Managed(Managed),
}

/// The environment a master gives an instance.
#[derive(Debug)]
pub(crate) struct Managed {
    /// `ALLY_SOCKET`.
    pub socket: PathBuf,
    /// `ALLY_MASTER_PID`, which equalled the parent pid when checked.
    pub master_pid: u32,
    /// `ALLY_APP`, if set.
    pub app: Option<String>,
    /// `ALLY_INSTANCE`, raw, if set.
    pub instance: Option<String>,
    /// `ALLY_STOP_SIGNAL`, raw, if set.
    pub stop_signal: Option<String>,
}

/// Why the environment does not hold up; kept so that every call reports
/// the same error.
#[derive(Debug, Clone)]
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
        }
    }
}

/// The mode, detected on first use and then fixed for the process's life.
///
/// # Errors
///
/// [`Error::BadEnv`] or [`Error::NotMasterChild`] when `ALLY_SOCKET` is set
/// but the rest of the environment does not check out.
pub(crate) fn mode() -> Result<&'static Mode, Error> {
    static MODE: OnceLock<Result<Mode, Fault>> = OnceLock::new();
    MODE.get_or_init(|| detect(&|var| std::env::var_os(var), parent_pid()))
        .as_ref()
        .map_err(Fault::to_error)
}

/// The managed environment, or `Ok(None)` in simulate mode.
pub(crate) fn managed() -> Result<Option<&'static Managed>, Error> {
    Ok(match mode()? {
        Mode::Simulate => None,
        Mode::Managed(m) => Some(m),
    })
}

/// This process's parent pid, `None` when it has none (it is PID 1).
pub(crate) fn parent_pid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get().unsigned_abs())
}

fn detect(var: &dyn Fn(&str) -> Option<OsString>, parent: Option<u32>) -> Result<Mode, Fault> {
    let Some(socket) = var(env::SOCKET) else {
        return Ok(Mode::Simulate);
    };
    let text = |name: &'static str| var(name).map(|v| v.to_string_lossy().into_owned());
    if socket.is_empty() {
        return Err(Fault::BadEnv {
            var: env::SOCKET,
            value: Some(String::new()),
            expected: "the path of the master's socket",
        });
    }
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
    Ok(Mode::Managed(Managed {
        socket: PathBuf::from(socket),
        master_pid,
        app: text(env::APP),
        instance: text(env::INSTANCE),
        stop_signal: text(env::STOP_SIGNAL),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_with(vars: &[(&str, &str)], parent: Option<u32>) -> Result<Mode, Fault> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        detect(&lookup, parent)
    }

    #[test]
    fn no_socket_means_simulate() {
        assert!(matches!(detect_with(&[], Some(1)), Ok(Mode::Simulate)));
        // Other ALLY_* variables alone do not make a process managed.
        assert!(matches!(
            detect_with(&[(env::MASTER_PID, "5")], Some(1)),
            Ok(Mode::Simulate)
        ));
    }

    #[test]
    fn managed_when_parent_is_master() {
        let vars = [
            (env::SOCKET, "/run/ally/x.sock"),
            (env::MASTER_PID, "42"),
            (env::APP, "web"),
            (env::INSTANCE, "3"),
        ];
        let Ok(Mode::Managed(m)) = detect_with(&vars, Some(42)) else {
            panic!("expected managed mode");
        };
        assert_eq!(m.master_pid, 42);
        assert_eq!(m.app.as_deref(), Some("web"));
        assert_eq!(m.instance.as_deref(), Some("3"));
        assert_eq!(m.stop_signal, None);
    }

    #[test]
    fn never_falls_back_when_env_says_managed() {
        let vars = [(env::SOCKET, "/s"), (env::MASTER_PID, "42")];
        assert!(matches!(
            detect_with(&vars, Some(7)),
            Err(Fault::NotMasterChild {
                parent: Some(7),
                master: 42
            })
        ));
        assert!(matches!(
            detect_with(&[(env::SOCKET, "/s")], Some(7)),
            Err(Fault::BadEnv { value: None, .. })
        ));
        assert!(matches!(
            detect_with(&[(env::SOCKET, "/s"), (env::MASTER_PID, "x")], Some(7)),
            Err(Fault::BadEnv { .. })
        ));
        assert!(matches!(
            detect_with(&[(env::SOCKET, ""), (env::MASTER_PID, "7")], Some(7)),
            Err(Fault::BadEnv { .. })
        ));
    }
}
