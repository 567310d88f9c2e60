//! Errors: the crate's own [`Error`] (framing and decoding), and the
//! [`Failure`] a response carries when a request could not be done.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong reading or writing a frame.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The frame announces a body larger than the limit.
    TooLarge {
        /// Announced body length.
        len: usize,
        /// The limit: [`MAX_FRAME_LEN`](crate::frame::MAX_FRAME_LEN), or a
        /// reader's lower one.
        max: usize,
    },
    /// The body is not a valid encoding of the expected message.
    Decode(postcard::Error),
    /// The message ended before the body did.
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
    /// The message could not be serialized.
    Encode(postcard::Error),
    /// The peer closed the stream between frames.
    Closed,
    /// An I/O error on the underlying stream.
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max}-byte limit")
            }
            Error::Decode(e) => write!(f, "malformed message: {e}"),
            Error::TrailingBytes { extra } => {
                write!(f, "malformed message: {extra} bytes after its end")
            }
            Error::Encode(e) => write!(f, "cannot encode message: {e}"),
            Error::Closed => f.write_str("connection closed by peer"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Decode(e) | Error::Encode(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind;
        match e {
            Error::Io(e) => e,
            Error::Closed => std::io::Error::new(ErrorKind::ConnectionAborted, e),
            other => std::io::Error::new(ErrorKind::InvalidData, other),
        }
    }
}

/// Machine-readable category of a [`Failure`].
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed or makes no sense in this state.
    BadRequest,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The peer is not allowed to do this (credentials, wrong app).
    NotPermitted,
    /// No app by that name in the master's config.
    UnknownApp,
    /// The master could not bind or set up the requested socket.
    ListenFailed,
    /// A reload did not make the new instance main (it exited, or was not
    /// ready in time); the old main keeps serving.
    ReloadFailed,
    /// A limit was reached (connections, entries, bytes).
    LimitExceeded,
    /// The master is shutting down and takes no new work.
    ShuttingDown,
    /// Something failed inside the master; the message says what.
    Internal,
    /// An atomic operation would overflow an `i64`; the value is unchanged.
    Overflow,
    /// The config file (read again by `reread`) is invalid; nothing changed.
    InvalidConfig,
}

impl ErrorCode {
    /// A short lowercase name, stable for scripts.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::VersionMismatch => "version-mismatch",
            ErrorCode::NotPermitted => "not-permitted",
            ErrorCode::UnknownApp => "unknown-app",
            ErrorCode::ListenFailed => "listen-failed",
            ErrorCode::ReloadFailed => "reload-failed",
            ErrorCode::LimitExceeded => "limit-exceeded",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::Internal => "internal",
            ErrorCode::Overflow => "overflow",
            ErrorCode::InvalidConfig => "invalid-config",
        }
    }
}

/// A request that could not be done: a code for programs and a message for
/// people.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The category.
    pub code: ErrorCode,
    /// What happened and, where it helps, what to do about it.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.name())
    }
}

impl std::error::Error for Failure {}
