//! `ally-ctl start APP`: start a stopped or failed app.

use std::path::Path;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};

use ally_proto::ControlRequest;

use crate::ask::{self, Each};
use crate::bulk::Plan;
use crate::failure::Failure;
use crate::select::Selection;

/// start a stopped or failed app and wait until an instance of it is main
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "start",
    example = "ally-ctl start web --timeout 60",
    note = "exits 0 once an instance of the app is main, 1 if it could not start\n\
            (the message says why). A failed app stays failed until started."
)]
pub struct StartArgs {
    /// the apps to start, as named in their masters' configs, or all
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
    /// start may still complete (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the start and waits for it.
///
/// # Errors
///
/// As [`ask::each`].
pub fn run(args: &StartArgs, socket: Option<&Path>) -> Result<(), Failure> {
    ask::each(
        &Selection::parse(&args.apps, args.family.as_deref())?,
        socket,
        Each {
            doing: "start",
            verb: "started",
            timeout: args.timeout,
            plan: Plan {
                parallel: args.parallel,
                keep_going: args.keep_going,
            },
        },
        |app| ControlRequest::Start { app },
    )
}
