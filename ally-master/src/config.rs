//! The master's config file: TOML declaring the apps to run, optionally
//! spread over several files with `include`.
//!
//! ```toml
//! include = ["apps.d/*.toml"]           # optional: more [[app]] tables
//!
//! [master]                              # optional
//! socket = "/run/ally/custom.sock"      # optional
//! log_dir = "/var/log/ally"             # optional
//! frame_timeout = "10s"                 # optional, default 10s
//!
//! [[app]]
//! name = "web"
//! command = ["./target/release/examples/demo", "--addr", "127.0.0.1:8080"]
//! cwd = "."                             # optional
//! env = { RUST_LOG = "info" }           # optional
//! inherit_env = false                   # optional, default false
//! user = "www-data"                     # optional, name or uid
//! group = "www-data"                    # optional, name or gid
//! log = "log/web.log"                   # optional, or "inherit"
//! autostart = true                      # optional, default true
//! ready_timeout = "10s"                 # optional, default 30s
//! stop_timeout = "30s"                  # optional, default 30s
//! request_timeout = "30s"               # optional, default 30s
//! stop_signal = "SIGTERM"               # optional, default SIGTERM
//! max_draining = 4                      # optional, default 4
//! privileged_ports = [80, 443]          # optional: ports below 1024 for a non-root user
//!
//! [app.restart]                         # optional, for the app above
//! enabled = true                        # default true
//! min_delay = "500ms"                   # default 500ms
//! max_delay = "30s"                     # default 30s
//! factor = 2                            # default 2
//! stable_after = "60s"                  # default 60s
//! max_failures = 10                     # default 10; 0: never give up
//! ```
//!
//! Every key is documented on the field it fills: [`MasterSettings`] for
//! `[master]`, [`AppConfig`] for each `[[app]]`, [`RestartPolicy`] for
//! `[app.restart]` (which may also be written inline:
//! `restart = { max_failures = 0 }`). Unknown keys are errors, and every
//! error names the file, line and column of what is wrong.
//!
//! # Including files
//!
//! The top-level `include` key of the main file lists more files, each
//! holding only `[[app]]` tables (a `[master]` table or an `include` key in
//! an included file is an error):
//!
//! - Each entry is a path relative to the main file's directory (or
//!   absolute). Its last component may hold the wildcards `*` (any run of
//!   characters) and `?` (one character); other components may not.
//! - A pattern's matches are read in name order; it may match nothing (a
//!   missing directory matches nothing too). A name starting with `.`
//!   matches only a pattern starting with `.`, and only files match.
//! - A path without wildcards must name an existing file.
//! - A file named twice, or the main file itself, is read once.
//! - Relative paths inside an included file (`cwd`, `log`) are resolved
//!   against that file's directory, and `cwd` defaults to it.
//! - Apps come in order: the main file's, then each included file's. All
//!   share one namespace: a name declared twice, in any files, is an error
//!   that points at both.
//! - The config as a whole must declare at least one app.
//!
//! [`load`] reads the main file and the files it includes; [`parse`]
//! parses the text of a single file and touches no file, so it refuses a
//! non-empty `include`. Neither checks that paths, users or groups exist:
//! the master does when it starts an app.

mod file;
mod handover;
mod include;
mod interop;
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

use file::{Names, parse_file};
use raw::APP_EXAMPLE;
use value::STOP_SIGNALS;

/// Default for `ready_timeout` and `stop_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for `stop_signal`.
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::TERM;

/// Default for `max_draining`.
pub const DEFAULT_MAX_DRAINING: usize = 4;

/// A parsed, checked config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The main config file, absolute. Relative paths inside it are
    /// resolved against its directory; those inside an included file,
    /// against that file's.
    pub path: PathBuf,
    /// The `[master]` table.
    pub master: MasterSettings,
    /// The `[[app]]` tables: the main file's in order, then each included
    /// file's; at least one in all.
    pub apps: Vec<AppConfig>,
}

/// The optional `[master]` table: settings of the master itself. Only the
/// main file may have one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterSettings {
    /// `socket` — path of the control socket, overriding the default
    /// `<runtime dir>/<config file stem>.sock`. A relative path is resolved
    /// against the config file's directory. At most 107 bytes once resolved
    /// (the limit of a unix socket address).
    pub socket: Option<PathBuf>,
    /// `log_dir` — directory of the apps' default log files
    /// (`<log_dir>/<name>.log`). Default: `/var/log/ally` for root, else
    /// `$XDG_STATE_HOME/ally` (or `~/.local/state/ally`). A relative path is
    /// resolved against the config file's directory. Not created or checked
    /// while parsing.
    pub log_dir: Option<PathBuf>,
    /// `group` — a group (name or gid) whose members may control the master
    /// too: the control socket becomes mode 0660 owned by that group, and a
    /// client whose primary or supplementary groups include it passes the
    /// credential check. Default: none (mode 0600; root and the master's
    /// own user only).
    pub group: Option<String>,
    /// `frame_timeout` — how long a client may take to finish sending a
    /// frame (a request) once it has started; past it the connection is
    /// closed. Default: [`FRAME_TIMEOUT`](crate::limits::FRAME_TIMEOUT).
    pub frame_timeout: Option<Duration>,
}

/// One `[[app]]` table: a service the master runs and reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// `name` (required) — what `ally-ctl` calls the app: 1 to 64 ASCII
    /// letters, digits, `_`, `.` or `-` (not `.` or `..`), unique over the
    /// main file and every included one.
    pub name: String,
    /// `family` — a group name for acting on several apps at once
    /// (`ally-ctl reload --family payments`), checked like `name`. One
    /// name per app, not a set of tags: every app is in at most one
    /// family, so `--family F` is a partition of the host that `list`
    /// can show in one column, and a bulk command never reaches an app
    /// twice. Takes effect at `reread` at once (it is only a label).
    /// Default: none.
    pub family: Option<String>,
    /// `command` (required) — the program and its arguments, as an array of
    /// strings: `["./server", "--port", "8080"]`. No shell is involved. The
    /// program is looked up in `PATH` unless it contains a `/`; a relative
    /// path is taken from `cwd`. It is read from disk at every start, which
    /// is what makes a reload an upgrade.
    pub command: Vec<String>,
    /// `cwd` — the working directory of each instance. Default: the
    /// directory of the file declaring the app; a relative path is resolved
    /// against it.
    pub cwd: PathBuf,
    /// `env` — extra environment variables for each instance, as a table of
    /// strings: `env = { RUST_LOG = "info" }`. Instances otherwise inherit
    /// the master's environment. The variables the master sets itself
    /// (`ALLY_CHANNEL_FD`, `ALLY_APP`, ...) cannot be overridden.
    pub env: BTreeMap<String, String>,
    /// `ready_timeout` — how long a new instance has to report ready before
    /// it is killed and its reload fails. A whole number with a unit: `ms`,
    /// `s`, `m` or `h` (`"500ms"`, `"10s"`, `"2m"`, `"1h"`); more than zero,
    /// at most 24h. Default `"30s"`.
    pub ready_timeout: Duration,
    /// `stop_timeout` — how long an instance asked to stop may drain before
    /// it gets SIGKILL. Same format as `ready_timeout`. Default `"30s"`.
    pub stop_timeout: Duration,
    /// `request_timeout` — how long the library in an instance waits for
    /// the master to answer one request before that call fails (it only
    /// matters when the master is stopped or overloaded). Lock waits are
    /// not bounded by it: the master ends them at their own timeout. Same
    /// format as `ready_timeout`. Default `"30s"`.
    pub request_timeout: Duration,
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
    /// `autostart` — whether the master starts the app when it starts (or
    /// when `reread` adds it): `true` or `false`. Default `true`; `false`
    /// leaves it stopped until `ally-ctl start`.
    pub autostart: bool,
    /// `[app.restart]` — what happens when the main instance dies
    /// unexpectedly; the keys are [`RestartPolicy`]'s. The table follows
    /// its `[[app]]`, or is written inline: `restart = { enabled = false }`.
    /// Default: every key's default.
    pub restart: RestartPolicy,
    /// `max_draining` — how many older instances may drain at once. A
    /// reload that would make more SIGKILLs the oldest draining one. A
    /// whole number, at least 1. Default 4 ([`DEFAULT_MAX_DRAINING`]).
    pub max_draining: usize,
    /// `inherit_env` — whether instances get the master's whole
    /// environment: `true` or `false`. Default `false`: only [`CLEAN_ENV`]
    /// variables pass through, plus `env` and the `ALLY_*` variables.
    pub inherit_env: bool,
    /// `user` — run instances as this user: a name (`"www-data"`) or a
    /// numeric uid, as a string or an integer (`"33"`, `33`), kept as a
    /// string. Not empty, without `:` or NUL; a uid is at most 4294967294.
    /// Whether it exists is checked when an instance starts; the master
    /// must be root to use another user than its own. Default: the
    /// master's.
    pub user: Option<String>,
    /// `group` — run instances with this primary group: a name or a
    /// numeric gid, written and checked like `user`. Default: the user's
    /// primary group.
    pub group: Option<String>,
    /// `listen` — sockets the master binds and hands to every instance as
    /// systemd's socket activation does: at fds 3, 4, ... with
    /// `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`, for programs that
    /// do not link ally. Entries are `[NAME=]SCHEME://ADDRESS[?mode=OCTAL]`
    /// with schemes `tcp`, `udp`, `unix` (an absolute path or `@name`) and
    /// `unixgram`; the name (default: the scheme) goes to
    /// `LISTEN_FDNAMES`. A reload hands the new instance the same sockets.
    pub listen: Vec<ListenDecl>,
    /// `ready` — how the master knows a new instance serves: `"lib"` or
    /// `"notify"` (a message: the library's `ready()`, or `READY=1` on the
    /// instance's `NOTIFY_SOCKET`; either is accepted in both modes, the
    /// name says what the program does), `"delay:2s"` (ready if still
    /// running after that long), `"immediate"` (ready at once). Default
    /// `"lib"`.
    pub ready: ReadyMode,
    /// `privileged_ports` — ports below the kernel's
    /// `net.ipv4.ip_unprivileged_port_start` (1024 by default) that the
    /// app's instances may ask the master for although they do not run as
    /// root: an array of whole numbers from 1 to 65535, `[80, 443]`. Without
    /// it such a request is refused (a root app needs no grant; sockets of
    /// `listen` are granted by being declared). Default: none.
    pub privileged_ports: Vec<u16>,
    /// `log` — where instances' stdout and stderr go: `"inherit"` (the
    /// master's stderr, each line prefixed `[app#id]`) or a file path,
    /// resolved against the directory of the file declaring the app (write
    /// `"./inherit"` for a file of that name). The path must name a file:
    /// not empty, and not ending in `/`, `.` or `..`. Default:
    /// `<log_dir>/<name>.log` ([`LogTarget::Default`]).
    pub log: LogTarget,
}

/// Variables passed from the master's environment to instances when
/// `inherit_env = false`, if set. `LC_*` matches every locale variable.
pub const CLEAN_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "LC_*",
];

/// `[app.restart]` — how an app's main instance is restarted after a
/// crash: after `min_delay`, multiplied by `factor` at each consecutive
/// crash up to `max_delay`; a main instance that ran `stable_after` resets
/// the count; after `max_failures` consecutive crashes the app is `failed`
/// and left alone until `ally-ctl start` (0: never give up).
///
/// Durations are written like `ready_timeout`: a whole number with a unit,
/// `ms`, `s`, `m` or `h`, more than zero and at most 24h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// `enabled` — restart at all: `true` or `false`. Default `true`.
    pub enabled: bool,
    /// `min_delay` — the delay before the first restart. At most
    /// `max_delay`. Default `"500ms"`.
    pub min_delay: Duration,
    /// `max_delay` — the longest delay between restarts. Default `"30s"`.
    pub max_delay: Duration,
    /// `factor` — what each consecutive crash multiplies the delay by: a
    /// whole number from 1 (a constant delay) to 100. Default 2.
    pub factor: u32,
    /// `stable_after` — how long a main instance must run for its crash to
    /// count as the first again. Default `"60s"`.
    pub stable_after: Duration,
    /// `max_failures` — how many consecutive crashes mark the app
    /// `failed`: a whole number, 0 for never. Default 10.
    pub max_failures: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            enabled: true,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            factor: 2,
            stable_after: Duration::from_secs(60),
            max_failures: 10,
        }
    }
}

/// One `listen` socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenDecl {
    /// Its entry in `LISTEN_FDNAMES`.
    pub name: String,
    /// What to bind.
    pub spec: ally_proto::ListenSpec,
}

/// How readiness is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyMode {
    /// The library's `ready()` (or `READY=1`).
    Lib,
    /// `READY=1` on `NOTIFY_SOCKET` (or the library's `ready()`).
    Notify,
    /// Still running after this long.
    Delay(Duration),
    /// At once.
    Immediate,
}

/// Where an app's output goes: its `log` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// No `log` key: `<log_dir>/<app>.log`.
    Default,
    /// `log = "inherit"`: the master's stderr, lines prefixed `[app#id]`.
    Inherit,
    /// `log = "path"`: this file (absolute once parsed).
    File(PathBuf),
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

/// Reads and parses the config file at `path`, and the files its
/// `include` names.
///
/// # Errors
///
/// [`ConfigError::Read`] if a file cannot be read (except an included file
/// named without wildcards that does not exist: that is
/// [`ConfigError::Invalid`] at its `include` entry), otherwise as
/// [`parse`], naming the file where the problem is. A file that is not
/// UTF-8 is [`ConfigError::Invalid`] at the first bad byte.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_text(path)?;
    let mut names = Names::new();
    let main = parse_file(&text, path, None, &mut names)?;
    let dir = main.abs.parent().unwrap_or(Path::new("/")).to_owned();
    let mut read = HashSet::from([main.abs.clone()]);
    let mut apps = main.apps;
    for (pattern, at) in &main.includes {
        let pattern = pattern.0.as_str();
        let wildcard = include::has_wildcard(pattern);
        let files = if wildcard {
            include::expand(&dir, pattern).map_err(|e| {
                let message = format!("cannot list the files matching include {pattern:?}: {e}");
                invalid(path, &text, *at, message)
            })?
        } else {
            vec![resolve(&dir, Path::new(pattern))]
        };
        for file in files {
            if !read.insert(file.clone()) {
                continue;
            }
            let included = match read_text(&file) {
                Ok(included) => included,
                Err(ConfigError::Read { source, .. })
                    if !wildcard && source.kind() == io::ErrorKind::NotFound =>
                {
                    let message = format!(
                        "included file {} does not exist (only a pattern with * or ? may \
                         match nothing)",
                        file.display()
                    );
                    return Err(invalid(path, &text, *at, message));
                }
                Err(e) => return Err(e),
            };
            apps.extend(parse_file(&included, &file, Some(path), &mut names)?.apps);
        }
    }
    if apps.is_empty() {
        let message = if main.includes.is_empty() {
            format!("no app declared: {APP_EXAMPLE}")
        } else {
            format!("no app declared, here or in the included files: {APP_EXAMPLE}")
        };
        return Err(invalid(path, &text, 0, message));
    }
    Ok(Config {
        path: main.abs,
        master: main.master,
        apps,
    })
}

/// The text of the file at `path`.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let valid_up_to = e.utf8_error().valid_up_to();
        let valid = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default();
        invalid(
            path,
            valid,
            valid.len(),
            "the file is not valid UTF-8".into(),
        )
    })
}

/// Parses config `text` read from `path`, a single file.
///
/// `path` names the file in messages and anchors relative paths: `cwd`,
/// `log`, `socket` and `log_dir` are resolved against its directory.
/// Nothing is read from disk, so a non-empty `include` is refused: use
/// [`load`].
///
/// # Errors
///
/// [`ConfigError::Invalid`] with the line and column of the first problem;
/// [`ConfigError::Resolve`] if `path` is relative and the current directory
/// is unavailable.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the master loads its config with `load`")
)]
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = parse_file(text, path, None, &mut Names::new())?;
    if let Some((_, at)) = file.includes.first() {
        let message = "include needs the files it names: load the config from its file \
                       rather than parsing its text"
            .into();
        return Err(invalid(path, text, *at, message));
    }
    if file.apps.is_empty() {
        return Err(invalid(
            path,
            text,
            0,
            format!("no app declared: {APP_EXAMPLE}"),
        ));
    }
    Ok(Config {
        path: file.abs,
        master: file.master,
        apps: file.apps,
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
