#![allow(
    missing_docs,
    reason = "plain mirrors of the live types, whose fields are documented where they live"
)]

//! The handover state: what an upgraded master carries from one image of
//! itself to the next, as plain data of its own, separate from the live
//! types (which are never serialized).
//!
//! Versioning rule: these types are encoded with postcard, which has no
//! field names, so any change to them — a field added, removed, reordered
//! or retyped, a variant added — changes the format and must bump
//! [`HANDOVER_VERSION`](crate::version::HANDOVER_VERSION); so must a change
//! to the exec's command line ([`crate::handover::exec`]), through which
//! the state names its descriptors. A master refuses a state of another
//! version (the probe of an upgrade finds that before the exec, and the
//! upgrade fails with the old master serving on).
//!
//! Descriptors are named by [`Fd`], an index into the table of descriptor
//! numbers passed on the command line; deadlines travel as milliseconds
//! left at the moment of the snapshot, times in the past as milliseconds
//! ago.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ally_proto::state::StoreSnapshot;
use ally_proto::{ListenSpec, Network, Report};
use serde::{Deserialize, Serialize};

/// A descriptor: its index in the handover's descriptor table.
pub type Fd = u32;

/// The whole master.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MasterSnap {
    /// The version of the master that wrote it (`--version`).
    pub from_version: String,
    /// How many descriptors the table holds.
    pub fd_count: u32,
    /// The config file (read again by `reread`, never at the handover).
    pub config_path: PathBuf,
    /// The path the master was started from: where the next upgrade looks
    /// for the new binary.
    pub exe_path: PathBuf,
    /// Where apps' default logs go.
    pub log_dir: PathBuf,
    /// The control socket's path.
    pub socket: PathBuf,
    /// The descriptor limit the master was started with, for children.
    pub fd_limit: Option<(Option<u64>, Option<u64>)>,
    /// `[master] frame_timeout`.
    pub frame_timeout_ms: u64,
    /// `[master] group`.
    pub control_group: Option<u32>,
    /// Whether readiness was announced.
    pub announced: bool,
    /// `--ready-fd`, until readiness is announced.
    pub ready_fd: Option<Fd>,
    /// The listening control socket.
    pub control: Fd,
    /// The apps, by id, and the next id.
    pub apps: Vec<(u64, AppSnap)>,
    /// The next app id.
    pub next_app: u64,
    /// The listener table.
    pub listeners: Vec<ListenerSnap>,
    /// The connections, by id.
    pub conns: Vec<(u64, ConnSnap)>,
    /// The next connection id.
    pub next_conn: u64,
    /// The connection waiting for the upgrade's outcome, if one does.
    pub upgrade_waiter: Option<u64>,
}

/// One app.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppSnap {
    /// The config it runs (not read from disk again).
    pub config: AppConfigSnap,
    /// Its live instances, oldest first.
    pub instances: Vec<InstanceSnap>,
    /// Its cache, atomics and locks.
    pub store: StoreSnapshot,
    /// Lock waits: ticket, connection, milliseconds left.
    pub waits: Vec<(u64, u64, Option<u64>)>,
    /// Its log.
    pub log: LogSnap,
    /// Connections following its log.
    pub followers: Vec<u64>,
    /// Log lines not yet sent to the followers.
    pub unsent: Vec<String>,
    /// The sockets of its `listen` key.
    pub sockets: Vec<(String, BoundSnap)>,
    /// Its lifecycle.
    pub machine: MachineSnap,
}

/// An app's config, value by value.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppConfigSnap {
    pub name: String,
    /// Not in this struct's encoding (whose layout is that of
    /// [`FAMILYLESS_VERSION`](crate::handover::FAMILYLESS_VERSION)): it
    /// travels in [`Families`], after the whole state.
    #[serde(skip)]
    pub family: Option<String>,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub ready_timeout_ms: u64,
    pub stop_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub stop_signal: i32,
    pub max_cache_entries: u64,
    pub max_cache_bytes: u64,
    pub max_name_len: u64,
    pub max_ttl_ms: u64,
    pub max_atomics: u64,
    pub max_locks: u64,
    pub autostart: bool,
    pub restart: RestartSnap,
    pub max_draining: u64,
    pub inherit_env: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    pub listen: Vec<(String, ListenSpec)>,
    pub ready: ReadySnap,
    pub privileged_ports: Vec<u16>,
    pub log: LogTargetSnap,
}

/// Each app's `family`, in the order of [`MasterSnap::apps`]: appended
/// after the state from handover version 4, so that the state before it
/// keeps the layout version 3 had and still decodes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Families(pub Vec<Option<String>>);

impl Families {
    /// The families of `snap`'s apps.
    pub fn of(snap: &MasterSnap) -> Families {
        Families(
            snap.apps
                .iter()
                .map(|(_, app)| app.config.family.clone())
                .collect(),
        )
    }

    /// Gives `snap`'s apps their families.
    ///
    /// # Errors
    ///
    /// If there are not exactly as many families as apps.
    pub fn apply(self, snap: &mut MasterSnap) -> Result<(), &'static str> {
        if self.0.len() != snap.apps.len() {
            return Err("the state lists another number of families than of apps");
        }
        for ((_, app), family) in snap.apps.iter_mut().zip(self.0) {
            app.config.family = family;
        }
        Ok(())
    }
}

/// `[app.restart]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSnap {
    pub enabled: bool,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    pub factor: u32,
    pub stable_after_ms: u64,
    pub max_failures: u32,
}

/// `ready`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadySnap {
    Lib,
    Notify,
    DelayMs(u64),
    Immediate,
}

/// `log`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum LogTargetSnap {
    Default,
    Inherit,
    File(PathBuf),
}

/// An app's lifecycle machine.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MachineSnap {
    pub instances: Vec<TrackedSnap>,
    pub next_id: u64,
    pub life: LifeSnap,
    pub crashes: u32,
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// An instance as the machine knows it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedSnap {
    pub id: u64,
    pub state: StateSnap,
    /// Milliseconds since it was spawned.
    pub started_ago_ms: u64,
    /// Milliseconds until it counts as ready (`ready = "delay:..."`).
    pub ready_in_ms: Option<u64>,
}

/// An instance's state, deadlines as milliseconds left.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSnap {
    Starting { left_ms: u64 },
    Main,
    Draining { left_ms: u64 },
    Killed,
}

/// Who waits for a reload or a start.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaiterSnap {
    Control { conn: u64, wait: bool },
    Instance { conn: u64 },
    Lifecycle { conn: u64 },
}

/// Why an app is down.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhySnap {
    Stopped,
    Removed,
    ShuttingDown { removed: bool },
}

/// Where an app is as a whole.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum LifeSnap {
    Up {
        restart_in_ms: Option<u64>,
    },
    Reloading {
        instance: u64,
        waiters: Vec<WaiterSnap>,
        queued: Vec<WaiterSnap>,
    },
    Failed,
    Down {
        why: WhySnap,
        stop_waiters: Vec<u64>,
        then_start: Vec<WaiterSnap>,
    },
    Gone,
}

/// A live instance's process and descriptors.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InstanceSnap {
    pub id: u64,
    pub pid: i32,
    pub started_unix_ms: u64,
    pub report: Report,
    pub pipes: Vec<PipeSnap>,
    pub notify: NotifySnap,
    /// Its channel, if the loop has not taken it yet.
    pub channel: Option<Fd>,
    pub cred: CredSnap,
    pub tail: Vec<String>,
}

/// An output pipe and the unfinished line read from it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PipeSnap {
    pub fd: Fd,
    pub stderr: bool,
    pub partial: Vec<u8>,
    pub skipping: bool,
}

/// An instance's notify socket.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NotifySnap {
    pub fd: Fd,
    pub address: String,
    pub unreported: u64,
    pub last_report_ago_ms: Option<u64>,
}

/// A peer's credentials.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredSnap {
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
}

/// An app's log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogSnap {
    /// Its file and the descriptor writing to it, unless it is stderr.
    pub file: Option<(PathBuf, Fd)>,
    pub recent: Vec<String>,
    pub dropped: u64,
}

/// A bound socket.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BoundSnap {
    pub fd: Fd,
    pub local: String,
    /// A unix socket's file, removed when the socket closes.
    pub file: Option<SocketFileSnap>,
    pub spec: Option<ListenSpec>,
    /// Its `FDNAME` in systemd's fd store, if it is parked there (it
    /// stays there across the upgrade: nothing is sent again).
    pub parked: Option<String>,
}

/// A unix socket's file: path, device, inode and who removes it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SocketFileSnap {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// The uid and gid of the helper that removes it.
    pub owner: Option<(u32, u32)>,
}

/// One entry of the listener table.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListenerSnap {
    pub app: String,
    pub network: Network,
    /// The normalized address, as text (parsed again on restore).
    pub address: String,
    pub mode: Option<u32>,
    pub bound: BoundSnap,
    pub holders: Vec<u64>,
}

/// One connection, with what it had buffered either way.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConnSnap {
    pub fd: Fd,
    pub cred: CredSnap,
    pub peer: PeerSnap,
    /// Bytes received and not yet handled (a half-read frame included).
    pub input: Vec<u8>,
    /// Frames not yet sent (what is left of the first), with the
    /// descriptors that ride on each.
    pub output: Vec<(Vec<u8>, Vec<Fd>)>,
    pub backlog: bool,
    pub hung_up: bool,
    /// Accepted from the control socket (holds a slot and budgets).
    pub accepted: bool,
    /// Milliseconds since the frame at the head of `input` began.
    pub frame_ago_ms: Option<u64>,
}

/// What a connection's peer is.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum PeerSnap {
    Unknown { left_ms: u64 },
    Channel { app: String, id: u64 },
    Instance { app: String, id: u64 },
    Control,
    Closing { left_ms: u64 },
}
