//! `ally-ctl reread`: read the master's config file again and apply it.

use std::path::Path;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};

use ally_proto::ControlRequest;

use crate::ask::{self, Ask};
use crate::failure::Failure;

/// read the master's config file again and apply it
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "reread",
    example = "ally-ctl reread",
    note = "new apps start, removed apps stop, and changed settings apply from an\n\
            app's next start (`ally-ctl reload APP` to apply them now). Prints what\n\
            changed. An invalid config changes nothing: the message names the\n\
            file, line and column."
)]
pub struct RereadArgs {
    /// give up after this many seconds (decimals allowed) and exit 5; the
    /// config may still be applied (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks for the reread and prints its summary.
///
/// # Errors
///
/// As [`ask::run`].
pub fn run(args: &RereadArgs, socket: Option<&Path>) -> Result<(), Failure> {
    ask::run(
        &Ask {
            request: ControlRequest::Reread,
            timeout: args.timeout,
            failed: "cannot reread the config",
            awaited: "the config to be applied",
            check: "ally-ctl list",
        },
        socket,
    )
}
