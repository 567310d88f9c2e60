//! One config file, the main one or an included one, turned into settings
//! and apps. [`super::parse`] and [`super::load`] put the files together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ally_proto::state::Limits;

use super::interop::DEFAULT_READY;
use super::raw::{RawApp, RawConfig, RawRestart};
use super::value::{IncludePattern, LogValue};
use super::{
    AppConfig, ConfigError, DEFAULT_MAX_DRAINING, DEFAULT_STOP_SIGNAL, DEFAULT_TIMEOUT, LogTarget,
    MasterSettings, RestartPolicy, invalid, line_column, resolve,
};

/// Where an app name was first declared, to point at it from a duplicate.
#[derive(Debug)]
pub struct Declared {
    /// The file, as named in messages.
    path: PathBuf,
    /// 1-based line of the name's value.
    line: usize,
    /// 1-based column of the name's value, in characters.
    column: usize,
}

/// The app names seen so far, over every file of a config.
pub type Names = HashMap<String, Declared>;

/// One file, parsed and checked on its own.
#[derive(Debug)]
pub struct ParsedFile {
    /// The file, absolute.
    pub abs: PathBuf,
    /// Its `[master]` table; the default for an included file.
    pub master: MasterSettings,
    /// Its `include` entries, each with the byte offset of its value.
    pub includes: Vec<(IncludePattern, usize)>,
    /// Its `[[app]]` tables, in order; possibly none.
    pub apps: Vec<AppConfig>,
}

/// Parses `text`, read from `path`. `included_by` is `None` for the main
/// file and names the main file for an included one, which may hold only
/// `[[app]]` tables. Every app name is checked against, and added to,
/// `names`.
pub fn parse_file(
    text: &str,
    path: &Path,
    included_by: Option<&Path>,
    names: &mut Names,
) -> Result<ParsedFile, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        invalid(path, text, at, e.message().trim().replace('\n', "; "))
    })?;
    if let Some(main) = included_by {
        if let Some(master) = &raw.master {
            let message = format!(
                "[master] is not allowed in an included file: move it to the main config file {}",
                main.display()
            );
            return Err(invalid(path, text, master.span().start, message));
        }
        if let Some(include) = &raw.include {
            let message = format!(
                "include is not allowed in an included file (includes do not nest): list every \
                 include in the main config file {}",
                main.display()
            );
            return Err(invalid(path, text, include.span().start, message));
        }
    }
    let abs = std::path::absolute(path).map_err(|source| ConfigError::Resolve {
        path: path.to_owned(),
        source,
    })?;
    let dir = abs.parent().unwrap_or(Path::new("/")).to_owned();

    let mut master = MasterSettings::default();
    if let Some(raw_master) = raw.master {
        let raw_master = raw_master.into_inner();
        if let Some(spanned) = raw_master.socket {
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
            master.socket = Some(socket);
        }
        master.log_dir = raw_master.log_dir.map(|d| resolve(&dir, &d.0));
        master.group = raw_master.group.map(|g| g.0);
        master.frame_timeout = raw_master.frame_timeout.map(|t| t.0);
    }

    let includes = raw.include.map_or_else(Vec::new, |list| {
        list.into_inner()
            .into_iter()
            .map(|p| {
                let at = p.span().start;
                (p.into_inner(), at)
            })
            .collect()
    });

    let raw_apps = raw.app.map_or_else(Vec::new, |apps| apps.0);
    let mut apps = Vec::with_capacity(raw_apps.len());
    for app in raw_apps {
        let table = app.span();
        let app = app.into_inner();
        let Some(name) = app.name.as_ref() else {
            let message = r#"this [[app]] has no name: add one, e.g. name = "web""#.into();
            return Err(invalid(path, text, table.start, message));
        };
        let (line, column) = line_column(text, name.span().start);
        let name = name.get_ref().0.clone();
        if let Some(first) = names.get(&name) {
            let message = format!(
                "duplicate app name {name:?}: already declared at {}:{}:{}; app names must \
                 be unique",
                first.path.display(),
                first.line,
                first.column
            );
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            });
        }
        let declared = Declared {
            path: path.to_owned(),
            line,
            column,
        };
        names.insert(name.clone(), declared);
        apps.push(app_config(name, app, &dir, |at, message| {
            invalid(path, text, at.unwrap_or(table.start), message)
        })?);
    }

    Ok(ParsedFile {
        abs,
        master,
        includes,
        apps,
    })
}

/// The app `name` declared by `app`, with relative paths resolved against
/// `dir`. `error` makes an error at a byte offset, or at the table when
/// `None`.
fn app_config(
    name: String,
    app: RawApp,
    dir: &Path,
    error: impl Fn(Option<usize>, String) -> ConfigError,
) -> Result<AppConfig, ConfigError> {
    let Some(command) = app.command else {
        let message = format!(
            "app {name:?} has no command: add one, e.g. command = [\"./server\", \"--port\", \"8080\"]"
        );
        return Err(error(None, message));
    };
    let limits = {
        let d = Limits::default();
        Limits {
            max_entries: app.max_cache_entries.map_or(d.max_entries, |n| n.0),
            max_bytes: app.max_cache_bytes.map_or(d.max_bytes, |n| n.0),
            max_atomics: app.max_atomics.map_or(d.max_atomics, |n| n.0),
            max_locks: app.max_locks.map_or(d.max_locks, |n| n.0),
            ..d
        }
    };
    Ok(AppConfig {
        name,
        family: app.family.map(|f| f.0),
        command: command.0,
        cwd: app
            .cwd
            .map_or_else(|| dir.to_owned(), |cwd| resolve(dir, &cwd.0)),
        env: app.env.into_iter().map(|(k, v)| (k.0, v.0)).collect(),
        ready_timeout: app.ready_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        stop_timeout: app.stop_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        request_timeout: app.request_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        stop_signal: app.stop_signal.map_or(DEFAULT_STOP_SIGNAL, |s| s.0),
        limits,
        autostart: app.autostart.unwrap_or(true),
        restart: match app.restart {
            None => RestartPolicy::default(),
            Some(raw) => restart_policy(raw, &error)?,
        },
        max_draining: app.max_draining.map_or(DEFAULT_MAX_DRAINING, |n| n.0),
        inherit_env: app.inherit_env.unwrap_or(false),
        user: app.user.map(|u| u.0),
        group: app.group.map(|g| g.0),
        listen: app
            .listen
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.0)
            .collect(),
        ready: app.ready.map_or(DEFAULT_READY, |r| r.0),
        privileged_ports: {
            let mut ports: Vec<u16> = app
                .privileged_ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            ports
        },
        log: match app.log {
            None => LogTarget::Default,
            Some(LogValue::Inherit) => LogTarget::Inherit,
            Some(LogValue::File(file)) => LogTarget::File(resolve(dir, &file)),
        },
    })
}

/// The policy of an `[app.restart]` table; `min_delay` must not exceed
/// `max_delay`.
fn restart_policy(
    raw: RawRestart,
    error: impl Fn(Option<usize>, String) -> ConfigError,
) -> Result<RestartPolicy, ConfigError> {
    let d = RestartPolicy::default();
    let min_delay = raw
        .min_delay
        .as_ref()
        .map_or(d.min_delay, |t| t.get_ref().0);
    let max_delay = raw
        .max_delay
        .as_ref()
        .map_or(d.max_delay, |t| t.get_ref().0);
    if min_delay > max_delay {
        let (at, message) = match (&raw.max_delay, &raw.min_delay) {
            (Some(max), _) => (
                max.span().start,
                format!(
                    "max_delay {} is shorter than min_delay {}: the delay grows from \
                     min_delay up to max_delay",
                    show(max_delay),
                    show(min_delay)
                ),
            ),
            (None, min) => (
                min.as_ref().map_or(0, |m| m.span().start),
                format!(
                    "min_delay {} is longer than the default max_delay {}: lower it or set \
                     max_delay",
                    show(min_delay),
                    show(max_delay)
                ),
            ),
        };
        return Err(error(Some(at), message));
    }
    Ok(RestartPolicy {
        enabled: raw.enabled.unwrap_or(d.enabled),
        min_delay,
        max_delay,
        factor: raw.factor.map_or(d.factor, |f| f.0),
        stable_after: raw.stable_after.map_or(d.stable_after, |t| t.0),
        max_failures: raw.max_failures.map_or(d.max_failures, |n| n.0),
    })
}

/// A duration as a config writes it, in its largest exact unit: `"500ms"`,
/// `"30s"`, `"2m"`, `"1h"`.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|&(scale, _)| ms.is_multiple_of(scale))
        .map_or((ms, "ms"), |(scale, unit)| (ms / scale, unit));
    format!("\"{n}{unit}\"")
}
