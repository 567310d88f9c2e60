//! `ally-ctl reopen`: reopen the master's log files.

use std::path::Path;

use argh::{ArgsInfo, FromArgs};

use ally_proto::ControlRequest;

use crate::ask::{self, Ask};
use crate::failure::Failure;

/// reopen every log file of the master, e.g. after logrotate moved them
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "reopen",
    example = "ally-ctl reopen",
    note = "for a logrotate postrotate script: the master keeps writing to the\n\
            moved files until they are reopened."
)]
pub struct ReopenArgs {}

/// Asks for the reopen.
///
/// # Errors
///
/// As [`ask::run`].
pub fn run(_args: &ReopenArgs, socket: Option<&Path>) -> Result<(), Failure> {
    ask::run(
        &Ask {
            request: ControlRequest::Reopen,
            timeout: None,
            failed: "cannot reopen the log files",
            awaited: "the log files to be reopened",
            check: "ally-ctl list",
        },
        socket,
    )
}
