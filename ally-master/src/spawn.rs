//! Starting a child without waiting for it, whatever the master's size.
//!
//! A child that must change its identity, session or descriptors between
//! fork and exec makes `std::process::Command` fork: the master's whole
//! address space is copied (page tables and all, a cost that grows with
//! its memory), and the loop waits until the child has exec'd. So every
//! child is started through the **launcher** instead: the ally-master
//! binary itself, `ally-master --launch FDS LISTEN_PID NOFILE UID GID DEATH --
//! PROGRAM ARGS...`, which `Command` can start with `posix_spawn` (a
//! `vfork`-like clone that copies nothing and returns once the launcher is
//! executing). The launcher, a fresh small process, then does the work in
//! order — a session of its own (`setsid`), the file-descriptor limit
//! given back, the passed descriptors placed at 3, 4, ..., the app's
//! groups, gid and uid, then the app's stop signal as its signal for the
//! master's death (`PR_SET_PDEATHSIG`; the master spawns from its loop
//! thread, whose end is the master's, but the kernel sends the signal
//! again each time it hands the orphan on to another dying thread, a log
//! writer's: the README says so) — and executes the program, with
//! `LISTEN_PID` set to its own pid when asked (the pid the program keeps).
//!
//! A program that cannot be executed (missing, not executable) is
//! reported by the launcher on its stderr — the instance's, so the reason
//! with its errno reaches the master's log and the failure message — and
//! it exits with [`EXEC_FAILED`]: the master learns it as it learns any
//! start failure, from the exit, without waiting for it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use rustix::process::{Resource, Rlimit, Signal};

use crate::sys;

/// The first argument that makes `ally-master` the launcher.
pub const LAUNCH_ARG: &str = "--launch";

/// The launcher's exit status when it cannot run the program (as a shell's
/// "command not found"); its stderr says why.
pub const EXEC_FAILED: u8 = 127;

/// What the launcher sets up before it executes the program.
#[derive(Debug, Default)]
pub struct Setup<'a> {
    /// Descriptors the program gets at 3, 4, ... (systemd's layout).
    pub fds: Vec<std::os::fd::BorrowedFd<'a>>,
    /// Whether to set `LISTEN_PID` to the program's pid.
    pub listen_pid: bool,
    /// The file-descriptor limit to give back, if the master raised its own.
    pub nofile: Option<Rlimit>,
    /// Run as this uid and gid (with no supplementary groups).
    pub identity: Option<(u32, u32)>,
    /// The signal the program gets when the master dies
    /// (`PR_SET_PDEATHSIG`), so that one that does not link ally drains
    /// and exits too instead of holding its sockets unsupervised.
    pub death_signal: Option<Signal>,
}

/// A command that runs `program` with `args` through the launcher, set up
/// as `setup` says; the caller adds the environment, working directory
/// and stdio, and spawns it. The returned descriptors are the ones the
/// launcher inherits: keep them until the command is spawned, then drop
/// them.
///
/// # Errors
///
/// If the descriptors cannot be duplicated.
pub fn command(
    program: &OsStr,
    args: &[impl AsRef<OsStr>],
    setup: &Setup<'_>,
) -> io::Result<(Command, Vec<OwnedFd>)> {
    let inherited = setup
        .fds
        .iter()
        .map(|fd| sys::dup_inheritable_above(fd, setup.fds.len()))
        .collect::<io::Result<Vec<_>>>()?;
    let numbers: Vec<String> = inherited.iter().map(sys::fd_number).collect();
    let number = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let nofile = setup.nofile.map_or_else(
        || "-".to_owned(),
        |l| format!("{}:{}", number(l.current), number(l.maximum)),
    );
    let (uid, gid) = match setup.identity {
        Some((uid, gid)) => (uid.to_string(), gid.to_string()),
        None => ("-".to_owned(), "-".to_owned()),
    };
    let death = setup.death_signal.map_or_else(
        || "-".to_owned(),
        |sig| format!("{}:{}", sig.as_raw(), std::process::id()),
    );
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(LAUNCH_ARG)
        .arg(if numbers.is_empty() {
            "-".to_owned()
        } else {
            numbers.join(",")
        })
        .arg(if setup.listen_pid { "1" } else { "0" })
        .arg(nofile)
        .arg(uid)
        .arg(gid)
        .arg(death)
        .arg("--")
        .arg(program)
        .args(args);
    Ok((cmd, inherited))
}

/// The launcher: `argv` is what follows [`LAUNCH_ARG`]. Returns only if it
/// cannot run the program.
pub fn launch(argv: &[OsString]) -> ExitCode {
    match Plan::parse(argv).and_then(|plan| plan.run()) {
        Ok(never) => match never {},
        Err(why) => {
            eprintln!("ally-master: {why}");
            ExitCode::from(EXEC_FAILED)
        }
    }
}

/// The launcher's arguments, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    fds: Vec<i32>,
    listen_pid: bool,
    nofile: Option<Rlimit>,
    identity: Option<(u32, u32)>,
    /// The death signal, and the master's pid it is meant for.
    death: Option<(i32, u32)>,
    program: OsString,
    args: Vec<OsString>,
}

/// Never returned: [`Plan::run`] only comes back with an error.
enum Never {}

impl Plan {
    fn parse(argv: &[OsString]) -> Result<Plan, String> {
        let text = |i: usize| {
            argv.get(i)
                .and_then(|a| a.to_str())
                .ok_or_else(|| format!("{LAUNCH_ARG}: argument {} is missing", i + 1))
        };
        let bad = |what: &str, v: &str| format!("{LAUNCH_ARG}: bad {what} `{v}`");
        let optional = |v: &str, what: &str| -> Result<Option<u64>, String> {
            match v {
                "-" => Ok(None),
                v => v.parse().map(Some).map_err(|_| bad(what, v)),
            }
        };
        let fds = match text(0)? {
            "-" => Vec::new(),
            list => list
                .split(',')
                .map(|n| {
                    n.parse::<i32>()
                        .ok()
                        .filter(|&n| n > 2)
                        .ok_or_else(|| bad("fd", n))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut sorted = fds.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("fd list (a descriptor twice)", text(0)?));
        }
        let listen_pid = match text(1)? {
            "0" => false,
            "1" => true,
            v => return Err(bad("LISTEN_PID switch", v)),
        };
        let nofile = match text(2)? {
            "-" => None,
            v => {
                let (cur, max) = v.split_once(':').ok_or_else(|| bad("limit", v))?;
                Some(Rlimit {
                    current: optional(cur, "limit")?,
                    maximum: optional(max, "limit")?,
                })
            }
        };
        let id = |i: usize| -> Result<Option<u32>, String> {
            let v = text(i)?;
            optional(v, "id")?
                .map(|n| u32::try_from(n).map_err(|_| bad("id", v)))
                .transpose()
        };
        let identity = match (id(3)?, id(4)?) {
            (Some(uid), Some(gid)) => Some((uid, gid)),
            (None, None) => None,
            _ => return Err(format!("{LAUNCH_ARG}: a uid needs a gid")),
        };
        let death = match text(5)? {
            "-" => None,
            v => {
                let (sig, pid) = v.split_once(':').ok_or_else(|| bad("death signal", v))?;
                let sig = sig.parse().map_err(|_| bad("death signal", v))?;
                let pid = pid.parse().map_err(|_| bad("death signal", v))?;
                Some((sig, pid))
            }
        };
        if argv.get(6).is_none_or(|a| a != "--") {
            return Err(format!("{LAUNCH_ARG}: `--` must come before the program"));
        }
        let (program, args) = argv[7..]
            .split_first()
            .ok_or_else(|| format!("{LAUNCH_ARG}: no program"))?;
        Ok(Plan {
            fds,
            listen_pid,
            nofile,
            identity,
            death,
            program: program.clone(),
            args: args.to_vec(),
        })
    }

    /// Sets the process up and executes the program; comes back only with
    /// the reason it could not.
    fn run(self) -> Result<Never, String> {
        rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
        if let Some(limit) = self.nofile {
            rustix::process::setrlimit(Resource::Nofile, limit)
                .map_err(|e| format!("setrlimit(RLIMIT_NOFILE): {e}"))?;
        }
        sys::place_passed_fds(&self.fds).map_err(|e| format!("placing descriptors: {e}"))?;
        if let Some((uid, gid)) = self.identity {
            // The launcher is one thread, so these per-thread calls are the
            // process's. Groups first: after the uid, none may be changed.
            if rustix::process::geteuid().is_root() {
                rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups: {e}"))?;
            }
            rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid))
                .map_err(|e| format!("setgid({gid}): {e}"))?;
            rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))
                .map_err(|e| format!("setuid({uid}): {e}"))?;
        }
        // After the uid: changing credentials clears the death signal.
        if let Some((raw, master)) = self.death {
            let signal = Signal::from_named_raw(raw).ok_or_else(|| format!("signal {raw}?"))?;
            rustix::process::set_parent_process_death_signal(Some(signal))
                .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
            // The master may have died before the call: then nothing would
            // ever send it.
            let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
            if parent != i32::try_from(master).ok() {
                return Err("the master died while starting this instance".to_owned());
            }
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if self.listen_pid {
            cmd.env("LISTEN_PID", std::process::id().to_string());
        }
        let error = cmd.exec();
        let hint = match self.identity {
            Some((uid, _)) if error.kind() == io::ErrorKind::PermissionDenied => {
                format!(" (it, and every directory above it, must be executable by uid {uid})")
            }
            _ => String::new(),
        };
        Err(format!(
            "cannot execute `{}`: {error}{hint}",
            self.program.to_string_lossy()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_round_trip_through_the_launchers_parser() {
        let plan = Plan::parse(&argv(&[
            "7,8",
            "1",
            "1024:4096",
            "65534",
            "65533",
            "15:42",
            "--",
            "/bin/app",
            "-x",
        ]))
        .unwrap();
        assert_eq!(
            plan,
            Plan {
                fds: vec![7, 8],
                listen_pid: true,
                nofile: Some(Rlimit {
                    current: Some(1024),
                    maximum: Some(4096)
                }),
                identity: Some((65534, 65533)),
                death: Some((15, 42)),
                program: "/bin/app".into(),
                args: vec!["-x".into()],
            }
        );
        let plan = Plan::parse(&argv(&["-", "0", "-", "-", "-", "-", "--", "app"])).unwrap();
        assert_eq!(
            (plan.fds.len(), plan.nofile, plan.identity),
            (0, None, None)
        );
        assert_eq!(plan.death, None);
    }

    #[test]
    fn bad_launcher_arguments_are_refused() {
        for bad in [
            &["2", "0", "-", "-", "-", "-", "--", "app"][..],
            &["7,7", "0", "-", "-", "-", "-", "--", "app"],
            &["-", "2", "-", "-", "-", "-", "--", "app"],
            &["-", "0", "x:1", "-", "-", "-", "--", "app"],
            &["-", "0", "-", "1", "-", "-", "--", "app"],
            &["-", "0", "-", "-", "-", "15", "--", "app"],
            &["-", "0", "-", "-", "-", "-", "app"],
            &["-", "0", "-", "-", "-", "-", "--"],
            &["-", "0"],
        ] {
            assert!(Plan::parse(&argv(bad)).is_err(), "{bad:?}");
        }
    }
}
