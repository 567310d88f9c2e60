//! `ally-ctl kill APP [--signal SIG]`: send a signal to every live
//! instance of an app.

use std::path::Path;

use argh::{ArgsInfo, FromArgs};

use ally_proto::ControlRequest;
use rustix::process::Signal;

use crate::ask::{self, Each};
use crate::bulk::Plan;
use crate::failure::Failure;
use crate::select::Selection;

/// send a signal to every live instance of an app
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "kill",
    example = "ally-ctl kill web --signal usr1\nally-ctl kill web -s 9",
    note = "the signal is a name, with or without SIG and in any case (TERM,\n\
            SIGTERM, usr1), or a number (15). An unknown one is a usage error\n\
            (exit 2) that lists the names."
)]
pub struct KillArgs {
    /// the apps whose instances get the signal, or all
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
    /// the signal to send (default: TERM)
    #[argh(
        option,
        short = 's',
        from_str_fn(parse_signal),
        default = "Signal::TERM.as_raw()"
    )]
    pub signal: i32,
}

/// Sends the signal.
///
/// # Errors
///
/// As [`ask::each`].
pub fn run(args: &KillArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let signal = args.signal;
    ask::each(
        &Selection::parse(&args.apps, args.family.as_deref())?,
        socket,
        Each {
            doing: "signal",
            verb: "signalled",
            timeout: None,
            plan: Plan {
                parallel: args.parallel,
                keep_going: args.keep_going,
            },
        },
        |app| ControlRequest::Kill { app, signal },
    )
}

/// The signals known by name, as `kill -l` spells them without `SIG`.
const SIGNALS: [(&str, Signal); 29] = [
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("ILL", Signal::ILL),
    ("TRAP", Signal::TRAP),
    ("ABRT", Signal::ABORT),
    ("BUS", Signal::BUS),
    ("FPE", Signal::FPE),
    ("KILL", Signal::KILL),
    ("USR1", Signal::USR1),
    ("SEGV", Signal::SEGV),
    ("USR2", Signal::USR2),
    ("PIPE", Signal::PIPE),
    ("ALRM", Signal::ALARM),
    ("TERM", Signal::TERM),
    ("CHLD", Signal::CHILD),
    ("CONT", Signal::CONT),
    ("STOP", Signal::STOP),
    ("TSTP", Signal::TSTP),
    ("TTIN", Signal::TTIN),
    ("TTOU", Signal::TTOU),
    ("URG", Signal::URG),
    ("XCPU", Signal::XCPU),
    ("XFSZ", Signal::XFSZ),
    ("VTALRM", Signal::VTALARM),
    ("PROF", Signal::PROF),
    ("WINCH", Signal::WINCH),
    ("IO", Signal::IO),
    ("SYS", Signal::SYS),
];

/// Parses a signal name (`TERM`, `SIGTERM`, `usr1`) or number (`15`): the
/// value of `--signal`.
///
/// # Errors
///
/// A message for argh to show, naming the valid signals.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let known = || {
        let names: Vec<&str> = SIGNALS.iter().map(|(name, _)| *name).collect();
        names.join(" ")
    };
    if let Ok(number) = s.parse::<i32>() {
        return Signal::from_named_raw(number)
            .map(Signal::as_raw)
            .ok_or_else(|| {
                format!(
                    "{number} is not a signal number this system knows; use a name: {}",
                    known()
                )
            });
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, signal)| signal.as_raw())
        .ok_or_else(|| {
            format!(
                "unknown signal {s:?}; use a number or one of (with or without SIG, in \
                 any case): {}",
                known()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let term = Signal::TERM.as_raw();
        for s in ["TERM", "SIGTERM", "term", "sigterm", "SigTerm", "15"] {
            assert_eq!(parse_signal(s), Ok(term), "{s}");
        }
        assert_eq!(parse_signal("usr1"), Ok(Signal::USR1.as_raw()));
        assert_eq!(parse_signal("9"), Ok(Signal::KILL.as_raw()));
        assert_eq!(parse_signal("ALRM"), Ok(Signal::ALARM.as_raw()));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        for bad in ["", "SIG", "TERMINATE", "USR3", "0", "-15", "999", "1.5"] {
            let e = parse_signal(bad).unwrap_err();
            assert!(e.contains("HUP INT QUIT"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn every_name_is_distinct() {
        let mut numbers: Vec<i32> = SIGNALS.iter().map(|(_, s)| s.as_raw()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), SIGNALS.len());
    }
}
