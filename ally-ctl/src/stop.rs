//! `ally-ctl stop APP`: stop every instance of an app and keep it stopped.

use std::path::Path;
use std::time::Duration;

use argh::FromArgs;

use ally_proto::ControlRequest;

use crate::ask::{self, Ask};
use crate::failure::Failure;

/// stop every instance of an app and keep it stopped until started
#[derive(FromArgs, Debug, PartialEq)]
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
    /// the app to stop, as named in the master's config
    #[argh(positional)]
    pub app: String,
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// stop goes on (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the stop and waits for it.
///
/// # Errors
///
/// As [`ask::run`].
pub fn run(args: &StopArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let app = &args.app;
    ask::run(
        &Ask {
            request: ControlRequest::Stop { app: app.clone() },
            timeout: args.timeout,
            failed: &format!("cannot stop {app}"),
            awaited: &format!("{app} to stop"),
            check: &format!("ally-ctl status {app}"),
        },
        socket,
    )
}
