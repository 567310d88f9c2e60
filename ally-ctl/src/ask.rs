//! One request answered by one `Done`: what `start`, `stop`, `restart`,
//! `kill`, `reread` and `reopen` share.

use std::path::Path;
use std::time::{Duration, Instant};

use ally_proto::{ControlRequest, ControlResponse};

use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;

/// A request and the words to report on it.
#[derive(Debug)]
pub struct Ask<'a> {
    /// What to send.
    pub request: ControlRequest,
    /// The limit for the whole command, from `--timeout`.
    pub timeout: Option<Duration>,
    /// What the master's error message follows: `cannot start web`.
    pub failed: &'a str,
    /// What a timeout waited for: `web to start`.
    pub awaited: &'a str,
    /// The command that shows how things turned out after a timeout.
    pub check: &'a str,
}

/// Sends `ask.request` and prints the master's `Done` message.
///
/// # Errors
///
/// The master's error as [`Failure::from_master`] maps it,
/// [`Failure::TimedOut`] when `ask.timeout` elapsed, and the connection's
/// failures.
pub fn run(ask: &Ask<'_>, socket: Option<&Path>) -> Result<(), Failure> {
    let message = done(ask, socket)?;
    say(message.trim_end())
}

/// Sends `ask.request` and returns the master's `Done` message.
///
/// # Errors
///
/// As [`run`].
fn done(ask: &Ask<'_>, socket: Option<&Path>) -> Result<String, Failure> {
    let deadline = ask.timeout.map(|t| Instant::now() + t);
    let after = ask.timeout.unwrap_or_default();
    let mut client = Client::connect(socket, deadline).map_err(|failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {after:?} waiting for the master to answer; nothing was asked"
        )),
        other => other,
    })?;
    let in_time = |failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {after:?} waiting for {}; it may still happen: check with `{}`",
            ask.awaited, ask.check
        )),
        other => other,
    };
    client.send(&ask.request).map_err(in_time)?;
    match client.recv().map_err(in_time)? {
        ControlResponse::Done(message) => Ok(message),
        ControlResponse::Error(f) => Err(Failure::from_master(ask.failed, &f)),
        other => Err(unexpected(&other, "Done")),
    }
}

/// A protocol failure for a response that is not the one expected.
pub fn unexpected(got: &ControlResponse, expected: &str) -> Failure {
    Failure::Protocol(format!(
        "unexpected reply from the master: expected {expected}, got {got:?}"
    ))
}
