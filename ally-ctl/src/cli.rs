//! The command line: global options, the subcommands, and how a parse that
//! stops early (`--help`, a usage error) maps to an exit code.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use argh::{ArgsInfo, EarlyExit, FromArgs};

use crate::failure::{EXIT_OK, EXIT_USAGE, Failure};
use crate::{
    completions, kill, list, logs, reload, reopen, reread, restart, start, status, stop, upgrade,
    version,
};

/// The program name shown in help and usage messages.
pub const PROGRAM: &str = "ally-ctl";

/// control a running ally-master: reload apps without downtime, start, stop
/// and inspect them, follow their logs
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    example = "ally-ctl reload web --wait\nally-ctl list\nally-ctl status web\nally-ctl logs web -f\n\
               ally-ctl reload --family payments --keep-going\n\
               ally-ctl --socket /run/ally/web.sock list",
    note = "without --socket, ally-ctl asks every master whose *.sock is in the\n\
            runtime directory: $ALLY_RUNTIME_DIR, else /run/ally for root, else\n\
            $XDG_RUNTIME_DIR/ally. list shows all their apps; a command on apps\n\
            finds the master of each by name; reread, reopen, upgrade and version\n\
            need the one master, or --socket. --socket goes before the command.\n\
            Apps are named one or several at a time, by --family NAME, or all.\n\
            A command on several apps prints one line per app and a summary and\n\
            exits with the code of the first app that failed (0 if none did).\n\
            Exit status 0 means success.",
    error_code(
        1,
        "the operation failed (a reload rolled back, an app did not start; the message says \
         why); with several apps, the first failure's code is the command's"
    ),
    error_code(2, "usage error"),
    error_code(
        3,
        "cannot reach a master (none running, connection lost, several and no --socket for \
         a command not about apps, the socket is served by a uid other than root or yours, \
         or a master that did not answer may run the app named); for logs -f, the master \
         went away"
    ),
    error_code(
        4,
        "the master refused the request (unknown app, not permitted, version mismatch, bad \
         request, shutting down, limit exceeded), or no master or several run the app named"
    ),
    error_code(5, "--timeout elapsed; the operation may still complete"),
    error_code(6, "protocol error: malformed or unexpected reply")
)]
pub struct Cli {
    /// path of the master's control socket, relative to the current
    /// directory (default: every *.sock in the runtime directory)
    #[argh(option)]
    pub socket: Option<PathBuf>,
    /// what to do
    #[argh(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(subcommand)]
pub enum Command {
    /// `list`.
    List(list::ListArgs),
    /// `status`.
    Status(status::StatusArgs),
    /// `reload`.
    Reload(reload::ReloadArgs),
    /// `start`.
    Start(start::StartArgs),
    /// `stop`.
    Stop(stop::StopArgs),
    /// `restart`.
    Restart(restart::RestartArgs),
    /// `kill`.
    Kill(kill::KillArgs),
    /// `logs`.
    Logs(logs::LogsArgs),
    /// `reread`.
    Reread(reread::RereadArgs),
    /// `reopen`.
    Reopen(reopen::ReopenArgs),
    /// `version`.
    Version(version::VersionArgs),
    /// `upgrade`.
    Upgrade(upgrade::UpgradeArgs),
    /// `completions`.
    Completions(completions::CompletionsArgs),
}

/// A parse that ends the program before any command runs.
#[derive(Debug, PartialEq, Eq)]
pub struct Exit {
    /// Text to show: help on stdout, a usage error on stderr.
    pub output: String,
    /// [`EXIT_OK`] for `--help`, [`EXIT_USAGE`] for a usage error.
    pub code: u8,
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// [`Exit`] for `--help` and for usage errors.
pub fn parse(args: &[&str]) -> Result<Cli, Exit> {
    Cli::from_args(&[PROGRAM], args).map_err(|EarlyExit { output, status }| match status {
        Ok(()) => Exit {
            output,
            code: EXIT_OK,
        },
        Err(()) => Exit {
            output: format!(
                "{}\nRun {PROGRAM} --help for more information.",
                output.trim_end()
            ),
            code: EXIT_USAGE,
        },
    })
}

/// Runs the parsed command.
///
/// # Errors
///
/// The [`Failure`] that decides the exit code.
pub fn run(cli: Cli) -> Result<(), Failure> {
    // Resolved once, at start: messages name the socket by its full path.
    let socket = cli
        .socket
        .map(|path| {
            std::path::absolute(&path)
                .map_err(|e| Failure::Usage(format!("--socket {}: {e}", path.display())))
        })
        .transpose()?;
    let socket = socket.as_deref();
    match cli.command {
        Command::List(args) => list::run(&args, socket),
        Command::Status(args) => status::run(&args, socket),
        Command::Reload(args) => reload::run(&args, socket),
        Command::Start(args) => start::run(&args, socket),
        Command::Stop(args) => stop::run(&args, socket),
        Command::Restart(args) => restart::run(&args, socket),
        Command::Kill(args) => kill::run(&args, socket),
        Command::Logs(args) => logs::run(&args, socket),
        Command::Reread(args) => reread::run(&args, socket),
        Command::Reopen(args) => reopen::run(&args, socket),
        Command::Version(args) => version::run(&args, socket),
        Command::Upgrade(args) => upgrade::run(&args, socket),
        Command::Completions(args) => completions::run(&args),
    }
}

/// Parses a positive number of seconds, such as `30` or `0.5`: the value
/// of `--timeout`.
///
/// # Errors
///
/// A message for argh to show.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            format!("expected a number of seconds above zero, e.g. 30 or 0.5, not {s:?}")
        })
}

/// Writes `text` and a newline to stdout.
///
/// A reader that went away (`ally-ctl list | head -1`) is not an error.
///
/// # Errors
///
/// [`Failure::Failed`] if stdout cannot be written for another reason.
pub fn say(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{
        EXIT_FAILED, EXIT_PROTOCOL, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_UNREACHABLE,
    };

    fn names(apps: &[&str]) -> Vec<String> {
        apps.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn parses_reload() {
        let cli = parse(&[
            "--socket",
            "/s",
            "reload",
            "web",
            "--wait",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(cli.socket, Some(PathBuf::from("/s")));
        assert_eq!(
            cli.command,
            Command::Reload(reload::ReloadArgs {
                apps: names(&["web"]),
                family: None,
                parallel: 1,
                keep_going: false,
                wait: true,
                timeout: Some(Duration::from_millis(2500)),
            })
        );
        let cli = parse(&["reload", "web", "api", "--parallel", "2", "--keep-going"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Reload(reload::ReloadArgs {
                apps: names(&["web", "api"]),
                family: None,
                parallel: 2,
                keep_going: true,
                wait: false,
                timeout: None,
            })
        );
        let cli = parse(&["reload", "--family", "payments"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Reload(reload::ReloadArgs {
                apps: Vec::new(),
                family: Some("payments".into()),
                parallel: 1,
                keep_going: false,
                wait: false,
                timeout: None,
            })
        );
    }

    #[test]
    fn parses_list_and_version() {
        let cli = parse(&["list", "--json"]).unwrap();
        assert_eq!(
            cli.command,
            Command::List(list::ListArgs {
                apps: Vec::new(),
                family: None,
                json: true,
                names: false,
                families: false,
                timeout: None
            })
        );
        let cli = parse(&["list", "web", "--family", "f"]).unwrap();
        assert_eq!(
            cli.command,
            Command::List(list::ListArgs {
                apps: names(&["web"]),
                family: Some("f".into()),
                json: false,
                names: false,
                families: false,
                timeout: None
            })
        );
        let cli = parse(&["version"]).unwrap();
        assert_eq!(cli.command, Command::Version(version::VersionArgs {}));
    }

    #[test]
    fn parses_the_app_commands() {
        let secs = |s| Some(Duration::from_secs(s));
        let cases = [
            (
                &["status", "web", "api"][..],
                Command::Status(status::StatusArgs {
                    apps: names(&["web", "api"]),
                    family: None,
                    timeout: None,
                }),
            ),
            (
                &["start", "web", "--timeout", "3"],
                Command::Start(start::StartArgs {
                    apps: names(&["web"]),
                    family: None,
                    parallel: 1,
                    keep_going: false,
                    timeout: secs(3),
                }),
            ),
            (
                &["stop", "--family", "all", "--keep-going"],
                Command::Stop(stop::StopArgs {
                    apps: Vec::new(),
                    family: Some("all".into()),
                    parallel: 1,
                    keep_going: true,
                    timeout: None,
                }),
            ),
            (
                &["restart", "web", "--timeout", "4", "--parallel", "3"],
                Command::Restart(restart::RestartArgs {
                    apps: names(&["web"]),
                    family: None,
                    parallel: 3,
                    keep_going: false,
                    timeout: secs(4),
                }),
            ),
            (
                &["kill", "all"],
                Command::Kill(kill::KillArgs {
                    apps: names(&["all"]),
                    family: None,
                    parallel: 1,
                    keep_going: false,
                    signal: rustix::process::Signal::TERM.as_raw(),
                }),
            ),
            (
                &["kill", "web", "--signal", "SIGUSR1"],
                Command::Kill(kill::KillArgs {
                    apps: names(&["web"]),
                    family: None,
                    parallel: 1,
                    keep_going: false,
                    signal: rustix::process::Signal::USR1.as_raw(),
                }),
            ),
            (
                &["logs", "web"],
                Command::Logs(logs::LogsArgs {
                    apps: names(&["web"]),
                    family: None,
                    follow: false,
                    lines: logs::DEFAULT_LINES,
                }),
            ),
            (
                &["logs", "web", "api", "-f", "-n", "5"],
                Command::Logs(logs::LogsArgs {
                    apps: names(&["web", "api"]),
                    family: None,
                    follow: true,
                    lines: 5,
                }),
            ),
            (
                &["logs", "--follow", "--family", "pay"],
                Command::Logs(logs::LogsArgs {
                    apps: Vec::new(),
                    family: Some("pay".into()),
                    follow: true,
                    lines: 20,
                }),
            ),
            (
                &["reread", "--timeout", "1"],
                Command::Reread(reread::RereadArgs { timeout: secs(1) }),
            ),
            (&["reopen"], Command::Reopen(reopen::ReopenArgs {})),
        ];
        for (args, command) in cases {
            assert_eq!(parse(args).map(|cli| cli.command), Ok(command), "{args:?}");
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &[][..],
            &["reload", "web", "--timeout", "0"],
            &["reload", "web", "--parallel", "0"],
            &["reload", "web", "--parallel", "17"],
            &["reload", "--family"],
            &["reload", "web", "--timeout", "soon"],
            &["list", "--jsn"],
            &["stop", "web", "--timeout", "-1"],
            &["restart", "web", "--wait"],
            &["kill", "web", "--signal", "TERMINATE"],
            &["kill", "web", "--signal", "0"],
            &["kill", "web", "--signal"],
            &["logs", "web", "-n", "-1"],
            &["logs", "web", "-n", "many"],
            &["reread", "web"],
            &["reopen", "--timeout", "1"],
            &["frobnicate"],
            &["--socket"],
        ] {
            let exit = parse(args).unwrap_err();
            assert_eq!(exit.code, EXIT_USAGE, "{args:?}: {}", exit.output);
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "", "1s", "NaN", "inf", "1e300"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn help_exits_0() {
        for args in [&["--help"][..], &["reload", "--help"], &["help", "list"]] {
            let exit = parse(args).unwrap_err();
            assert_eq!(exit.code, EXIT_OK, "{args:?}: {}", exit.output);
        }
    }

    #[test]
    fn help_lists_every_command() {
        let help = parse(&["--help"]).unwrap_err().output;
        for command in [
            "list",
            "status",
            "reload",
            "start",
            "stop",
            "restart",
            "kill",
            "logs",
            "reread",
            "reopen",
            "version",
            "upgrade",
            "completions",
        ] {
            assert!(
                help.contains(&format!("\n  {command} ")),
                "{command} missing:\n{help}"
            );
            let exit = parse(&[command, "--help"]).unwrap_err();
            assert_eq!(exit.code, EXIT_OK, "{command}: {}", exit.output);
            assert!(exit.output.contains("Examples:"), "{}", exit.output);
        }
    }

    #[test]
    fn help_lists_every_exit_code() {
        let help = parse(&["--help"]).unwrap_err().output;
        for code in [
            EXIT_FAILED,
            EXIT_USAGE,
            EXIT_UNREACHABLE,
            EXIT_REFUSED,
            EXIT_TIMEOUT,
            EXIT_PROTOCOL,
        ] {
            assert!(
                help.contains(&format!("\n  {code} ")),
                "{code} missing:\n{help}"
            );
        }
    }
}
