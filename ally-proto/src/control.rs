//! Messages between an operator tool (`ally-ctl`) and the master.

use serde::{Deserialize, Serialize};

use crate::Failure;

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
}

/// One app as `ally-ctl list` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    /// The app's name.
    pub name: String,
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
}
