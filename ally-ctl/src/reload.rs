//! `ally-ctl reload APP`: start a new instance of an app and make it main
//! once it is ready.

use std::path::Path;
use std::time::{Duration, Instant};

use argh::FromArgs;

use ally_proto::{ControlRequest, ControlResponse};

use crate::ask::unexpected;
use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;

/// start a new instance of an app; the old one drains once the new one is
/// ready
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "reload",
    example = "ally-ctl reload web --wait --timeout 60",
    note = "without --wait, ally-ctl returns once the new instance is started; with\n\
            it, once the new instance is main (exit 0) or the reload failed and the\n\
            old instance keeps serving (exit 1, with the reason)."
)]
pub struct ReloadArgs {
    /// the app to reload, as named in the master's config
    #[argh(positional)]
    pub app: String,
    /// wait until the new instance is main, or the reload failed
    #[argh(switch)]
    pub wait: bool,
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// reload may still complete (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the reload and reports its progress.
///
/// # Errors
///
/// [`Failure::Failed`] when the reload failed, [`Failure::TimedOut`] when
/// `--timeout` elapsed, and the connection's failures.
pub fn run(args: &ReloadArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let app = &args.app;
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let after = args.timeout.unwrap_or_default();

    let mut client = Client::connect(socket, deadline).map_err(|failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {after:?} waiting for the master to answer; no reload was asked"
        )),
        other => other,
    })?;
    let request = ControlRequest::Reload {
        app: app.clone(),
        wait: args.wait,
    };
    client
        .send(&request)
        .map_err(in_time(after, "the master"))?;

    let started = format!("the reload of {app} to start");
    let instance = match client.recv().map_err(in_time(after, &started))? {
        ControlResponse::ReloadStarted { app: got, instance } if got == *app => instance,
        ControlResponse::Error(f) => {
            return Err(Failure::from_master(&format!("reload of {app} failed"), &f));
        }
        other => return Err(unexpected(&other, "ReloadStarted")),
    };
    say(&format!("reload of {app} started: instance {instance}"))?;
    if !args.wait {
        return Ok(());
    }

    let done = format!("instance {instance} of {app} to be ready");
    match client.recv().map_err(in_time(after, &done))? {
        ControlResponse::ReloadDone { app: got, instance } if got == *app => {
            say(&format!("{app}: instance {instance} is main"))
        }
        ControlResponse::Error(f) => {
            Err(Failure::from_master(&format!("reload of {app} failed"), &f))
        }
        other => Err(unexpected(&other, "ReloadDone")),
    }
}

/// Rewords a timeout to say what was awaited, and that the reload may
/// still complete.
fn in_time(after: Duration, what: &str) -> impl Fn(Failure) -> Failure {
    move |failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {after:?} waiting for {what}; the reload may still be in \
             progress: check with `ally-ctl list`"
        )),
        other => other,
    }
}
