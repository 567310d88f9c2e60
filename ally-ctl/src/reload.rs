//! `ally-ctl reload APP`: start a new instance of an app and make it main
//! once it is ready.

use std::path::Path;
use std::time::{Duration, Instant};

use argh::{ArgsInfo, FromArgs};

use ally_proto::{ControlRequest, ControlResponse};

use crate::ask::unexpected;
use crate::bulk::{self, Plan};
use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;
use crate::masters;
use crate::select::Selection;

/// start a new instance of an app; the old one drains once the new one is
/// ready
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "reload",
    example = "ally-ctl reload web --wait --timeout 60",
    note = "without --wait, ally-ctl returns once the new instance is started; with\n\
            it, once the new instance is main (exit 0) or the reload failed and the\n\
            old instance keeps serving (exit 1, with the reason).\n\
            Several apps (names, --family F, or all) are reloaded one at a time,\n\
            each waited for (--wait is implied), stopping at the first failure;\n\
            --parallel N reloads N at once, --keep-going goes on past failures.\n\
            One line per app, then a summary such as `3 reloaded, 1 failed, 1 not\n\
            run`; the exit code is 0 only if every app was reloaded, else that of\n\
            the first failure. --timeout applies to each app."
)]
pub struct ReloadArgs {
    /// the apps to reload, as named in their masters' configs, or all
    #[argh(positional)]
    pub apps: Vec<String>,
    /// every app of this family (--family all: every app)
    #[argh(option)]
    pub family: Option<String>,
    /// with several apps: how many to reload at once (default 1, at most
    /// 16)
    #[argh(option, from_str_fn(crate::bulk::parse_parallel), default = "1")]
    pub parallel: usize,
    /// with several apps: go on past a failed reload instead of stopping
    /// there
    #[argh(switch)]
    pub keep_going: bool,
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
    let selection = Selection::parse(&args.apps, args.family.as_deref())?;
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let targets = masters::resolve(&selection, socket, deadline)?;
    let plan = Plan {
        parallel: args.parallel,
        keep_going: args.keep_going,
    };
    // Several apps are waited for: a failure must be known to stop at it.
    let one = targets.len() == 1;
    bulk::run(&targets, plan, "reloaded", |target| {
        reload(
            &target.app,
            &target.socket,
            args.wait || !one,
            args.timeout,
            one,
        )
    })
}

/// Reloads `app` through the master at `socket`; with `progress`, says
/// when the new instance has started. Returns the last line to show.
///
/// # Errors
///
/// As [`run`].
fn reload(
    app: &str,
    socket: &Path,
    wait: bool,
    timeout: Option<Duration>,
    progress: bool,
) -> Result<String, Failure> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let after = timeout.unwrap_or_default();

    let mut client = Client::connect(Some(socket), deadline).map_err(|failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {after:?} waiting for the master to answer; no reload was asked"
        )),
        other => other,
    })?;
    let request = ControlRequest::Reload {
        app: app.to_owned(),
        wait,
    };
    client
        .send(&request)
        .map_err(in_time(after, "the master"))?;

    let started = format!("the reload of {app} to start");
    let instance = match client.recv().map_err(in_time(after, &started))? {
        ControlResponse::ReloadStarted { app: got, instance } if got == app => instance,
        ControlResponse::Error(f) => {
            return Err(Failure::from_master(&format!("reload of {app} failed"), &f));
        }
        other => return Err(unexpected(&other, "ReloadStarted")),
    };
    let started = format!("reload of {app} started: instance {instance}");
    if !wait {
        return Ok(started);
    }
    if progress {
        say(&started)?;
    }

    let done = format!("instance {instance} of {app} to be ready");
    match client.recv().map_err(in_time(after, &done))? {
        ControlResponse::ReloadDone { app: got, instance } if got == app => {
            Ok(format!("{app}: instance {instance} is main"))
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
