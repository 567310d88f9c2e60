//! `ally-ctl upgrade` and SIGUSR2: re-executing the master's binary from
//! disk in place, with a probe first and a way back.
//!
//! 1. The binary at the path the master was started from is opened (so
//!    what is probed is what is executed), refused if a user other than
//!    root and the master's could have put it there ([`handover::trust`]),
//!    and probed: run as a child with
//!    `--check-handover` on a snapshot of the state, it must say it can
//!    take that version of the state, within [`PROBE_TIMEOUT`]. The loop
//!    serves on meanwhile.
//! 2. Once it has, and no unix path socket is still being bound by its
//!    helper (at most [`UPGRADE_QUIESCE_TIMEOUT`]), the log sinks are
//!    flushed, the state is snapshotted again (it changed while the probe
//!    ran) into a sealed memfd, the handled signals are blocked, and the
//!    binary is exec'd in place with exactly the descriptors of the state
//!    inherited.
//! 3. If any step fails, the upgrade is answered with why, and the master
//!    serves on as it was; if the exec fails, so does it.
//!
//! An upgrade asked while one is under way is refused (SIGUSR2 joins it
//! instead, and one pending across the exec is taken by the new image as
//! part of the upgrade it completes); one asked during a reload carries the
//! reload over, to complete under the new master.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use ally_proto::{ControlResponse, ErrorCode, Failure};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, WaitStatus};

use super::{Master, Shutdown};
use crate::handover::exec::{self, Handover};
use crate::handover::fds::Export;
use crate::handover::probe::Probe;
use crate::handover::snapshot::MasterSnap;
use crate::handover::{self, HandoverError};
use crate::limits::{PROBE_TIMEOUT, UPGRADE_FLUSH_GRACE, UPGRADE_QUIESCE_TIMEOUT};
use crate::version::VERSION;
use crate::{log, signals};

/// The binary the master runs, kept open since start (the way back), the
/// path it was started from (where the new one is looked for), and the
/// command line it was started with (every upgrade's new image is given it
/// again, so that it shows as it did).
#[derive(Debug)]
pub struct Exe {
    /// `/proc/self/exe` opened at start (or the binary exec'd into).
    pub fd: OwnedFd,
    /// The path it was started by, made absolute at start.
    pub path: PathBuf,
    /// The original command line, program name first.
    pub argv: Vec<String>,
}

impl Exe {
    /// The running binary, opened now, the path it was started from, and
    /// `argv`, its command line.
    ///
    /// # Errors
    ///
    /// If `/proc/self/exe` cannot be opened or resolved.
    pub fn of_this_process(argv: Vec<String>) -> std::io::Result<Exe> {
        let fd = rustix::fs::open(
            "/proc/self/exe",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let path = match invoked_path(&argv, &fd) {
            Some(path) => path,
            None => std::env::current_exe()?,
        };
        Ok(Exe { fd, path, argv })
    }
}

/// The path the master was run by (`argv[0]`, made absolute), with its
/// symlinks left as they are, if it names the running binary: so that an
/// upgrade follows a symlink swapped to another build, as it was started
/// through. `None` for a bare name (found through `PATH`) or one that does
/// not lead to the running binary.
fn invoked_path(argv: &[String], running: &OwnedFd) -> Option<PathBuf> {
    let arg0 = argv.first().filter(|a| a.contains('/'))?;
    let path = std::path::absolute(arg0).ok()?;
    let on_disk = rustix::fs::stat(&path).ok()?;
    let running = rustix::fs::fstat(running).ok()?;
    (on_disk.st_dev == running.st_dev && on_disk.st_ino == running.st_ino).then_some(path)
}

/// Where an upgrade is.
#[derive(Debug)]
pub enum Upgrade {
    /// None under way.
    Idle,
    /// The new binary checks the state.
    Probing {
        /// The check.
        probe: Probe,
        /// The new binary, as probed.
        new_exe: OwnedFd,
        /// The control connection waiting for the outcome.
        waiter: Option<u64>,
    },
    /// The new binary can take the state: waiting for path-socket helpers
    /// to finish before the exec.
    Quiescing {
        /// The new binary.
        new_exe: OwnedFd,
        /// Its version, as it said.
        to: String,
        /// The control connection waiting for the outcome.
        waiter: Option<u64>,
        /// When to give up.
        deadline: Instant,
    },
}

impl Master {
    /// SIGUSR2: an upgrade, or, while one is under way, nothing more: the
    /// signal joins it (logged once per upgrade, however many arrive).
    pub(crate) fn on_upgrade_signal(&mut self) {
        if matches!(self.upgrade, Upgrade::Idle) {
            log!("SIGUSR2: upgrading in place");
            self.request_upgrade(None);
        } else if !self.upgrade_signal_joined {
            self.upgrade_signal_joined = true;
            log!(
                "SIGUSR2 during an upgrade: it joins the one under way (further ones are not logged)"
            );
        }
    }

    /// Asks for an upgrade: from control connection `conn` (which, with
    /// `wait`, hears the outcome too), or from SIGUSR2 (`None`).
    pub(crate) fn request_upgrade(&mut self, conn: Option<(u64, bool)>) {
        match self.start_upgrade(conn.filter(|(_, wait)| *wait).map(|(c, _)| c)) {
            Ok(()) => {
                if let Some((conn, _)) = conn {
                    let started = ControlResponse::UpgradeStarted {
                        from: VERSION.to_owned(),
                    };
                    self.send(conn, &started, Vec::new());
                }
            }
            Err(failure) => {
                log!("upgrade refused: {}", failure.message);
                if let Some((conn, _)) = conn {
                    self.send(conn, &ControlResponse::Error(failure), Vec::new());
                }
            }
        }
    }

    fn start_upgrade(&mut self, waiter: Option<u64>) -> Result<(), Failure> {
        if self.shutdown != Shutdown::Running {
            return Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the master is shutting down; nothing to upgrade",
            ));
        }
        if !matches!(self.upgrade, Upgrade::Idle) {
            return Err(Failure::new(
                ErrorCode::NotPermitted,
                "an upgrade is already under way; wait for its outcome (`ally-ctl upgrade --wait`)",
            ));
        }
        let path = self.exe.path.clone();
        let failed = |why: String| {
            Failure::new(
                ErrorCode::ReloadFailed,
                format!("{why}; ally-master {VERSION} serves on"),
            )
        };
        let new_exe = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| {
                failed(format!(
                    "cannot open the new binary {}: {e}",
                    path.display()
                ))
            })?;
        handover::trust::check(new_exe.as_fd(), &path, self.uid)
            .map_err(|why| failed(format!("will not execute {}: {why}", path.display())))?;
        let probe = (|| {
            let (snap, _fds) = self.snapshot(waiter)?;
            let memfd = handover::write_memfd(&handover::encode(&snap)?)?;
            Probe::start(
                new_exe.as_fd(),
                &self.exe.argv,
                memfd.as_fd(),
                Instant::now() + PROBE_TIMEOUT,
            )
            .map_err(|e| HandoverError::Io(format!("cannot run {}", path.display()), e))
        })()
        .map_err(|e| failed(e.to_string()))?;
        log!(
            "upgrade asked: checking {} against the state (version {})",
            path.display(),
            crate::version::HANDOVER_VERSION
        );
        self.notifier.reloading();
        self.upgrade = Upgrade::Probing {
            probe,
            new_exe,
            waiter,
        };
        Ok(())
    }

    /// The probe's output pipe, to poll.
    pub(crate) fn probe_output(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.upgrade {
            Upgrade::Probing { probe, .. } => probe.output(),
            _ => None,
        }
    }

    /// The probe wrote (or closed its output).
    pub(crate) fn on_probe_output(&mut self) {
        if let Upgrade::Probing { probe, .. } = &mut self.upgrade {
            probe.read();
        }
    }

    /// Whether `pid` was the probe (then its exit is recorded).
    pub(crate) fn probe_reaped(&mut self, pid: Pid, status: WaitStatus) -> bool {
        match &mut self.upgrade {
            Upgrade::Probing { probe, .. } => probe.reaped(pid, status),
            _ => false,
        }
    }

    /// The upgrade's deadline, if one is under way.
    pub(crate) fn upgrade_deadline(&self) -> Option<Instant> {
        match &self.upgrade {
            Upgrade::Idle => None,
            Upgrade::Probing { probe, .. } => Some(probe.deadline),
            Upgrade::Quiescing { deadline, .. } => Some(*deadline),
        }
    }

    /// Moves the upgrade on: judges the probe, and execs once quiet. Called
    /// at the end of each turn.
    pub(crate) fn advance_upgrade(&mut self, now: Instant) {
        let upgrade = std::mem::replace(&mut self.upgrade, Upgrade::Idle);
        self.upgrade = match upgrade {
            Upgrade::Idle => Upgrade::Idle,
            Upgrade::Probing { waiter, .. } | Upgrade::Quiescing { waiter, .. }
                if self.shutdown != Shutdown::Running =>
            {
                self.upgrade_abandoned(waiter);
                Upgrade::Idle
            }
            Upgrade::Probing {
                probe,
                new_exe,
                waiter,
            } => match probe.outcome() {
                None if now >= probe.deadline => {
                    let why = format!(
                        "the new binary's check of the state took more than {PROBE_TIMEOUT:?}"
                    );
                    drop(probe);
                    self.upgrade_failed(waiter, why);
                    Upgrade::Idle
                }
                None => Upgrade::Probing {
                    probe,
                    new_exe,
                    waiter,
                },
                Some(Err(why)) => {
                    self.upgrade_failed(waiter, why);
                    Upgrade::Idle
                }
                Some(Ok(to)) => {
                    log!("upgrade: ally-master {to} can take the state");
                    let deadline = now + UPGRADE_QUIESCE_TIMEOUT;
                    self.quiesce(new_exe, to, waiter, deadline, now)
                }
            },
            Upgrade::Quiescing {
                new_exe,
                to,
                waiter,
                deadline,
            } => self.quiesce(new_exe, to, waiter, deadline, now),
        };
    }

    /// Execs once no unix path socket is being bound any more, or gives up
    /// at `deadline`.
    fn quiesce(
        &mut self,
        new_exe: OwnedFd,
        to: String,
        waiter: Option<u64>,
        deadline: Instant,
        now: Instant,
    ) -> Upgrade {
        if self.pending.is_empty() {
            let why = self.exec_upgrade(&new_exe, &to, waiter);
            self.upgrade_failed(waiter, why);
            Upgrade::Idle
        } else if now >= deadline {
            let why = format!(
                "unix path sockets were still being bound after {UPGRADE_QUIESCE_TIMEOUT:?}"
            );
            self.upgrade_failed(waiter, why);
            Upgrade::Idle
        } else {
            Upgrade::Quiescing {
                new_exe,
                to,
                waiter,
                deadline,
            }
        }
    }

    /// Execs `new_exe` (version `to`) in place with the whole state;
    /// returns only if that failed, with why.
    fn exec_upgrade(&mut self, new_exe: &OwnedFd, to: &str, waiter: Option<u64>) -> String {
        log!("upgrading in place: ally-master {VERSION} -> {to}");
        // Everything queued is written first: exec ends the writer threads.
        let deadline = Instant::now() + UPGRADE_FLUSH_GRACE;
        self.apps.flush_logs(deadline);
        log::flush(deadline);
        match self
            .snapshot(waiter)
            .and_then(|(snap, fds)| Ok((handover::write_memfd(&handover::encode(&snap)?)?, fds)))
        {
            Ok((memfd, fds)) => {
                if let Err(e) = signals::block() {
                    return format!("cannot block signals for the exec: {e}");
                }
                let handover = Handover {
                    memfd: memfd.as_fd(),
                    exe: new_exe.as_fd(),
                    way_back: Some(self.exe.fd.as_fd()),
                    fds: fds.fds().to_vec(),
                    failed: None,
                    original: &self.exe.argv,
                };
                let error = exec::exec(&handover);
                let _ = signals::unblock();
                format!("the exec of the new binary failed: {error}")
            }
            Err(e) => e.to_string(),
        }
    }

    /// Answers a failed upgrade: the waiter hears why, the log says so, and
    /// systemd hears the master is ready again.
    /// A shutdown began while the upgrade was under way: it ends there
    /// (the probe, if any, is killed), and its waiter hears so. No
    /// `READY=1`: systemd was told the master is stopping.
    fn upgrade_abandoned(&mut self, waiter: Option<u64>) {
        self.upgrade_signal_joined = false;
        let message = "the master is shutting down: the upgrade was abandoned";
        log!("{message}");
        if let Some(conn) = waiter {
            let failure = Failure::new(ErrorCode::ShuttingDown, message);
            self.send(conn, &ControlResponse::Error(failure), Vec::new());
        }
    }

    fn upgrade_failed(&mut self, waiter: Option<u64>, why: String) {
        self.upgrade_signal_joined = false;
        let message = format!("{why}; ally-master {VERSION} serves on");
        log!("upgrade failed: {message}");
        self.notifier.send("READY=1");
        if let Some(conn) = waiter {
            // ally-ctl says "upgrade failed: " before it.
            let failure = Failure::new(ErrorCode::ReloadFailed, message);
            self.send(conn, &ControlResponse::Error(failure), Vec::new());
        }
    }

    /// The whole master as plain data, its descriptors listed in order.
    ///
    /// # Errors
    ///
    /// If a unix path socket is still being bound, an address does not
    /// read back, or there are too many descriptors.
    fn snapshot(&self, waiter: Option<u64>) -> Result<(MasterSnap, Export<'_>), HandoverError> {
        if !self.pending.is_empty() {
            return Err(HandoverError::Restore(
                "unix path sockets are being bound".into(),
            ));
        }
        if !self.listeners.addresses_round_trip() {
            return Err(HandoverError::Restore(
                "a listener's address does not read back from its text".into(),
            ));
        }
        let now = Instant::now();
        let mut fds = Export::default();
        let control = fds.add(self.control.listener().as_fd());
        let ready_fd = self.ready_fd.as_ref().map(|fd| fds.add(fd.as_fd()));
        let (apps, next_app) = self.apps.snapshot(&mut fds, now);
        let listeners = self.listeners.snapshot(&mut fds);
        let (conns, next_conn) = self.conns.snapshot(&mut fds, now);
        fds.check_bound()?;
        let snap = MasterSnap {
            from_version: VERSION.to_owned(),
            fd_count: u32::try_from(fds.len()).unwrap_or(u32::MAX),
            config_path: self.config_path.clone().unwrap_or_default(),
            exe_path: self.exe.path.clone(),
            log_dir: self.log_dir.clone(),
            socket: self.launch.socket.clone(),
            fd_limit: self.launch.fd_limit.map(|l| (l.current, l.maximum)),
            frame_timeout_ms: u64::try_from(self.frame_timeout.as_millis()).unwrap_or(u64::MAX),
            control_group: self.control_group,
            announced: self.announced,
            ready_fd,
            control,
            apps,
            next_app,
            listeners,
            conns,
            next_conn,
            upgrade_waiter: waiter,
        };
        Ok((snap, fds))
    }
}
