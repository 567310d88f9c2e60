//! `ally-ctl restart APP`: stop an app, then start it.

use std::path::Path;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};

use ally_proto::ControlRequest;

use crate::ask::{self, Each};
use crate::bulk::Plan;
use crate::failure::Failure;
use crate::select::Selection;

/// stop an app, then start it: not zero-downtime; use reload for that
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "restart",
    example = "ally-ctl restart web --timeout 60",
    note = "every instance stops before the new one starts, so the app serves\n\
            nothing for a while (connections wait in its sockets' queues, which the\n\
            master keeps open): `ally-ctl reload` replaces it without downtime.\n\
            Exits 0 once the new instance is main, 1 if it could not start."
)]
pub struct RestartArgs {
    /// the apps to restart, as named in their masters' configs, or all
    #[argh(positional)]
    pub apps: Vec<String>,
    /// every app of this family (--family all: every app)
    #[argh(option)]
    pub family: Option<String>,
    /// with several apps: how many to work on at once (default 1, at
    /// most 16)
    #[argh(option, from_str_fn(crate::bulk::parse_parallel), default = "1")]
    pub parallel: usize,
    /// with several apps: go on past a failure instead of stopping there
    #[argh(switch)]
    pub keep_going: bool,
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// restart may still complete (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the restart and waits for it.
///
/// # Errors
///
/// As [`ask::each`].
pub fn run(args: &RestartArgs, socket: Option<&Path>) -> Result<(), Failure> {
    ask::each(
        &Selection::parse(&args.apps, args.family.as_deref())?,
        socket,
        Each {
            doing: "restart",
            verb: "restarted",
            timeout: args.timeout,
            plan: Plan {
                parallel: args.parallel,
                keep_going: args.keep_going,
            },
        },
        |app| ControlRequest::Restart { app },
    )
}
