//! The exec of an upgrade and its command line: the master's original
//! command line, unchanged, then the resume options —
//!
//! ```text
//! ally-master --config ally.toml ... --resume MEMFD --resume-exe FD \
//!     [--resume-way-back FD] --resume-fds N,N,... [--resume-failed WHY]
//! ```
//!
//! so that `ps`, `pgrep -f 'ally-master --config'` and `/proc/PID/cmdline`
//! still show how the master was started. `MEMFD` holds the state,
//! `--resume-exe` is the binary being run (kept as the way back of the next
//! upgrade), `--resume-way-back` the binary to exec again with the same
//! state if this one cannot restore it, `--resume-fds` the descriptor table
//! the state names by index, and `--resume-failed` tells the old binary,
//! run again, why the new one gave up. `main` parses the whole line once
//! (the resume options are hidden options of its own); the original part
//! is what comes before `--resume`, which is always last.
//!
//! Only these descriptors have `FD_CLOEXEC` cleared, just before the exec;
//! everything else the master holds closes at the exec.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::sys;

/// The option that makes `ally-master` resume a handed-over state; it and
/// the other resume options always come after the original command line.
pub const RESUME_ARG: &str = "--resume";

/// The option that makes `ally-master` check a handover state and exit:
/// `--check-handover MEMFD` (the probe), after the original command line
/// too.
pub const CHECK_ARG: &str = "--check-handover";

/// The resume options of a command line, as `main` parsed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeArgs {
    /// `--resume`.
    pub memfd: Option<RawFd>,
    /// `--resume-exe`.
    pub exe: Option<RawFd>,
    /// `--resume-way-back`.
    pub way_back: Option<RawFd>,
    /// `--resume-fds`.
    pub fds: Option<String>,
    /// `--resume-failed`.
    pub failed: Option<String>,
}

/// The command line of a resumed master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The command line the master was first started with, program name
    /// first.
    pub original: Vec<String>,
    /// The state.
    pub memfd: RawFd,
    /// The binary this image runs.
    pub exe: RawFd,
    /// The binary to run again if this one cannot restore the state.
    pub way_back: Option<RawFd>,
    /// The descriptor table.
    pub fds: Vec<RawFd>,
    /// Why the image that ran before gave up, if it did.
    pub failed: Option<String>,
}

/// A descriptor number given on the command line: above stderr.
fn number(v: RawFd) -> Result<RawFd, String> {
    if v > 2 {
        Ok(v)
    } else {
        Err(format!("bad descriptor `{v}`"))
    }
}

impl Plan {
    /// The plan of `argv` (this process's whole command line), whose
    /// resume options `main` parsed into `args`.
    ///
    /// # Errors
    ///
    /// A missing or malformed option, or resume options that are not the
    /// last on the line.
    pub fn parse(argv: &[String], args: &ResumeArgs) -> Result<Plan, String> {
        let memfd = number(args.memfd.ok_or("--resume is missing")?)?;
        let fds = match args.fds.as_deref().ok_or("--resume-fds is missing")? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|v| {
                    v.parse::<RawFd>()
                        .map_err(|_| format!("bad descriptor `{v}`"))
                        .and_then(number)
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let mut plan = Plan {
            original: Vec::new(),
            memfd,
            exe: number(args.exe.ok_or("--resume-exe is missing")?)?,
            way_back: args.way_back.map(number).transpose()?,
            fds,
            failed: args.failed.clone(),
        };
        let suffix = plan.resume_args().len();
        let split = argv.len().checked_sub(suffix).filter(|&at| {
            at >= 1 && argv[at] == RESUME_ARG && argv[at..] == plan.resume_args()[..]
        });
        let at = split.ok_or("the resume options must be the last on the command line")?;
        plan.original = argv[..at].to_vec();
        Ok(plan)
    }

    /// The resume options, in the order they are written.
    fn resume_args(&self) -> Vec<String> {
        let mut args = vec![
            RESUME_ARG.to_owned(),
            self.memfd.to_string(),
            "--resume-exe".to_owned(),
            self.exe.to_string(),
        ];
        if let Some(fd) = self.way_back {
            args.extend(["--resume-way-back".to_owned(), fd.to_string()]);
        }
        let list: Vec<String> = self.fds.iter().map(ToString::to_string).collect();
        args.extend(["--resume-fds".to_owned(), list.join(",")]);
        if let Some(why) = &self.failed {
            args.extend(["--resume-failed".to_owned(), why.replace('\0', " ")]);
        }
        args
    }

    /// The whole command line: the original one, then the resume options.
    pub fn argv(&self) -> Vec<CString> {
        self.original
            .iter()
            .cloned()
            .chain(self.resume_args())
            .filter_map(|a| CString::new(a).ok())
            .collect()
    }
}

/// What one exec of an upgrade hands over: the descriptors themselves.
#[derive(Debug)]
pub struct Handover<'a> {
    /// The state.
    pub memfd: BorrowedFd<'a>,
    /// The binary to exec.
    pub exe: BorrowedFd<'a>,
    /// The binary to exec again if that one cannot restore the state.
    pub way_back: Option<BorrowedFd<'a>>,
    /// The descriptor table, in index order.
    pub fds: Vec<BorrowedFd<'a>>,
    /// Why the previous image gave up, if it did.
    pub failed: Option<String>,
    /// The master's original command line, program name first.
    pub original: &'a [String],
}

impl Handover<'_> {
    /// Its command line.
    pub fn plan(&self) -> Plan {
        Plan {
            original: self.original.to_vec(),
            memfd: self.memfd.as_raw_fd(),
            exe: self.exe.as_raw_fd(),
            way_back: self.way_back.map(|fd| fd.as_raw_fd()),
            fds: self.fds.iter().map(AsRawFd::as_raw_fd).collect(),
            failed: self.failed.clone(),
        }
    }

    fn inherited(&self) -> impl Iterator<Item = BorrowedFd<'_>> + '_ {
        [self.memfd, self.exe]
            .into_iter()
            .chain(self.way_back)
            .chain(self.fds.iter().copied())
    }
}

/// The environment of this process, for the exec (`NOTIFY_SOCKET` and
/// the rest kept as they are).
fn environment() -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

/// Execs `handover.exe` in place with the command line of `handover`,
/// after clearing `FD_CLOEXEC` on exactly the descriptors it names.
/// Returns only on failure, with every one of them close-on-exec again.
///
/// The caller has flushed its log sinks and blocked the handled signals.
pub fn exec(handover: &Handover<'_>) -> std::io::Error {
    let set = |inherit: bool| -> std::io::Result<()> {
        for fd in handover.inherited() {
            sys::set_inherited(fd, inherit)?;
        }
        Ok(())
    };
    if let Err(e) = set(true) {
        let _ = set(false);
        return e;
    }
    let argv = handover.plan().argv();
    let error = sys::exec_fd(handover.exe.as_fd(), &argv, &environment());
    let _ = set(false);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|&a| a.to_owned()).collect()
    }

    fn plan() -> Plan {
        Plan {
            original: argv(&["/usr/bin/ally-master", "--config", "--resume"]),
            memfd: 5,
            exe: 6,
            way_back: Some(7),
            fds: vec![8, 9],
            failed: Some("it broke".into()),
        }
    }

    fn strings(plan: &Plan) -> Vec<String> {
        plan.argv()
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect()
    }

    #[test]
    fn the_original_command_line_comes_first_and_parses_back() {
        let plan = plan();
        let line = strings(&plan);
        assert_eq!(line[..3], plan.original[..]);
        assert_eq!(
            line[3..],
            argv(&[
                "--resume",
                "5",
                "--resume-exe",
                "6",
                "--resume-way-back",
                "7",
                "--resume-fds",
                "8,9",
                "--resume-failed",
                "it broke"
            ])[..]
        );
        let args = ResumeArgs {
            memfd: Some(5),
            exe: Some(6),
            way_back: Some(7),
            fds: Some("8,9".into()),
            failed: Some("it broke".into()),
        };
        // `--resume` as a value of the original line is not taken for
        // the start of the resume options.
        assert_eq!(Plan::parse(&line, &args).unwrap(), plan);
    }

    #[test]
    fn resume_options_not_last_or_malformed_are_refused() {
        let args = ResumeArgs {
            memfd: Some(5),
            exe: Some(6),
            fds: Some(String::new()),
            ..ResumeArgs::default()
        };
        let ok = argv(&[
            "m",
            "--config",
            "a",
            "--resume",
            "5",
            "--resume-exe",
            "6",
            "--resume-fds",
            "",
        ]);
        assert_eq!(
            Plan::parse(&ok, &args).unwrap().original,
            argv(&["m", "--config", "a"])
        );
        let moved = argv(&[
            "m",
            "--resume",
            "5",
            "--resume-exe",
            "6",
            "--resume-fds",
            "",
            "--config",
            "a",
        ]);
        assert!(Plan::parse(&moved, &args).unwrap_err().contains("last"));
        let low = ResumeArgs {
            memfd: Some(2),
            ..args.clone()
        };
        assert!(Plan::parse(&ok, &low).is_err());
        let bad = ResumeArgs {
            fds: Some("8,x".into()),
            ..args.clone()
        };
        assert!(Plan::parse(&ok, &bad).is_err());
        let none = ResumeArgs { exe: None, ..args };
        assert!(
            Plan::parse(&ok, &none)
                .unwrap_err()
                .contains("--resume-exe")
        );
    }
}
