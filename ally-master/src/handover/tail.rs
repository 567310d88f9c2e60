//! The options an upgrade appends to the master's original command line
//! (`--check-handover MEMFD` for the probe, the resume options for the new
//! image; [`super::exec`]), split off before the original line is parsed.
//!
//! They must be taken from the end rather than by the argument parser:
//! after `ally-master run ... -- CMD ARGS...` everything is the app's
//! command, so an option appended there would be read as one of its
//! arguments. The split is exact: the resume options are recognised only
//! as a run of known option-value pairs, with `--resume`, `--resume-exe`
//! and `--resume-fds` among them, that reaches the end of the line; the
//! probe's as the last two words. (So the command of `ally-master run`
//! must not itself end with `--check-handover N` or such a run: the master
//! would take them for an upgrade's.)

use std::os::fd::RawFd;

use super::exec::{CHECK_ARG, RESUME_ARG, ResumeArgs};

/// What follows the original command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: a master started by hand.
    None,
    /// `--check-handover MEMFD`: the probe of an upgrade.
    Check(RawFd),
    /// The resume options: an upgrade's new image.
    Resume(ResumeArgs),
}

/// Splits `argv` (program name first) into the length of its original
/// part and what follows it.
pub fn split(argv: &[String]) -> (usize, Tail) {
    let n = argv.len();
    if n >= 3
        && argv[n - 2] == CHECK_ARG
        && let Ok(fd) = argv[n - 1].parse()
    {
        return (n - 2, Tail::Check(fd));
    }
    // The last `--resume` from which the rest is exactly resume options
    // (`--resume-failed`'s text may itself read `--resume`).
    for at in (1..n).rev().filter(|&at| argv[at] == RESUME_ARG) {
        if let Some(args) = resume_args(&argv[at..]) {
            return (at, Tail::Resume(args));
        }
    }
    (n, Tail::None)
}

/// `args` as resume options, if they are nothing else: pairs of a known
/// option, each at most once, and its value, the required ones there.
fn resume_args(args: &[String]) -> Option<ResumeArgs> {
    if !args.len().is_multiple_of(2) {
        return None;
    }
    let mut out = ResumeArgs::default();
    fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(value?);
        Some(())
    }
    for pair in args.chunks(2) {
        let (option, value) = (pair[0].as_str(), &pair[1]);
        match option {
            RESUME_ARG => set(&mut out.memfd, value.parse().ok())?,
            "--resume-exe" => set(&mut out.exe, value.parse().ok())?,
            "--resume-way-back" => set(&mut out.way_back, value.parse().ok())?,
            "--resume-fds" => set(&mut out.fds, Some(value.clone()))?,
            "--resume-failed" => set(&mut out.failed, Some(value.clone()))?,
            _ => return None,
        }
    }
    let whole = out.memfd.is_some() && out.exe.is_some() && out.fds.is_some();
    whole.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn a_line_started_by_hand_has_no_tail() {
        let line = argv(&["ally-master", "--config", "a.toml"]);
        assert_eq!(split(&line), (3, Tail::None));
        let run = argv(&["ally-master", "run", "--", "app", "--resume", "x"]);
        assert_eq!(split(&run), (6, Tail::None));
    }

    #[test]
    fn the_probe_and_the_resume_options_come_off_the_end() {
        let probe = argv(&["ally-master", "run", "--", "app", "--check-handover", "7"]);
        assert_eq!(split(&probe), (4, Tail::Check(7)));
        let resumed = argv(&[
            "ally-master",
            "run",
            "--",
            "app",
            "--resume",
            "--resume",
            "5",
            "--resume-exe",
            "6",
            "--resume-fds",
            "8,9",
            "--resume-failed",
            "--resume",
        ]);
        let (at, tail) = split(&resumed);
        assert_eq!(at, 5, "the app's own `--resume` stays its argument");
        assert_eq!(
            tail,
            Tail::Resume(ResumeArgs {
                memfd: Some(5),
                exe: Some(6),
                way_back: None,
                fds: Some("8,9".into()),
                failed: Some("--resume".into()),
            })
        );
    }

    #[test]
    fn unknown_or_repeated_options_are_not_a_tail() {
        let unknown = argv(&["m", "--resume", "5", "--other", "1"]);
        assert_eq!(split(&unknown).1, Tail::None);
        let twice = argv(&[
            "m",
            "--resume",
            "5",
            "--resume-exe",
            "6",
            "--resume-exe",
            "7",
        ]);
        assert_eq!(split(&twice).1, Tail::None);
        let bad = argv(&["m", "--resume", "five"]);
        assert_eq!(split(&bad).1, Tail::None);
        let partial = argv(&["m", "--", "app", "--resume", "5"]);
        assert_eq!(split(&partial), (5, Tail::None));
    }
}
