//! The master's single-threaded poll loop.
//!
//! Each turn: compute the nearest deadline (none when idle, so an idle
//! master never wakes); poll the signal pipe, the control socket (always:
//! a connection over the limits is refused at once, see [`crate::slots`]),
//! every connection (readable only while it may read, writable only with
//! output pending) and every instance's output pipes; then handle signals,
//! writes, reads, timers and accepts, in that order (timers after reads,
//! so that what arrived before a deadline counts).
//!
//! The master's state is a handful of owners, each changed only through
//! its own methods: the connections ([`Conns`]), the apps ([`Apps`]), the
//! listening sockets ([`Listeners`]) and the unix paths being bound
//! ([`PendingListens`]). What the master does with each message lives in
//! the modules below: [`poll`] (what each turn waits on), [`requests`]
//! (hellos and instance requests), [`control`] (`ally-ctl`), [`listening`]
//! (`Listen`), [`channels`] (instances' connections), [`reread`] and
//! [`outbox`] (what is sent).

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::process::{Uid, WaitOptions};

use crate::app::App;
use crate::apps::Apps;
use crate::config::Config;
use crate::conn::{Broken, Peer};
use crate::conns::Conns;
use crate::control_socket::ControlSocket;
use crate::fd_store::{Adopted, FdStore, Inherited};
use crate::helpers::{self, Owner};
use crate::instance::Launch;
use crate::limits::{FRAME_TIMEOUT, HELPER_EXIT_WAIT, READ_CHUNK, SINK_EXIT_GRACE};
use crate::listeners::Listeners;
use crate::log;
use crate::logs::{self, AppLog};
use crate::pending_listens::PendingListens;
use crate::scope;
use crate::sd_notify::Notifier;
use crate::signals::Signals;
use crate::tally::Tally;

mod channels;
mod control;
mod listening;
mod outbox;
mod poll;
mod requests;
mod reread;
mod resume;
mod startup;
mod upgrade;

use poll::Token;
pub use startup::StartError;
pub use upgrade::Exe;
use upgrade::Upgrade;

/// Whether the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Running,
    /// Instances were sent their stop signal; exit when all are gone.
    Graceful,
    /// A second signal: instances were killed.
    Forced,
}

/// The master's whole state.
#[derive(Debug)]
pub struct Master {
    /// The config file, read again by `reread`; `None` for a master whose
    /// config came from `ally-master run`'s flags.
    config_path: Option<std::path::PathBuf>,
    /// Where apps' default log files go.
    log_dir: std::path::PathBuf,
    launch: Launch,
    control: ControlSocket,
    signals: Signals,
    apps: Apps,
    listeners: Listeners,
    /// Unix path sockets waiting for their helper.
    pending: PendingListens,
    conns: Conns,
    /// The one buffer every connection reads into.
    scratch: Box<[u8]>,
    /// How long a started frame may take to arrive (`[master] frame_timeout`).
    frame_timeout: Duration,
    /// Refusals and timeouts, logged without flooding.
    tally: Tally,
    shutdown: Shutdown,
    uid: Uid,
    /// A group whose members may control the master (`[master] group`).
    control_group: Option<u32>,
    /// systemd's `NOTIFY_SOCKET`, if the master runs under it.
    notifier: Notifier,
    /// systemd's file descriptor store, where every socket bound is parked.
    fd_store: FdStore,
    /// Where to write a newline once ready (`--ready-fd`), until it is.
    ready_fd: Option<OwnedFd>,
    /// Whether readiness was announced.
    announced: bool,
    /// The in-place upgrade under way, if any.
    upgrade: Upgrade,
    /// Whether a SIGUSR2 joined the upgrade under way (logged once).
    upgrade_signal_joined: bool,
    /// The binary the master runs, and where it was started from.
    exe: Exe,
}

impl Master {
    /// A master for `config`, serving its control socket on `control`,
    /// with the sockets systemd handed back (`inherited`) put back in
    /// place before anything is bound.
    ///
    /// # Errors
    ///
    /// If an app's log file cannot be opened, or one of its `listen`
    /// sockets cannot be bound (one in use is tried again for a while: see
    /// [`startup::bind_config_socket`]); or if told to stop meanwhile.
    pub fn new(
        config: Config,
        launch: Launch,
        control: UnixListener,
        signals: Signals,
        exe: Exe,
        inherited: Inherited,
    ) -> Result<Master, StartError> {
        let log_dir = config
            .master
            .log_dir
            .clone()
            .unwrap_or_else(logs::default_dir);
        let notifier = Notifier::from_env();
        let fd_store = FdStore::new(&notifier);
        let mut adopted = Adopted::new(inherited, &fd_store, &config);
        let mut apps = Vec::with_capacity(config.apps.len());
        for app in &config.apps {
            let log = AppLog::open(&app.name, &app.log, &log_dir).map_err(StartError::Failed)?;
            let owner =
                scope::owner_for_config_sockets(app).map_err(|f| StartError::Failed(f.message))?;
            let mut sockets = Vec::with_capacity(app.listen.len());
            for decl in &app.listen {
                let bound = match adopted.take_config(&app.name, &decl.spec, owner) {
                    Some(bound) => bound,
                    None => {
                        startup::bind_config_socket(app, &decl.spec, owner, &fd_store, &signals)?
                    }
                };
                sockets.push((decl.name.clone(), bound));
            }
            apps.push(App::new(app.clone(), log, sockets, launch.clone()));
        }
        let mut listeners = Listeners::default();
        let owners: Vec<(String, Option<Owner>)> = config
            .apps
            .iter()
            .map(|a| (a.name.clone(), scope::owner(a).ok().flatten()))
            .collect();
        let owner_of = |app: &str| owners.iter().find(|(n, _)| n == app).and_then(|(_, o)| *o);
        for (key, bound, mode) in adopted.into_library(owner_of) {
            listeners.insert(key, bound, mode, BTreeSet::new());
        }
        let uid = rustix::process::geteuid();
        Ok(Master {
            frame_timeout: config.master.frame_timeout.unwrap_or(FRAME_TIMEOUT),
            config_path: Some(config.path),
            log_dir,
            launch,
            control: ControlSocket::new(control, uid),
            signals,
            apps: Apps::new(apps),
            listeners,
            pending: PendingListens::default(),
            conns: Conns::default(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            tally: Tally::default(),
            shutdown: Shutdown::Running,
            uid,
            control_group: None,
            notifier,
            fd_store,
            ready_fd: None,
            announced: false,
            upgrade: Upgrade::Idle,
            upgrade_signal_joined: false,
            exe,
        })
    }

    /// Whether the master is stopping: nothing may start again.
    fn shutting_down(&self) -> bool {
        self.shutdown != Shutdown::Running
    }

    /// The config came from `ally-master run`'s flags: there is no file
    /// for `reread` (or SIGHUP) to read again.
    pub fn without_config_file(&mut self) {
        self.config_path = None;
    }

    /// Lets members of group `gid` control the master (`[master] group`),
    /// besides root and the master's own user.
    pub fn admit_group(&mut self, gid: Option<u32>) {
        self.control_group = gid;
    }

    /// Writes a newline to `fd` (and closes it) once the master is ready:
    /// s6-style readiness for supervisors other than systemd.
    pub fn announce_on(&mut self, fd: OwnedFd) {
        self.ready_fd = Some(fd);
    }

    /// Announces readiness once every app has come to rest.
    fn announce_if_ready(&mut self) {
        if self.announced || !self.apps.all_settled() {
            return;
        }
        self.announced = true;
        log!("ready: every app is serving, stopped or failed");
        self.notifier.send("READY=1\nSTATUS=serving");
        if let Some(fd) = self.ready_fd.take() {
            let _ = rustix::io::write(&fd, b"\n");
        }
    }

    /// Starts every app and serves until a shutdown completes.
    ///
    /// # Errors
    ///
    /// Only if polling itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        log!(
            "pid {} serving {} app(s) on {}",
            std::process::id(),
            self.apps.len(),
            self.launch.socket.display()
        );
        if self.fd_store.is_on() {
            log!("parking every listening socket in systemd's file descriptor store");
        }
        let mut notices = Vec::new();
        self.apps.boot(&mut notices);
        self.deliver(notices);
        self.adopt_channels();
        self.serve()
    }

    /// Serves until a shutdown completes, then closes everything.
    fn serve(&mut self) -> io::Result<()> {
        while !(self.shutdown != Shutdown::Running && self.apps.all_stopped()) {
            let ready = self.poll()?;
            self.turn(&ready);
        }
        self.conns.flush_all();
        let _ = std::fs::remove_file(&self.launch.socket);
        // Close every socket now, and give the helpers removing their files
        // a moment, so the files are gone once the master has exited.
        self.pending.clear();
        self.listeners.clear();
        self.apps.close_sockets();
        helpers::wait_outstanding(HELPER_EXIT_WAIT);
        let deadline = Instant::now() + SINK_EXIT_GRACE;
        self.apps.flush_logs(deadline);
        log!("all apps stopped; exiting");
        Ok(())
    }

    /// Handles one poll result: signals, writes, reads, timers, accepts.
    ///
    /// Timers come after reads: what arrived before a deadline — a ready
    /// sent in time while the master was stopped or busy, a hello, the
    /// rest of a frame — counts before the deadline is judged.
    fn turn(&mut self, ready: &[(Token, PollFlags)]) {
        if ready.iter().any(|(t, _)| matches!(t, Token::Signals)) {
            self.on_signals();
        }
        for &(token, revents) in ready {
            // A hang-up too: writing is how a peer that is gone with
            // answers unread is noticed and dropped.
            if let Token::Conn(id) = token
                && revents.intersects(PollFlags::OUT | PollFlags::HUP | PollFlags::ERR)
            {
                self.flush(id);
            }
        }
        // Requests left from the last turn, before anything new is read.
        for id in self.conns.with_backlog() {
            self.handle_input(id);
            let done = self
                .conns
                .get_mut(id)
                .filter(|c| !c.backlog)
                .and_then(|c| c.hung_up.take());
            if let Some(broken) = done {
                self.drop_conn(id, &broken);
            }
        }
        for &(token, revents) in ready {
            match token {
                Token::Conn(id)
                    if revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) =>
                {
                    self.on_readable(id, revents);
                }
                Token::Output {
                    app,
                    instance,
                    stream,
                } => {
                    if let Some(app) = self.apps.get_mut(app) {
                        app.read_output(instance, stream);
                    }
                }
                Token::Notify { app, instance } => {
                    let mut notices = Vec::new();
                    if let Some(app) = self.apps.get_mut(app) {
                        app.read_notify(instance, &mut notices);
                    }
                    self.deliver(notices);
                }
                Token::Helper(ticket) => self.on_helper_report(ticket),
                Token::Probe => self.on_probe_output(),
                _ => {}
            }
        }
        self.on_timers();
        if ready.iter().any(|(t, _)| matches!(t, Token::Control)) {
            self.accept();
        }
        self.outbox().send_to_followers();
        self.apps.forget_gone();
        self.adopt_channels();
        if self.shutdown == Shutdown::Running {
            self.announce_if_ready();
        }
        // Last: an exec happens between turns, with nothing half done.
        self.advance_upgrade(Instant::now());
    }

    fn on_signals(&mut self) {
        let pending = self.signals.take();
        if pending.child {
            self.reap();
        }
        if pending.terminate {
            match self.shutdown {
                Shutdown::Running => {
                    log!("shutting down: stopping every app (send the signal again to kill them)");
                    self.notifier.send("STOPPING=1");
                    self.shutdown = Shutdown::Graceful;
                    let mut notices = Vec::new();
                    self.apps.shutdown(&mut notices);
                    self.deliver(notices);
                }
                Shutdown::Graceful | Shutdown::Forced => {
                    log!("second shutdown signal: killing every instance");
                    self.shutdown = Shutdown::Forced;
                    self.apps.kill_all();
                }
            }
        }
        if pending.upgrade {
            self.on_upgrade_signal();
        }
        if pending.hangup {
            log!("SIGHUP: reopening log files and rereading the config");
            self.notifier.reloading();
            if let Err(e) = self.apps.reopen_logs() {
                log!("reopen failed: {e}");
            }
            if self.config_path.is_none() {
                log!("SIGHUP: no config file to reread (`ally-master run`)");
            } else if let Err(failure) = self.reread() {
                log!("reread failed, nothing changed: {}", failure.message);
            }
            self.notifier.send("READY=1");
        }
    }

    /// Reaps every child that has exited: path-socket helpers, instances and
    /// (as PID 1) orphans.
    fn reap(&mut self) {
        let mut notices = Vec::new();
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            if helpers::reaped(pid) || self.probe_reaped(pid, status) {
                continue;
            }
            self.apps
                .on_exit(pid, status, &mut self.listeners, &mut notices);
        }
        self.close_dead_instance_conns();
        self.deliver(notices);
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let mut notices = Vec::new();
        self.apps.on_timer(now, &mut notices);
        self.deliver(notices);
        self.expire_listens(now);
        self.conns.expire(now, &mut self.tally);
        self.close_unfinished_frames(now);
        if let Some((count, last)) = self.fd_store.take_trouble() {
            self.note("fd store failures", || {
                format!("systemd's fd store: {count} failure(s), the last: {last}")
            });
        }
        if let Some(line) = self.tally.report(now) {
            log!("{line}");
        }
    }

    /// Closes every connection whose frame has been arriving for longer
    /// than the frame timeout: it holds memory (and a slot) for nothing.
    fn close_unfinished_frames(&mut self, now: Instant) {
        let timeout = self.frame_timeout;
        for id in self.conns.late_frames(now, timeout) {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            let (pid, uid, bytes) = (
                conn.cred.pid_text(),
                conn.cred.uid.as_raw(),
                conn.buffered(),
            );
            let what = "closed with a frame unfinished";
            if let Some(line) = self.tally.note(now, what, || {
                format!(
                    "closed connection from pid {pid} uid {uid}: a frame is still unfinished \
                     after {timeout:?} ({bytes} bytes of it arrived)"
                )
            }) {
                log!("{line}");
            }
            self.drop_conn(id, &Broken::Gone);
        }
    }

    /// Takes the connections the control socket admits this turn.
    fn accept(&mut self) {
        for conn in self.control.accept(&mut self.tally) {
            self.conns.add(conn);
        }
    }

    /// Logs an event that may come in floods through the tally: at once
    /// when the log was quiet, else counted in its next summary.
    pub(crate) fn note(&mut self, what: &'static str, line: impl FnOnce() -> String) {
        if let Some(line) = self.tally.note(Instant::now(), what, line) {
            log!("{line}");
        }
    }

    fn flush(&mut self, id: u64) {
        if let Err(broken) = self.conns.flush(id) {
            self.drop_conn(id, &broken);
        }
    }

    fn on_readable(&mut self, id: u64, revents: PollFlags) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.backlog {
            // A hang-up is reported even unasked: the requests sent before
            // it are handled first, in the turns to come.
            return;
        }
        if !conn.may_read() {
            // The input budget ran out: read it next turn, or, if it hung
            // up (reported even unasked), drop it now rather than wake for
            // it every turn: its frame can no longer be read whole.
            if revents.intersects(PollFlags::HUP | PollFlags::ERR) {
                self.drop_conn(id, &Broken::Gone);
            }
            return;
        }
        let read = conn.read_ready(&mut self.scratch);
        if matches!(conn.peer, Peer::Closing { .. }) {
            if read.is_err() {
                self.conns.close(id);
            }
            return;
        }
        // Handle what arrived before the peer closed, then close: at once,
        // or once a backlog of requests is handled (they may be writes).
        self.handle_input(id);
        if let Err(broken) = read {
            match self.conns.get_mut(id) {
                Some(conn) if conn.backlog => conn.hung_up = Some(broken),
                _ => self.drop_conn(id, &broken),
            }
        }
    }
}
