//! `ally-ctl logs APP [-f] [-n N]`: the last lines of an app's log, and
//! with `-f` the lines written after them.

use std::io::Write;
use std::path::Path;

use argh::{ArgsInfo, FromArgs};

use ally_proto::{ControlRequest, ControlResponse};

use crate::ask::unexpected;
use crate::client::Client;
use crate::failure::Failure;
use crate::masters::{self, Target};
use crate::select::Selection;

/// Lines shown without `-n`.
pub const DEFAULT_LINES: u32 = 20;

/// show the last lines of an app's log; with -f, keep showing new ones
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "logs",
    example = "ally-ctl logs web -n 100\nally-ctl logs web -f | grep -i error",
    note = "each line is `TIME APP#INSTANCE STREAM| text`, oldest first, with\n\
            STREAM stdout or stderr. With -f, ally-ctl runs until interrupted\n\
            (Ctrl-C), the reader of its output goes away (exit 0), or the master\n\
            does (exit 3).\n\
            With several apps (names, --family F, or all), the past lines of each\n\
            app are merged in time order (-n counts per app), and with -f each\n\
            app's new lines come as they are written, interleaved; the APP#ID in\n\
            each line tells them apart. -f ends when any master goes away."
)]
pub struct LogsArgs {
    /// the apps whose log to show, or all
    #[argh(positional)]
    pub apps: Vec<String>,
    /// every app of this family (--family all: every app)
    #[argh(option)]
    pub family: Option<String>,
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
    let selection = Selection::parse(&args.apps, args.family.as_deref())?;
    let targets = masters::resolve(&selection, socket, None)?;
    if let [one] = targets.as_slice() {
        let mut log = Log::open(one, args)?;
        loop {
            let lines = log.next()?;
            if !print(&lines)? || !args.follow {
                return Ok(());
            }
        }
    }
    // Every log is open, and its past lines read, before any is printed.
    let mut logs = Vec::with_capacity(targets.len());
    let mut past = Vec::new();
    for target in &targets {
        let mut log = Log::open(target, args)?;
        past.extend(log.next()?);
        logs.push(log);
    }
    // Lines start with their time, all written alike: sorting the text
    // sorts by time, and a stable sort keeps each app's order.
    past.sort_by(|a, b| time_of(a).cmp(time_of(b)));
    if !print(&past)? || !args.follow {
        return Ok(());
    }
    follow_all(logs)
}

/// The leading time of a log line.
fn time_of(line: &str) -> &str {
    line.split(' ').next().unwrap_or_default()
}

/// One app's log, as the master sends it.
struct Log {
    app: String,
    client: Client,
}

impl Log {
    /// Asks the master of `target` for its log.
    fn open(target: &Target, args: &LogsArgs) -> Result<Log, Failure> {
        let mut client = Client::connect(Some(&target.socket), None)?;
        client.send(&ControlRequest::Logs {
            app: target.app.clone(),
            lines: args.lines,
            follow: args.follow,
        })?;
        Ok(Log {
            app: target.app.clone(),
            client,
        })
    }

    /// The next lines.
    fn next(&mut self) -> Result<Vec<String>, Failure> {
        match self.client.recv()? {
            ControlResponse::LogLines(lines) => Ok(lines),
            ControlResponse::Error(f) => Err(Failure::from_master(
                &format!("cannot show the log of {}", self.app),
                &f,
            )),
            other => Err(unexpected(&other, "LogLines")),
        }
    }
}

/// Prints the new lines of every log as they come, one thread per log,
/// until one of them fails or the reader goes away.
fn follow_all(logs: Vec<Log>) -> Result<(), Failure> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut closers = Vec::with_capacity(logs.len());
    for log in &logs {
        closers.push(log.client.closer()?);
    }
    std::thread::scope(|scope| {
        for mut log in logs {
            let tx = tx.clone();
            scope.spawn(move || {
                loop {
                    let result = log.next();
                    let stop = result.is_err();
                    if tx.send(result).is_err() || stop {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut end = Ok(());
        for lines in &rx {
            match lines.and_then(|lines| print(&lines)) {
                Ok(true) => {}
                Ok(false) => break,
                Err(failure) => {
                    end = Err(failure);
                    break;
                }
            }
        }
        // Unblock the threads still reading their masters.
        for closer in &closers {
            let _ = closer.shutdown(std::net::Shutdown::Both);
        }
        end
    })
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
