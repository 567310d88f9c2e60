//! `ally-ctl upgrade`: re-execute the master's binary from disk in place,
//! with all of its state.

use std::path::Path;
use std::time::{Duration, Instant};

use argh::{ArgsInfo, FromArgs};

use ally_proto::{ControlRequest, ControlResponse};

use crate::ask::unexpected;
use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;

/// upgrade the master in place: re-execute its binary from disk with the
/// same pid, every socket, instance and all of its state
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "upgrade",
    example = "ally-ctl upgrade --wait",
    note = "the binary is the one at the path the master was started from; it is\n\
            checked against the state first. Without --wait, ally-ctl returns once the\n\
            upgrade is accepted; with it, once the new master serves (exit 0, printing\n\
            both versions) or the upgrade failed and the old master serves on (exit 1,\n\
            with the reason). SIGUSR2 to the master does the same without a waiter."
)]
pub struct UpgradeArgs {
    /// wait until the new master serves, or the upgrade failed
    #[argh(switch)]
    pub wait: bool,
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// upgrade may still complete (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the upgrade and reports how it went.
///
/// # Errors
///
/// [`Failure::Failed`] when the upgrade failed (the old master serves on),
/// [`Failure::Refused`] when it was refused (one is under way, the master
/// is shutting down), [`Failure::TimedOut`] when `--timeout` elapsed, and
/// the connection's failures.
pub fn run(args: &UpgradeArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let after = args.timeout.unwrap_or_default();
    let in_time = |what: &'static str| {
        move |failure| match failure {
            Failure::TimedOut(_) => Failure::TimedOut(format!(
                "timed out after {after:?} waiting for {what}; the upgrade may still complete: \
                 check with `ally-ctl version`"
            )),
            other => other,
        }
    };
    let mut client = Client::connect(socket, deadline).map_err(|failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {after:?} waiting for the master to answer; no upgrade was asked"
        )),
        other => other,
    })?;
    client
        .send(&ControlRequest::Upgrade { wait: args.wait })
        .map_err(in_time("the master"))?;
    let from = match client.recv().map_err(in_time("the upgrade to start"))? {
        ControlResponse::UpgradeStarted { from } => from,
        ControlResponse::Error(f) => return Err(Failure::from_master("upgrade failed", &f)),
        other => return Err(unexpected(&other, "UpgradeStarted")),
    };
    if !args.wait {
        return say(&format!("upgrade of ally-master {from} started"));
    }
    match client.recv().map_err(in_time("the new master"))? {
        ControlResponse::Upgraded { from, to } => {
            say(&format!("ally-master upgraded in place: {from} -> {to}"))
        }
        ControlResponse::Error(f) => Err(Failure::from_master("upgrade failed", &f)),
        other => Err(unexpected(&other, "Upgraded")),
    }
}
