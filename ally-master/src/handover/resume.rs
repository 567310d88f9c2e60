//! `ally-master --resume ...` and `--check-handover MEMFD`: the new
//! image's side of an upgrade.
//!
//! Resuming: every descriptor on the command line is taken (they were made
//! close-on-exec again by `main`'s first step, as every inherited one is),
//! the state read from the memfd and restored. If that fails, the binary
//! given as `--way-back` (the old one) is exec'd with the same state and
//! why; it resumes as if the upgrade had not happened, and tells the
//! upgrade's waiter.

use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;

use super::exec::{self, Handover, Plan, ResumeArgs};
use super::fds::Import;
use super::{HandoverError, decode, read_memfd};
use crate::event_loop::{Exe, Master};
use crate::version::{RESTORE_FAULT, VERSION};
use crate::{log, signals, sys};

/// `--check-handover MEMFD`: prints `ok VERSION` and exits 0 if this
/// build can take the state in the memfd, else says why and exits 1.
pub fn check(raw: i32) -> ExitCode {
    let result = (|| {
        let fd =
            sys::adopt_fd(raw).map_err(|e| HandoverError::Io(format!("descriptor {raw}"), e))?;
        decode(&read_memfd(&fd)?)
    })();
    match result {
        Ok(_) => {
            println!("{}{VERSION}", super::probe::OK_PREFIX);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ally-master {VERSION}: {e}");
            ExitCode::from(1)
        }
    }
}

/// `... --resume ...`: serves on with the handed-over state, or goes back
/// to the old binary. `argv` is the whole command line, `args` its resume
/// options.
pub fn main(argv: &[String], args: &ResumeArgs) -> ExitCode {
    let plan = match Plan::parse(argv, args) {
        Ok(plan) => plan,
        Err(why) => {
            eprintln!("ally-master: {}: {why}", exec::RESUME_ARG);
            return ExitCode::from(2);
        }
    };
    let adopt =
        |raw| sys::adopt_fd(raw).map_err(|e| HandoverError::Io(format!("descriptor {raw}"), e));
    let taken = (|| -> Result<_, HandoverError> {
        let memfd = adopt(plan.memfd)?;
        let exe = adopt(plan.exe)?;
        let way_back = plan.way_back.map(adopt).transpose()?;
        let fds = plan
            .fds
            .iter()
            .map(|&raw| adopt(raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((memfd, exe, way_back, Import::new(fds)))
    })();
    let (memfd, exe, way_back, mut fds) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            eprintln!("ally-master: cannot take the handed-over descriptors: {e}");
            return ExitCode::from(1);
        }
    };
    let signals = match signals::Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            let why = format!("cannot install signal handlers: {e}");
            return way_back_or_exit(&plan, &memfd, way_back.as_ref(), &fds, &why);
        }
    };
    let restored = (|| {
        let snap = decode(&read_memfd(&memfd)?)?;
        if RESTORE_FAULT {
            return Err(HandoverError::Restore(
                "this build fails every restore on purpose (ALLY_HANDOVER_RESTORE_FAULT)".into(),
            ));
        }
        let from = snap.from_version.clone();
        let waiter = snap.upgrade_waiter;
        let exe = Exe {
            fd: exe
                .try_clone()
                .map_err(|e| HandoverError::Io("dup".into(), e))?,
            path: snap.exe_path.clone(),
            argv: plan.original.clone(),
        };
        Ok((Master::restore(snap, &mut fds, signals, exe)?, from, waiter))
    })();
    match restored {
        Ok((mut master, from, waiter)) => {
            // The originals: every one was claimed as a duplicate.
            drop((fds, memfd, way_back, exe));
            if signals::take_pending_upgrade() {
                log!("SIGUSR2 during the exec: it joins the upgrade just done");
            }
            if let Err(e) = signals::unblock() {
                log!("cannot unblock signals after the upgrade: {e}");
            }
            match master.run_resumed(&from, plan.failed, waiter) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log!("event loop failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            let why = format!("ally-master {VERSION} could not take over: {e}");
            way_back_or_exit(&plan, &memfd, way_back.as_ref(), &fds, &why)
        }
    }
}

/// Execs `way_back` with the same state and `why`; without one (this is
/// the old binary already), or if that fails, there is nothing left to
/// serve with: exits 1.
fn way_back_or_exit(
    plan: &Plan,
    memfd: &OwnedFd,
    way_back: Option<&OwnedFd>,
    fds: &Import,
    why: &str,
) -> ExitCode {
    let Some(old) = way_back else {
        eprintln!("ally-master: {why}; no way back left, exiting");
        return ExitCode::from(1);
    };
    eprintln!("ally-master: {why}; going back to the previous binary");
    let handover = Handover {
        memfd: memfd.as_fd(),
        exe: old.as_fd(),
        way_back: None,
        fds: fds.originals().collect(),
        failed: Some(why.to_owned()),
        original: &plan.original,
    };
    let error = exec::exec(&handover);
    eprintln!("ally-master: the way back failed too ({error}); exiting");
    ExitCode::from(1)
}
