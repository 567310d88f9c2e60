//! `ally-ctl logs APP [-f] [-n N]`: the last lines of an app's log, and
//! with `-f` the lines written after them.

use std::io::Write;
use std::path::Path;

use argh::FromArgs;

use ally_proto::{ControlRequest, ControlResponse};

use crate::ask::unexpected;
use crate::client::Client;
use crate::failure::Failure;

/// Lines shown without `-n`.
pub const DEFAULT_LINES: u32 = 20;

/// show the last lines of an app's log; with -f, keep showing new ones
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "logs",
    example = "ally-ctl logs web -n 100\nally-ctl logs web -f | grep -i error",
    note = "each line is `TIME APP#INSTANCE STREAM| text`, oldest first, with\n\
            STREAM stdout or stderr. With -f, ally-ctl runs until interrupted\n\
            (Ctrl-C), the reader of its output goes away (exit 0), or the master\n\
            does (exit 3)."
)]
pub struct LogsArgs {
    /// the app whose log to show
    #[argh(positional)]
    pub app: String,
    /// keep printing lines as the app writes them
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// how many past lines to print first (default: 20; 0 for none)
    #[argh(option, short = 'n', default = "DEFAULT_LINES")]
    pub lines: u32,
}

/// Asks for the log and prints it as it comes.
///
/// # Errors
///
/// The master's refusal, and the connection's failures: with `-f`,
/// [`Failure::Unreachable`] when the master goes away.
pub fn run(args: &LogsArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let app = &args.app;
    let mut client = Client::connect(socket, None)?;
    client.send(&ControlRequest::Logs {
        app: app.clone(),
        lines: args.lines,
        follow: args.follow,
    })?;
    loop {
        let lines = match client.recv()? {
            ControlResponse::LogLines(lines) => lines,
            ControlResponse::Error(f) => {
                return Err(Failure::from_master(
                    &format!("cannot show the log of {app}"),
                    &f,
                ));
            }
            other => return Err(unexpected(&other, "LogLines")),
        };
        if !print(&lines)? || !args.follow {
            return Ok(());
        }
    }
}

/// Writes `lines` to stdout and flushes, so that each shows as it comes.
/// `false` if the reader went away (`ally-ctl logs -f web | head`).
///
/// # Errors
///
/// [`Failure::Failed`] if stdout cannot be written for another reason.
fn print(lines: &[String]) -> Result<bool, Failure> {
    let mut out = std::io::stdout().lock();
    let written = lines
        .iter()
        .try_for_each(|line| writeln!(out, "{}", line.trim_end_matches('\n')))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Failed(format!("cannot write to stdout: {e}"))),
    }
}
