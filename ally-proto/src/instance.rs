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
    /// I no longer hold this socket. Answered by [`InstanceResponse::Done`].
    Unlisten(ListenSpec),
    /// I serve: make me main and stop older instances.
    Ready,
    /// Record this status. Answered by [`InstanceResponse::Done`].
    Report(Report),
    /// Reload my app (start a successor). Answered by
    /// [`InstanceResponse::ReloadStarted`].
    Reload,
    /// Who am I? Answered by [`InstanceResponse::Info`].
    Info,
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
}
