//! The first exchange on every connection to the master.

use serde::{Deserialize, Serialize};

use crate::Failure;

/// Four bytes every hello starts with, so that a stray client is told apart
/// from a peer of another version at once.
pub const MAGIC: [u8; 4] = *b"ally";

/// The version of this protocol. A peer with another version is refused
/// with [`ErrorCode::VersionMismatch`](crate::ErrorCode::VersionMismatch).
pub const PROTOCOL_VERSION: u32 = 4;

/// Who is connecting.
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A service instance, on the channel the master made for it at spawn
    /// (refused on the control socket).
    Instance,
    /// An operator tool such as `ally-ctl`; its uid is checked.
    Control,
}

/// The client's first frame.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The client's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What the client is.
    pub role: Role,
}

impl Hello {
    /// A hello of this protocol version for `role`.
    pub fn new(role: Role) -> Self {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            role,
        }
    }
}

/// The master's answer to a [`Hello`].
///
/// Its encoding must never change, so that peers of any version can read a
/// refusal.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum HelloReply {
    /// The connection is accepted.
    Welcome {
        /// The master's [`PROTOCOL_VERSION`].
        version: u32,
        /// The master's process id.
        master_pid: u32,
    },
    /// The connection is refused; the master closes it after this frame.
    Refused(Failure),
}
