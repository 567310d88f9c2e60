//! The master's config file: one TOML file declaring the apps to run.
//!
//! ```toml
//! [master]                              # optional
//! socket = "/run/ally/custom.sock"      # optional
//!
//! [[app]]
//! name = "web"
//! command = ["./target/release/examples/demo", "--addr", "127.0.0.1:8080"]
//! cwd = "."                             # optional
//! env = { RUST_LOG = "info" }           # optional
//! ready_timeout = "10s"                 # optional, default 30s
//! stop_timeout = "30s"                  # optional, default 30s
//! stop_signal = "SIGTERM"               # optional, default SIGTERM
//! ```
//!
//! Every key is documented on the field it fills: [`MasterSettings`] for
//! `[master]`, [`AppConfig`] for each `[[app]]`. Unknown keys are errors,
//! and every error names the file, line and column of what is wrong.
//!
//! [`parse`] has no side effects beyond reading the current directory to
//! make a relative config path absolute; [`load`] reads the file first.

mod raw;
#[cfg(test)]
mod tests;
mod value;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use ally_proto::state::Limits;
use rustix::process::Signal;

use raw::{APP_EXAMPLE, RawConfig};
use value::STOP_SIGNALS;

/// Default for `ready_timeout` and `stop_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for `stop_signal`.
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::TERM;

/// A parsed, checked config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file, absolute. Relative paths inside it are resolved
    /// against its directory.
    pub path: PathBuf,
    /// The `[master]` table.
    pub master: MasterSettings,
    /// The `[[app]]` tables, in file order; at least one.
    pub apps: Vec<AppConfig>,
}

/// The optional `[master]` table: settings of the master itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterSettings {
    /// `socket` — path of the control socket, overriding the default
    /// `<runtime dir>/<config file stem>.sock`. A relative path is resolved
    /// against the config file's directory. At most 107 bytes once resolved
    /// (the limit of a unix socket address).
    pub socket: Option<PathBuf>,
}

/// One `[[app]]` table: a service the master runs and reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// `name` (required) — what `ally-ctl` calls the app: 1 to 64 ASCII
    /// letters, digits, `_`, `.` or `-` (not `.` or `..`), unique in the
    /// file.
    pub name: String,
    /// `command` (required) — the program and its arguments, as an array of
    /// strings: `["./server", "--port", "8080"]`. No shell is involved. The
    /// program is looked up in `PATH` unless it contains a `/`; a relative
    /// path is taken from `cwd`. It is read from disk at every start, which
    /// is what makes a reload an upgrade.
    pub command: Vec<String>,
    /// `cwd` — the working directory of each instance. Default: the config
    /// file's directory; a relative path is resolved against it.
    pub cwd: PathBuf,
    /// `env` — extra environment variables for each instance, as a table of
    /// strings: `env = { RUST_LOG = "info" }`. Instances otherwise inherit
    /// the master's environment. The variables the master sets itself
    /// (`ALLY_SOCKET`, `ALLY_APP`, ...) cannot be overridden.
    pub env: BTreeMap<String, String>,
    /// `ready_timeout` — how long a new instance has to report ready before
    /// it is killed and its reload fails. A whole number with a unit: `ms`,
    /// `s`, `m` or `h` (`"500ms"`, `"10s"`, `"2m"`, `"1h"`); more than zero,
    /// at most 24h. Default `"30s"`.
    pub ready_timeout: Duration,
    /// `stop_timeout` — how long an instance asked to stop may drain before
    /// it gets SIGKILL. Same format as `ready_timeout`. Default `"30s"`.
    pub stop_timeout: Duration,
    /// `stop_signal` — the signal that asks an instance to stop accepting and
    /// drain. One of `HUP`, `INT`, `QUIT`, `USR1`, `USR2`, `TERM`, `WINCH`,
    /// `ALRM`, with or without `SIG`, in any case. Default `"SIGTERM"`.
    pub stop_signal: Signal,
    /// Limits on the app's shared state, from `max_cache_entries` (default
    /// 100000 entries over all namespaces), `max_cache_bytes` (default
    /// 67108864: 64 MiB of namespaces, keys and values), `max_atomics`
    /// (default 10000) and `max_locks` (default 10000 lock names in use).
    /// Past a limit a write fails with a clear error; nothing is evicted.
    pub limits: Limits,
}

/// Why a config could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file, as given.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The current directory, needed to make a relative path absolute, is
    /// unavailable.
    Resolve {
        /// The file, as given.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The text is not a valid config: bad TOML, an unknown key, a missing
    /// or malformed value.
    Invalid {
        /// The file, as given.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong and, where it helps, what to write instead.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Resolve { path, source } => write!(
                f,
                "cannot resolve {} against the current directory: {source}",
                path.display()
            ),
            ConfigError::Invalid {
                path,
                line,
                column,
                message,
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } | ConfigError::Resolve { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
        }
    }
}

/// Reads and parses the config file at `path`.
///
/// # Errors
///
/// [`ConfigError::Read`] if the file cannot be read, otherwise as [`parse`];
/// a file that is not UTF-8 is [`ConfigError::Invalid`] at the first bad
/// byte.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(text, path),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            Err(invalid(
                path,
                valid,
                valid.len(),
                "the file is not valid UTF-8".into(),
            ))
        }
    }
}

/// Parses config `text` read from `path`.
///
/// `path` names the file in messages and anchors relative paths: `cwd` and
/// `socket` are resolved against its directory. Nothing is checked on disk.
///
/// # Errors
///
/// [`ConfigError::Invalid`] with the line and column of the first problem;
/// [`ConfigError::Resolve`] if `path` is relative and the current directory
/// is unavailable.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        invalid(path, text, at, e.message().trim().replace('\n', "; "))
    })?;
    let Some(raw_apps) = raw.app else {
        return Err(invalid(
            path,
            text,
            0,
            format!("no app declared: {APP_EXAMPLE}"),
        ));
    };
    let abs = std::path::absolute(path).map_err(|source| ConfigError::Resolve {
        path: path.to_owned(),
        source,
    })?;
    let dir = abs.parent().unwrap_or(Path::new("/")).to_owned();

    let socket = match raw.master.socket {
        None => None,
        Some(spanned) => {
            let socket = resolve(&dir, &spanned.get_ref().0);
            let len = socket.as_os_str().len();
            if len > ally_proto::MAX_UNIX_PATH {
                let message = format!(
                    "socket path {} is {len} bytes long; a unix socket path can have at most {}",
                    socket.display(),
                    ally_proto::MAX_UNIX_PATH
                );
                return Err(invalid(path, text, spanned.span().start, message));
            }
            Some(socket)
        }
    };

    let mut names = HashSet::new();
    let mut apps = Vec::with_capacity(raw_apps.0.len());
    for app in raw_apps.0 {
        let table = app.span();
        let app = app.into_inner();
        let Some(name) = app.name else {
            let message = r#"this [[app]] has no name: add one, e.g. name = "web""#.into();
            return Err(invalid(path, text, table.start, message));
        };
        if !names.insert(name.get_ref().0.clone()) {
            let message = format!(
                "duplicate app name {:?}: app names must be unique",
                name.get_ref().0
            );
            return Err(invalid(path, text, name.span().start, message));
        }
        let Some(command) = app.command else {
            let message = format!(
                "app {:?} has no command: add one, e.g. command = [\"./server\", \"--port\", \"8080\"]",
                name.get_ref().0
            );
            return Err(invalid(path, text, table.start, message));
        };
        apps.push(AppConfig {
            name: name.into_inner().0,
            command: command.0,
            cwd: app
                .cwd
                .map_or_else(|| dir.clone(), |cwd| resolve(&dir, &cwd.0)),
            env: app.env.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
            ready_timeout: app.ready_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            stop_timeout: app.stop_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            stop_signal: app.stop_signal.map_or(DEFAULT_STOP_SIGNAL, |s| s.0),
            limits: {
                let d = Limits::default();
                Limits {
                    max_entries: app.max_cache_entries.map_or(d.max_entries, |n| n.0),
                    max_bytes: app.max_cache_bytes.map_or(d.max_bytes, |n| n.0),
                    max_atomics: app.max_atomics.map_or(d.max_atomics, |n| n.0),
                    max_locks: app.max_locks.map_or(d.max_locks, |n| n.0),
                    ..d
                }
            },
        });
    }

    Ok(Config {
        path: abs,
        master: MasterSettings { socket },
        apps,
    })
}

/// `path` made absolute against `dir`, without `.` components or doubled
/// slashes. `..` is kept: removing it would be wrong across symlinks.
fn resolve(dir: &Path, path: &Path) -> PathBuf {
    dir.join(path)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The name of a stop signal, with `SIG`, as instances see it in
/// `ALLY_STOP_SIGNAL` (`"SIGTERM"`); `None` for a signal a config cannot
/// name.
pub fn signal_name(signal: Signal) -> Option<&'static str> {
    STOP_SIGNALS
        .iter()
        .find(|(_, s)| *s == signal)
        .map(|(name, _)| *name)
}

/// An [`ConfigError::Invalid`] at byte offset `at` of `text`.
fn invalid(path: &Path, text: &str, at: usize, message: String) -> ConfigError {
    let (line, column) = line_column(text, at);
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// The 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
