//! Messages between a service instance (the `ally` library) and the master.

use serde::{Deserialize, Serialize};

use crate::{Failure, Network};

/// A socket a service asks for.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The kind of socket.
    pub network: Network,
    /// The address as the service wrote it; the master normalizes it with
    /// [`ListenAddr::parse`](crate::ListenAddr::parse).
    pub address: String,
    /// File mode for a unix socket path (for example `0o660`); `None` keeps
    /// the master's umask. Ignored for other networks.
    pub mode: Option<u32>,
}

/// What an instance reports about itself, shown by `ally-ctl list`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Tasks (requests, jobs) in flight.
    pub tasks: Option<u64>,
    /// The service's version string.
    pub version: Option<String>,
    /// The source revision it was built from.
    pub commit: Option<String>,
    /// Free text.
    pub text: Option<String>,
}

/// A request from an instance.
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum InstanceRequest {
    /// Give me this socket, binding it if nobody holds it yet.
    /// Answered by [`InstanceResponse::Listening`] with the fd attached.
    Listen(ListenSpec),
    /// I no longer hold this socket: closed if no other instance holds it.
    /// Answered by [`InstanceResponse::Done`].
    Unlisten(ListenSpec),
    /// I serve: make me main and stop older instances. Answered by
    /// [`InstanceResponse::Done`] (also when the instance already was main
    /// or is draining: readiness is a state, not an event to repeat).
    Ready,
    /// Record this status. Answered by [`InstanceResponse::Done`].
    Report(Report),
    /// Reload my app (start a successor). Answered by
    /// [`InstanceResponse::ReloadStarted`].
    Reload,
    /// Who am I? Answered by [`InstanceResponse::Info`].
    Info,
    /// Sets `key` in namespace `ns`, replacing any value; `ttl_ms` makes it
    /// expire. Answered by [`InstanceResponse::Done`].
    CacheSet {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// Value.
        #[serde(with = "crate::bytes")]
        value: Vec<u8>,
        /// Time to live in milliseconds; `None` keeps it until deleted.
        ttl_ms: Option<u64>,
    },
    /// The live value of `key`. Answered by [`InstanceResponse::Value`].
    CacheGet {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
    /// Deletes `key`. Answered by [`InstanceResponse::Bool`]: whether a live
    /// entry was there.
    CacheDel {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
    /// Whether `key` has a live entry. Answered by [`InstanceResponse::Bool`].
    CacheExists {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
    /// The live keys of `ns`, sorted. Answered by [`InstanceResponse::Keys`].
    CacheKeys {
        /// Namespace.
        ns: String,
    },
    /// How many live entries `ns` has. Answered by [`InstanceResponse::Count`].
    CacheCount {
        /// Namespace.
        ns: String,
    },
    /// The live entries of `ns`, sorted by key. Answered by
    /// [`InstanceResponse::Items`].
    CacheItems {
        /// Namespace.
        ns: String,
    },
    /// Removes every entry of `ns`. Answered by [`InstanceResponse::Count`]:
    /// how many live entries were removed.
    CacheFlush {
        /// Namespace.
        ns: String,
    },
    /// Adds `delta` to atomic `name` (created at 0). Answered by
    /// [`InstanceResponse::Int`] with the new value, or an `Overflow` error
    /// leaving the value unchanged.
    AtomicAdd {
        /// Atomic name.
        name: String,
        /// What to add (may be negative).
        delta: i64,
    },
    /// The value of atomic `name` (0 if never set). Answered by
    /// [`InstanceResponse::Int`].
    AtomicLoad {
        /// Atomic name.
        name: String,
    },
    /// Sets atomic `name`. Answered by [`InstanceResponse::Done`].
    AtomicStore {
        /// Atomic name.
        name: String,
        /// New value.
        value: i64,
    },
    /// Sets atomic `name`, returning the old value in
    /// [`InstanceResponse::Int`].
    AtomicSwap {
        /// Atomic name.
        name: String,
        /// New value.
        value: i64,
    },
    /// Sets atomic `name` to `new` if it equals `current`. Answered by
    /// [`InstanceResponse::Bool`]: whether it swapped.
    AtomicCas {
        /// Atomic name.
        name: String,
        /// Expected value.
        current: i64,
        /// Value to store if it matches.
        new: i64,
    },
    /// Takes lock `name` in `mode`, waiting at most `timeout_ms` (`None`:
    /// as long as it takes; `Some(0)`: only if free now). Answered by
    /// [`InstanceResponse::Bool`]: whether it was taken.
    Lock {
        /// Lock name.
        name: String,
        /// Exclusive (write) or shared (read).
        mode: LockMode,
        /// Longest wait in milliseconds.
        timeout_ms: Option<u64>,
    },
    /// Releases one hold of lock `name` in `mode` by this instance.
    /// Answered by [`InstanceResponse::Done`], or a `BadRequest` error if
    /// the instance does not hold it so.
    Unlock {
        /// Lock name.
        name: String,
        /// The mode it was taken in.
        mode: LockMode,
    },
    /// Who holds and waits for lock `name`. Answered by
    /// [`InstanceResponse::LockState`].
    LockQueue {
        /// Lock name.
        name: String,
    },
    /// Give me another connection of my own, for requests that run at the
    /// same time as others (a lock wait, another thread). Answered by
    /// [`InstanceResponse::Connected`] with one end of a new socket pair
    /// attached, or an error at the per-instance limit.
    Connect,
}

/// How a lock is held.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// One holder at a time (a write lock).
    Exclusive,
    /// Any number of holders at once, none exclusive (a read lock).
    Shared,
}

/// The state of one lock.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockState {
    /// Whether it is held exclusively.
    pub exclusive: bool,
    /// Shared holds (an instance holding it twice counts twice).
    pub shared: u32,
    /// Requests waiting for an exclusive hold.
    pub waiting_exclusive: u32,
    /// Requests waiting for a shared hold.
    pub waiting_shared: u32,
}

/// Facts about the asking instance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The app's name.
    pub app: String,
    /// The instance id, counting from 1 within the app.
    pub instance: u64,
    /// When the master started the instance, in milliseconds since the
    /// Unix epoch.
    pub started_unix_ms: u64,
}

impl InstanceResponse {
    /// How many file descriptors ride with this response.
    pub fn fd_count(&self) -> usize {
        match self {
            InstanceResponse::Listening { fds, .. } | InstanceResponse::Connected { fds } => {
                usize::from(*fds)
            }
            _ => 0,
        }
    }
}

/// The master's answer to an [`InstanceRequest`].
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum InstanceResponse {
    /// The socket: `fds` file descriptors (always 1 today) ride as
    /// `SCM_RIGHTS` on the same `sendmsg` as this frame.
    Listening {
        /// How many fds are attached.
        fds: u8,
        /// The socket's local address (with the real port when 0 was asked).
        local: String,
    },
    /// The request was done.
    Done,
    /// Answer to [`InstanceRequest::Info`].
    Info(InstanceInfo),
    /// A successor instance was started.
    ReloadStarted {
        /// The successor's id.
        instance: u64,
    },
    /// The request failed.
    Error(Failure),
    /// A cache value, or `None` when there is no live entry.
    Value(#[serde(with = "crate::bytes::option")] Option<Vec<u8>>),
    /// A yes/no answer.
    Bool(bool),
    /// An atomic's value.
    Int(i64),
    /// A count.
    Count(u64),
    /// Cache keys, sorted.
    Keys(Vec<String>),
    /// Cache entries, sorted by key.
    Items(Vec<(String, Vec<u8>)>),
    /// A lock's holders and waiters.
    LockState(LockState),
    /// A new connection of the instance's own: `fds` file descriptors
    /// (always 1) ride as `SCM_RIGHTS` on the same `sendmsg` as this frame.
    /// It needs no hello: it is the instance's from the moment it exists.
    Connected {
        /// How many fds are attached.
        fds: u8,
    },
}
