//! The exec of an upgrade and its command line:
//!
//! ```text
//! ally-master --resume MEMFD --exe FD [--way-back FD] --fds N,N,... [--handover-failed WHY]
//! ```
//!
//! `MEMFD` holds the state, `--exe` is the binary being run (kept as the
//! way back of the next upgrade), `--way-back` the binary to exec again
//! with the same state if this one cannot restore it, `--fds` the
//! descriptor table the state names by index, and `--handover-failed`
//! tells the old binary, run again, why the new one gave up.
//!
//! Only these descriptors have `FD_CLOEXEC` cleared, just before the exec;
//! everything else the master holds closes at the exec.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::sys;

/// The argument that makes `ally-master` resume a handed-over state.
pub const RESUME_ARG: &str = "--resume";

/// The argument that makes `ally-master` check a handover state and exit:
/// `--check-handover MEMFD` (the probe).
pub const CHECK_ARG: &str = "--check-handover";

/// The command line of a resumed master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
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

impl Plan {
    /// The arguments after [`RESUME_ARG`], parsed.
    ///
    /// # Errors
    ///
    /// A missing or malformed argument.
    pub fn parse(args: &[OsString]) -> Result<Plan, String> {
        let mut it = args
            .iter()
            .map(|a| a.to_str().ok_or("an argument is not UTF-8"));
        let number = |v: &str| {
            v.parse::<RawFd>()
                .ok()
                .filter(|&n| n > 2)
                .ok_or_else(|| format!("bad descriptor `{v}`"))
        };
        let memfd = number(it.next().ok_or("the memfd is missing")??)?;
        let (mut exe, mut way_back, mut fds, mut failed) = (None, None, None, None);
        while let Some(flag) = it.next() {
            let flag = flag?;
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))??;
            match flag {
                "--exe" => exe = Some(number(value)?),
                "--way-back" => way_back = Some(number(value)?),
                "--fds" if value.is_empty() => fds = Some(Vec::new()),
                "--fds" => {
                    fds = Some(
                        value
                            .split(',')
                            .map(number)
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                "--handover-failed" => failed = Some(value.to_owned()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(Plan {
            memfd,
            exe: exe.ok_or("--exe is missing")?,
            way_back,
            fds: fds.ok_or("--fds is missing")?,
            failed,
        })
    }

    /// The whole command line, program name first.
    pub fn argv(&self) -> Vec<CString> {
        let mut args = vec![
            "ally-master".to_owned(),
            RESUME_ARG.to_owned(),
            self.memfd.to_string(),
            "--exe".to_owned(),
            self.exe.to_string(),
        ];
        if let Some(fd) = self.way_back {
            args.extend(["--way-back".to_owned(), fd.to_string()]);
        }
        let list: Vec<String> = self.fds.iter().map(ToString::to_string).collect();
        args.extend(["--fds".to_owned(), list.join(",")]);
        if let Some(why) = &self.failed {
            args.extend(["--handover-failed".to_owned(), why.replace('\0', " ")]);
        }
        args.into_iter()
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
}

impl Handover<'_> {
    /// Its command line.
    pub fn plan(&self) -> Plan {
        Plan {
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
