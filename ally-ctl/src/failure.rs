//! Exit codes, and the [`Failure`] that ends a command with one of them.
//!
//! Each code means one thing, so scripts can act on it; the top-level
//! `--help` lists them (kept in step by a test).

use std::fmt;

use ally_proto::ErrorCode;

/// The command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// The operation was tried and failed, e.g. a reload rolled back (the new
/// instance exited or was not ready in time, and the old one keeps
/// serving), an app did not start, or a config reread found the file
/// invalid. A command on several apps exits with the code of the first
/// app that failed, whatever it is.
pub const EXIT_FAILED: u8 = 1;
/// The command line is malformed.
pub const EXIT_USAGE: u8 = 2;
/// No master could be reached: no socket found, connection refused or lost
/// (also when the master goes away during `logs -f`), several masters
/// running and no `--socket` for a command that is not about apps, the
/// socket is served by a process running as neither root nor ally-ctl's
/// user (not trusted to be a master), or a master that did not answer may
/// run the app asked for.
pub const EXIT_UNREACHABLE: u8 = 3;
/// The master refused the request: unknown app, not permitted, protocol
/// version mismatch, bad request, shutting down, limit exceeded; or no
/// master runs the app named, or several do (pass `--socket`).
pub const EXIT_REFUSED: u8 = 4;
/// `--timeout` elapsed before the answer came; the operation may still
/// complete.
pub const EXIT_TIMEOUT: u8 = 5;
/// The master's reply was malformed or not the one expected.
pub const EXIT_PROTOCOL: u8 = 6;

/// Why a command did not succeed, one variant per exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// [`EXIT_FAILED`].
    Failed(String),
    /// [`EXIT_USAGE`].
    Usage(String),
    /// [`EXIT_UNREACHABLE`].
    Unreachable(String),
    /// [`EXIT_REFUSED`].
    Refused(String),
    /// [`EXIT_TIMEOUT`].
    TimedOut(String),
    /// [`EXIT_PROTOCOL`].
    Protocol(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Failed(_) => EXIT_FAILED,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Unreachable(_) => EXIT_UNREACHABLE,
            Failure::Refused(_) => EXIT_REFUSED,
            Failure::TimedOut(_) => EXIT_TIMEOUT,
            Failure::Protocol(_) => EXIT_PROTOCOL,
        }
    }

    /// The same kind of failure (the same exit code) with another message.
    #[must_use]
    pub fn with_message(&self, message: String) -> Failure {
        match self {
            Failure::Failed(_) => Failure::Failed(message),
            Failure::Usage(_) => Failure::Usage(message),
            Failure::Unreachable(_) => Failure::Unreachable(message),
            Failure::Refused(_) => Failure::Refused(message),
            Failure::TimedOut(_) => Failure::TimedOut(message),
            Failure::Protocol(_) => Failure::Protocol(message),
        }
    }

    /// The failure for an error the master answered, with `context` (what
    /// was asked) before its message.
    ///
    /// The master tried and failed ([`ErrorCode::ReloadFailed`],
    /// [`ErrorCode::ListenFailed`], [`ErrorCode::Internal`], and any code
    /// this version does not know) → [`Failure::Failed`]; it declined to
    /// try → [`Failure::Refused`].
    pub fn from_master(context: &str, failure: &ally_proto::Failure) -> Failure {
        let message = format!("{context}: {}", failure.message);
        match failure.code {
            ErrorCode::BadRequest
            | ErrorCode::VersionMismatch
            | ErrorCode::NotPermitted
            | ErrorCode::UnknownApp
            | ErrorCode::LimitExceeded
            | ErrorCode::ShuttingDown => Failure::Refused(message),
            _ => Failure::Failed(message),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Failure::Failed(m)
        | Failure::Usage(m)
        | Failure::Unreachable(m)
        | Failure::Refused(m)
        | Failure::TimedOut(m)
        | Failure::Protocol(m)) = self;
        f.write_str(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_errors_map_to_one_code_each() {
        let code = |c| Failure::from_master("x", &ally_proto::Failure::new(c, "m")).exit_code();
        assert_eq!(code(ErrorCode::ReloadFailed), EXIT_FAILED);
        assert_eq!(code(ErrorCode::Internal), EXIT_FAILED);
        assert_eq!(code(ErrorCode::ListenFailed), EXIT_FAILED);
        assert_eq!(code(ErrorCode::UnknownApp), EXIT_REFUSED);
        assert_eq!(code(ErrorCode::NotPermitted), EXIT_REFUSED);
        assert_eq!(code(ErrorCode::VersionMismatch), EXIT_REFUSED);
        assert_eq!(code(ErrorCode::BadRequest), EXIT_REFUSED);
        assert_eq!(code(ErrorCode::ShuttingDown), EXIT_REFUSED);
        assert_eq!(code(ErrorCode::LimitExceeded), EXIT_REFUSED);
    }

    #[test]
    fn message_keeps_context() {
        let f = ally_proto::Failure::new(ErrorCode::ReloadFailed, "instance 3 exited");
        assert_eq!(
            Failure::from_master("reload of web failed", &f).to_string(),
            "reload of web failed: instance 3 exited"
        );
    }
}
