//! Running the path-socket helper ([`crate::path_socket`]) from the master:
//! spawned under an app's identity, its report read without blocking, and
//! every helper not yet reaped kept on record, so that the reaper never
//! takes one for an instance and a helper is only ever killed while its pid
//! is still its own.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::limits::{HELPER_EXIT_POLL, MAX_HELPER_REPORT};
use crate::path_socket::{HELPER_ARG, Job, Outcome};
use crate::spawn;

/// Pids of helpers spawned and not yet reaped. The master is one thread;
/// the lock only makes the record a safe static.
static OUTSTANDING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn outstanding() -> MutexGuard<'static, BTreeSet<i32>> {
    OUTSTANDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who a helper runs as: the user and group of an app's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A helper whose report the master waits for.
#[derive(Debug)]
pub struct Helper {
    pid: Pid,
    report: OwnedFd,
    read: Vec<u8>,
    /// When it is killed and its job failed.
    pub deadline: Instant,
    done: bool,
}

impl AsFd for Helper {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.report.as_fd()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.done {
            kill(self.pid);
        }
    }
}

impl Helper {
    /// Starts a helper for `job` as `owner` (`None`: the master's own
    /// user), with `socket` at fd 3, to be answered by `deadline`.
    ///
    /// # Errors
    ///
    /// If it cannot be spawned.
    pub fn start(
        job: &Job,
        socket: Option<&OwnedFd>,
        owner: Option<Owner>,
        deadline: Instant,
    ) -> io::Result<Helper> {
        let (pid, report) = spawn(job, socket, owner, true)?;
        let report = report.ok_or_else(|| io::Error::other("the helper has no stdout"))?;
        let flags = rustix::fs::fcntl_getfl(&report)?;
        rustix::fs::fcntl_setfl(&report, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(Helper {
            pid,
            report,
            read: Vec::new(),
            deadline,
            done: false,
        })
    }

    /// Reads what the helper wrote, without blocking; its outcome once its
    /// report is complete (or it closed its stdout without one).
    pub fn read(&mut self) -> Option<Outcome> {
        let mut buf = [0u8; 512];
        loop {
            match rustix::io::read(&self.report, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.read.extend_from_slice(&buf[..n]);
                    if self.read.contains(&b'\n') || self.read.len() >= MAX_HELPER_REPORT {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return None,
                Err(e) => return Some(Outcome::Failed(format!("cannot read its report: {e}"))),
            }
        }
        self.done = true;
        Some(Outcome::decode(&self.read))
    }

    /// Runs `job` to completion, waiting at most `timeout` (the helper is
    /// killed then), and reaps it. Blocks the caller: for the sockets of
    /// the config, bound at start and on `reread`.
    pub fn run(
        job: &Job,
        socket: Option<&OwnedFd>,
        owner: Option<Owner>,
        timeout: Duration,
    ) -> Outcome {
        let deadline = Instant::now() + timeout;
        let mut helper = match Helper::start(job, socket, owner, deadline) {
            Ok(helper) => helper,
            Err(e) => return Outcome::Failed(format!("cannot start the helper: {e}")),
        };
        let outcome = loop {
            if let Some(outcome) = helper.read() {
                break outcome;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break timed_out(timeout);
            }
            let mut fds = [PollFd::new(&helper, PollFlags::IN)];
            let wait = Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => break Outcome::Failed(format!("cannot wait for the helper: {e}")),
            }
        };
        let pid = helper.pid;
        drop(helper);
        reap(pid);
        outcome
    }
}

/// The outcome of a helper that did not answer within `timeout`.
pub fn timed_out(timeout: Duration) -> Outcome {
    Outcome::Failed(format!(
        "the file-system work did not finish within {timeout:?} (a slow or hung file system?)"
    ))
}

/// Starts a helper for `job` as `owner` and does not wait for it; its
/// errors go to the master's stderr. [`wait_outstanding`] waits for it at
/// exit.
///
/// # Errors
///
/// If it cannot be spawned.
pub fn detach(job: &Job, owner: Option<Owner>) -> io::Result<()> {
    spawn(job, None, owner, false).map(drop)
}

/// Spawns `/proc/self/exe HELPER_ARG JOB...` as `owner`, in its own session,
/// with a clean environment, stdin from /dev/null and `socket` at fd 3;
/// returns its pid and, with `report`, its stdout (else /dev/null, and its
/// stderr is the master's).
fn spawn(
    job: &Job,
    socket: Option<&OwnedFd>,
    owner: Option<Owner>,
    report: bool,
) -> io::Result<(Pid, Option<OwnedFd>)> {
    let mut helper_args = vec![OsString::from(HELPER_ARG)];
    helper_args.extend(job.args());
    let setup = spawn::Setup {
        fds: socket.map(AsFd::as_fd).into_iter().collect(),
        identity: owner.map(|o| (o.uid, o.gid)),
        ..spawn::Setup::default()
    };
    let (mut cmd, inherited) = spawn::command("/proc/self/exe".as_ref(), &helper_args, &setup)?;
    // Its stderr is the master's: where the launcher says why it could not
    // run the helper as `owner`.
    cmd.env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if report {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null());
    }
    let mut record = outstanding();
    let mut child = cmd.spawn()?;
    drop(inherited);
    let raw = i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| io::Error::other("child has pid 0"))?;
    record.insert(raw);
    // The master reaps every child itself; `Child` holds nothing else.
    let out = child.stdout.take().map(OwnedFd::from);
    drop(child);
    Ok((pid, out))
}

/// SIGKILLs helper `pid`, if it is not reaped yet (so the pid is still its).
fn kill(pid: Pid) {
    if outstanding().contains(&pid.as_raw_nonzero().get()) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
}

/// Waits for helper `pid` to exit and reaps it.
fn reap(pid: Pid) {
    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
    reaped(pid);
}

/// Process `pid` was reaped: whether it was a helper (then it is off the
/// record, and no instance).
pub fn reaped(pid: Pid) -> bool {
    outstanding().remove(&pid.as_raw_nonzero().get())
}

/// Waits, at most `limit`, for every helper still running (the master is
/// exiting: the socket files it removes should be gone when it has).
pub fn wait_outstanding(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut record = outstanding();
        record.retain(|&raw| {
            let Some(pid) = Pid::from_raw(raw) else {
                return false;
            };
            matches!(
                rustix::process::waitpid(Some(pid), WaitOptions::NOHANG),
                Ok(None)
            )
        });
        if record.is_empty() || Instant::now() >= deadline {
            return;
        }
        drop(record);
        std::thread::sleep(HELPER_EXIT_POLL);
    }
}
