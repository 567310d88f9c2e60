//! One request answered by one `Done`: what `start`, `stop`, `restart`,
//! `kill`, `reread` and `reopen` share; and the first four on several apps.

use std::path::Path;
use std::time::{Duration, Instant};

use ally_proto::{ControlRequest, ControlResponse};

use crate::bulk::{self, Plan};
use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;
use crate::masters;
use crate::select::Selection;

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

/// A lifecycle request for each app of a selection: the words for it.
#[derive(Debug, Clone, Copy)]
pub struct Each<'a> {
    /// What the request does, for messages: `start` (`cannot start web`,
    /// `web to start`).
    pub doing: &'a str,
    /// What a success is called in the summary: `started`.
    pub verb: &'a str,
    /// The limit for each app, from `--timeout`.
    pub timeout: Option<Duration>,
    /// How to go through the apps.
    pub plan: Plan,
}

/// Sends `request(app)` to the master of each selected app, as
/// [`bulk::run`] goes.
///
/// # Errors
///
/// As [`bulk::run`], and the failures of finding the apps.
pub fn each(
    selection: &Selection,
    socket: Option<&Path>,
    words: Each<'_>,
    request: impl Fn(String) -> ControlRequest + Sync,
) -> Result<(), Failure> {
    let deadline = words.timeout.map(|t| Instant::now() + t);
    let targets = masters::resolve(selection, socket, deadline)?;
    bulk::run(&targets, words.plan, words.verb, |target| {
        let app = &target.app;
        done(
            &Ask {
                request: request(app.clone()),
                timeout: words.timeout,
                failed: &format!("cannot {} {app}", words.doing),
                awaited: &format!("{app} to {}", words.doing),
                check: &format!("ally-ctl status {app}"),
            },
            Some(&target.socket),
        )
    })
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
