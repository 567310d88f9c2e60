//! `ally-ctl`: the command-line client of `ally-master`.
//!
//! `ally-ctl reload web --wait` starts a new instance of the app `web` and
//! waits until it serves; `ally-ctl list` shows every app and instance,
//! `ally-ctl status web` one app in detail, `ally-ctl logs web -f` its log.
//! Run `ally-ctl --help` for the commands and exit codes.

#![forbid(unsafe_code)]

mod ask;
mod bulk;
mod cli;
mod client;
mod completions;
mod failure;
mod kill;
mod list;
mod logs;
mod masters;
mod reload;
mod reopen;
mod reread;
mod restart;
mod select;
mod start;
mod status;
mod stop;
mod style;
mod table;
mod units;
mod upgrade;
mod version;

use std::process::ExitCode;

use failure::{EXIT_OK, Failure};

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let args = match args {
        Ok(args) => args,
        Err(bad) => {
            return fail(&Failure::Usage(format!(
                "argument {bad:?} is not valid UTF-8"
            )));
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match cli::parse(&args) {
        Ok(cli) => match cli::run(cli) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(failure) => fail(&failure),
        },
        Err(exit) if exit.code == EXIT_OK => {
            print!("{}", exit.output);
            ExitCode::from(EXIT_OK)
        }
        Err(exit) => {
            eprintln!("{}", exit.output);
            ExitCode::from(exit.code)
        }
    }
}

/// Reports `failure` on stderr and returns its exit code.
fn fail(failure: &Failure) -> ExitCode {
    eprintln!("{}: {failure}", cli::PROGRAM);
    ExitCode::from(failure.exit_code())
}
