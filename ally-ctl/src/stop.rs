//! `ally-ctl stop APP`: stop every instance of an app and keep it stopped.

use std::path::Path;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};

use ally_proto::ControlRequest;

use crate::ask::{self, Each};
use crate::bulk::Plan;
use crate::failure::Failure;
use crate::select::Selection;

/// stop every instance of an app and keep it stopped until started
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "stop",
    example = "ally-ctl stop web --timeout 60",
    note = "each instance gets its stop signal, then SIGKILL after the app's\n\
            stop_timeout. Exits 0 once no instance is left and the sockets its\n\
            instances asked for are closed. The app is not restarted until\n\
            `ally-ctl start`."
)]
pub struct StopArgs {
    /// the apps to stop, as named in their masters' configs, or all
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
    /// stop goes on (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the stop and waits for it.
///
/// # Errors
///
/// As [`ask::each`].
pub fn run(args: &StopArgs, socket: Option<&Path>) -> Result<(), Failure> {
    ask::each(
        &Selection::parse(&args.apps, args.family.as_deref())?,
        socket,
        Each {
            doing: "stop",
            verb: "stopped",
            timeout: args.timeout,
            plan: Plan {
                parallel: args.parallel,
                keep_going: args.keep_going,
            },
        },
        |app| ControlRequest::Stop { app },
    )
}
