//! `ally-ctl start APP`: start a stopped or failed app.

use std::path::Path;
use std::time::Duration;

use argh::FromArgs;

use ally_proto::ControlRequest;

use crate::ask::{self, Ask};
use crate::failure::Failure;

/// start a stopped or failed app and wait until an instance of it is main
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "start",
    example = "ally-ctl start web --timeout 60",
    note = "exits 0 once an instance of the app is main, 1 if it could not start\n\
            (the message says why). A failed app stays failed until started."
)]
pub struct StartArgs {
    /// the app to start, as named in the master's config
    #[argh(positional)]
    pub app: String,
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// start may still complete (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the start and waits for it.
///
/// # Errors
///
/// As [`ask::run`].
pub fn run(args: &StartArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let app = &args.app;
    ask::run(
        &Ask {
            request: ControlRequest::Start { app: app.clone() },
            timeout: args.timeout,
            failed: &format!("cannot start {app}"),
            awaited: &format!("{app} to start"),
            check: &format!("ally-ctl status {app}"),
        },
        socket,
    )
}
