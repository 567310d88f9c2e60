//! Messages between an operator tool (`ally-ctl`) and the master.

use serde::{Deserialize, Serialize};

use crate::{Failure, Report};

/// A request from a control client.
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// The state of every app. Answered by [`ControlResponse::Apps`].
    List,
    /// Start a new instance of `app` and make it main once ready.
    ///
    /// Answered by [`ControlResponse::ReloadStarted`] once the new instance
    /// is spawned. A reload asked while another runs is queued: all queued
    /// requests share one reload that starts when the running one ends, so
    /// every request is answered by a reload that began after it. With
    /// `wait`, a second frame follows when the reload ends:
    /// [`ControlResponse::ReloadDone`] or [`ControlResponse::Error`] with the
    /// reason.
    Reload {
        /// The app's name.
        app: String,
        /// Whether to send the outcome too.
        wait: bool,
    },
    /// The detail of one app. Answered by [`ControlResponse::Apps`] with one
    /// entry.
    Status {
        /// The app's name.
        app: String,
    },
    /// Start a stopped or failed app. Answered by [`ControlResponse::Done`]
    /// once an instance is main, or [`ControlResponse::Error`].
    Start {
        /// The app's name.
        app: String,
    },
    /// Stop every instance of the app (stop signal, then SIGKILL after
    /// `stop_timeout`) and keep it stopped. Answered by
    /// [`ControlResponse::Done`] once none is left.
    Stop {
        /// The app's name.
        app: String,
    },
    /// Stop, then start: not zero-downtime (that is what `Reload` is for).
    /// Answered by [`ControlResponse::Done`] once the new instance is main.
    Restart {
        /// The app's name.
        app: String,
    },
    /// Send `signal` to every live instance of the app. Answered by
    /// [`ControlResponse::Done`].
    Kill {
        /// The app's name.
        app: String,
        /// Signal number.
        signal: i32,
    },
    /// The last `lines` lines of the app's log; with `follow`, further
    /// [`ControlResponse::LogLines`] frames as lines are written, until the
    /// client disconnects.
    Logs {
        /// The app's name.
        app: String,
        /// How many past lines to send first.
        lines: u32,
        /// Whether to keep sending new lines.
        follow: bool,
    },
    /// Read the config file again and apply it: new apps start, removed
    /// apps stop, changed settings apply from the next start. An invalid
    /// config changes nothing. Answered by [`ControlResponse::Done`] with a
    /// summary, or [`ControlResponse::Error`].
    Reread,
    /// Reopen every log file (after logrotate moved them). Answered by
    /// [`ControlResponse::Done`].
    Reopen,
    /// Re-execute the master's binary from disk in place (same pid), with
    /// every descriptor and all of its state. Answered by
    /// [`ControlResponse::UpgradeStarted`] once the new binary is being
    /// checked, or [`ControlResponse::Error`] (an upgrade already under
    /// way, a shutdown, an unusable binary). With `wait`, a second frame
    /// follows when it ends: [`ControlResponse::Upgraded`] from the new
    /// master, or [`ControlResponse::Error`] from the old one, which serves
    /// on.
    Upgrade {
        /// Whether to send the outcome too.
        wait: bool,
    },
    /// The running master's version. Answered by
    /// [`ControlResponse::MasterVersion`].
    Version,
}

/// Where an app is, as a whole.
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// A main instance serves.
    Running,
    /// Starting its first instance (or the first after a stop).
    Starting,
    /// No main instance; restarting after a crash at `until_unix_ms`.
    Backoff {
        /// When the next start is due, milliseconds since the Unix epoch.
        until_unix_ms: u64,
    },
    /// Crashed too often in a row; not restarted until `ally-ctl start`.
    Failed,
    /// Asked to stop; instances are draining.
    Stopping,
    /// Stopped by `ally-ctl stop` (or `autostart = false`): no instance.
    Stopped,
}

impl AppState {
    /// Lowercase name for tables and scripts.
    pub fn name(self) -> &'static str {
        match self {
            AppState::Running => "running",
            AppState::Starting => "starting",
            AppState::Backoff { .. } => "backoff",
            AppState::Failed => "failed",
            AppState::Stopping => "stopping",
            AppState::Stopped => "stopped",
        }
    }
}

/// Where an instance is in its life.
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Started, not yet ready.
    Starting,
    /// Ready and serving: the app's main instance.
    Main,
    /// Sent the stop signal; finishing its work before it exits.
    Draining,
    /// Sent SIGKILL (stop timeout passed, or failed to get ready); not yet
    /// reaped.
    Killed,
}

impl InstanceState {
    /// Lowercase name for tables and scripts.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Main => "main",
            InstanceState::Draining => "draining",
            InstanceState::Killed => "killed",
        }
    }
}

/// One instance as `ally-ctl list` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Id within the app, from 1.
    pub id: u64,
    /// Process id.
    pub pid: u32,
    /// Life-cycle state.
    pub state: InstanceState,
    /// Start time, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Number of listeners it holds.
    pub listeners: u32,
    /// When it will be killed if it has not exited (draining or starting),
    /// milliseconds since the Unix epoch.
    pub deadline_unix_ms: Option<u64>,
    /// What the instance last reported with `ally::report`.
    pub report: Report,
    /// CPU time used (user + system), milliseconds, from `/proc`.
    pub cpu_ms: u64,
    /// Resident memory, bytes, from `/proc`.
    pub rss_bytes: u64,
    /// The user id it runs as (effective), from `/proc`; `None` when that
    /// could not be read.
    pub uid: Option<u32>,
}

/// One app as `ally-ctl list` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    /// The app's name.
    pub name: String,
    /// Where the app is as a whole.
    pub state: AppState,
    /// Crash restarts since the master started.
    pub restarts: u32,
    /// Id of the main instance, if one is serving.
    pub main: Option<u64>,
    /// Id of the instance a reload in progress is waiting for.
    pub reloading: Option<u64>,
    /// Reloads asked for while one runs; they coalesce into one.
    pub queued_reloads: u32,
    /// The last failure (of a reload or an instance), if any.
    pub last_error: Option<String>,
    /// Live instances, oldest first.
    pub instances: Vec<InstanceStatus>,
    /// Lines of its output dropped since the master started because their
    /// log sink (its file, or the master's stderr) could not keep up.
    pub dropped_lines: u64,
    /// Its `family` in the config, if it has one: a group name for
    /// commands on several apps at once (`ally-ctl reload --family F`).
    pub family: Option<String>,
}

/// The master's answer to a [`ControlRequest`].
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ControlResponse {
    /// Every app, in config order.
    Apps(Vec<AppStatus>),
    /// A reload began; `instance` is the new instance.
    ReloadStarted {
        /// The app's name.
        app: String,
        /// The new instance's id.
        instance: u64,
    },
    /// The reload succeeded: `instance` is main and older instances were
    /// asked to stop.
    ReloadDone {
        /// The app's name.
        app: String,
        /// The new main instance's id.
        instance: u64,
    },
    /// The request failed; the message says why.
    Error(Failure),
    /// The request was done; the message says what happened.
    Done(String),
    /// Log lines, oldest first, each `TIME APP#ID STREAM| text`.
    LogLines(Vec<String>),
    /// An upgrade began: the new binary is being checked; `from` is the
    /// running master's version.
    UpgradeStarted {
        /// The version of the master that took the request.
        from: String,
    },
    /// The upgrade succeeded: sent by the new master.
    Upgraded {
        /// The version of the master before.
        from: String,
        /// The version of the master now.
        to: String,
    },
    /// The running master's version, and the version of the state it hands
    /// over in an upgrade.
    MasterVersion {
        /// Its version (`ally-master --version`).
        version: String,
        /// Its handover state version.
        handover: u32,
    },
}
