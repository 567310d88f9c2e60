//! The probe of an upgrade: the new binary, run as a child with
//! `--check-handover`, reads the very state about to be handed over and
//! says whether it can take it, before anything is exec'd in place.
//!
//! It runs beside the loop: its output is read when poll says so, its exit
//! is seen by the loop's reaper, and it is killed at its deadline. What
//! it runs is the descriptor of the new binary that the exec would use,
//! so what is probed is what is executed.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use rustix::process::{Pid, Signal, WaitStatus};

use crate::instance::describe_exit;
use crate::limits::MAX_PROBE_REPORT;
use crate::sys;

/// What the new binary prints, then its version, when it can take the
/// state.
pub const OK_PREFIX: &str = "ok ";

/// A probe running.
#[derive(Debug)]
pub struct Probe {
    pid: Pid,
    /// Its stdout and stderr, until end of file.
    output: Option<OwnedFd>,
    read: Vec<u8>,
    status: Option<WaitStatus>,
    /// When it is killed and the upgrade fails.
    pub deadline: Instant,
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Not reaped yet: its pid is still its own.
        if self.status.is_none() {
            let _ = rustix::process::kill_process(self.pid, Signal::KILL);
        }
    }
}

impl Probe {
    /// Runs the program open at `exe` with the master's command line
    /// `argv` and `--check-handover` on the state in `memfd` (so the new
    /// binary also shows it can parse the line the exec will give it).
    ///
    /// # Errors
    ///
    /// If it cannot be started (not executable, for one).
    pub fn start(
        exe: BorrowedFd<'_>,
        argv: &[String],
        memfd: BorrowedFd<'_>,
        deadline: Instant,
    ) -> std::io::Result<Probe> {
        let exe = sys::dup_inheritable_above(exe, 0)?;
        let memfd = sys::dup_inheritable_above(memfd, 0)?;
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let mut cmd = Command::new(format!("/proc/self/fd/{}", sys::fd_number(&exe)));
        if let Some(name) = argv.first() {
            cmd.arg0(name);
        }
        cmd.args(argv.iter().skip(1))
            .arg(super::exec::CHECK_ARG)
            .arg(sys::fd_number(&memfd))
            .stdin(Stdio::null())
            .stdout(Stdio::from(write.try_clone()?))
            .stderr(Stdio::from(write));
        for var in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd.spawn()?;
        drop((exe, memfd));
        let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| std::io::Error::other("pid 0"))?;
        // The loop reaps it with waitpid, like every child.
        drop(child);
        let flags = rustix::fs::fcntl_getfl(&read)?;
        rustix::fs::fcntl_setfl(&read, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(Probe {
            pid,
            output: Some(read),
            read: Vec::new(),
            status: None,
            deadline,
        })
    }

    /// Its output pipe, to poll, until end of file.
    pub fn output(&self) -> Option<BorrowedFd<'_>> {
        self.output.as_ref().map(AsFd::as_fd)
    }

    /// Reads what it wrote (at most [`MAX_PROBE_REPORT`] bytes are kept).
    pub fn read(&mut self) {
        let Some(fd) = &self.output else {
            return;
        };
        let mut buf = [0u8; 1024];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    self.output = None;
                    return;
                }
                Ok(n) => {
                    let room = MAX_PROBE_REPORT.saturating_sub(self.read.len());
                    self.read.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.output = None;
                    return;
                }
            }
        }
    }

    /// Whether `pid` was the probe; if so its exit is recorded.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        if pid != self.pid || self.status.is_some() {
            return false;
        }
        self.status = Some(status);
        true
    }

    /// Its verdict once it has exited and closed its output: the new
    /// binary's version, or why it cannot take the state.
    pub fn outcome(&self) -> Option<Result<String, String>> {
        let status = self.status?;
        if self.output.is_some() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.read);
        let text = text.trim();
        if status.exit_status() == Some(0)
            && let Some(version) = text.lines().next().and_then(|l| l.strip_prefix(OK_PREFIX))
        {
            return Some(Ok(version.trim().to_owned()));
        }
        let said = if text.is_empty() {
            "and said nothing".to_owned()
        } else {
            format!("saying: {text}")
        };
        Some(Err(format!(
            "the new binary's check of the state (--check-handover) {} {said}",
            describe_exit(status)
        )))
    }
}
