//! `ally-ctl restart APP`: stop an app, then start it.

use std::path::Path;
use std::time::Duration;

use argh::FromArgs;

use ally_proto::ControlRequest;

use crate::ask::{self, Ask};
use crate::failure::Failure;

/// stop an app, then start it: not zero-downtime; use reload for that
#[derive(FromArgs, Debug, PartialEq)]
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
    /// the app to restart, as named in the master's config
    #[argh(positional)]
    pub app: String,
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// restart may still complete (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the restart and waits for it.
///
/// # Errors
///
/// As [`ask::run`].
pub fn run(args: &RestartArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let app = &args.app;
    ask::run(
        &Ask {
            request: ControlRequest::Restart { app: app.clone() },
            timeout: args.timeout,
            failed: &format!("cannot restart {app}"),
            awaited: &format!("{app} to restart"),
            check: &format!("ally-ctl status {app}"),
        },
        socket,
    )
}
