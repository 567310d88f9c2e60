//! Wire types and framing shared by `ally-master`, the `ally` library and
//! `ally-ctl`.
//!
//! Every connection to the master's control socket carries frames: a `u32`
//! little-endian length, then that many bytes of a [postcard]-encoded
//! message ([`frame`]). The client speaks first with a [`Hello`] naming its
//! [`Role`]; the master answers [`HelloReply`]. After that an instance sends
//! [`InstanceRequest`]s and a control client [`ControlRequest`]s, each
//! answered in order. File descriptors ride as `SCM_RIGHTS` on the
//! `sendmsg` that carries the frame announcing them
//! ([`InstanceResponse::Listening`]).
//!
//! Message enums are append-only: postcard encodes a variant by its
//! position. `PROTOCOL.md` at the repository root pins the bytes.
//!
//! This crate does no I/O beyond [`std::io::Read`] and [`std::io::Write`].
//!
//! [postcard]: https://docs.rs/postcard

#![forbid(unsafe_code)]

mod addr;
mod bytes;
mod control;
mod detail;
pub mod env;
mod error;
pub mod frame;
mod hello;
mod instance;
pub mod paths;
pub mod state;

pub use addr::{AddrError, ListenAddr, MAX_UNIX_PATH, Network};
pub use control::{
    AppState, AppStatus, ControlRequest, ControlResponse, InstanceState, InstanceStatus,
};
pub use detail::{AppDetail, BuildInfo, Drift, ListenerDetail, ListenerOrigin, Setting};
pub use error::{Error, ErrorCode, Failure};
pub use hello::{Hello, HelloReply, MAGIC, PROTOCOL_VERSION, Role};
pub use instance::{
    InstanceInfo, InstanceRequest, InstanceResponse, ListenSpec, LockMode, LockState, Report,
};

#[cfg(test)]
mod golden;
