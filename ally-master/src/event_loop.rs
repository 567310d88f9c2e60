//! The master's single-threaded poll loop.
//!
//! Each turn: compute the nearest deadline (none when idle, so an idle
//! master never wakes); poll the signal pipe, the control socket (always:
//! a connection over the limits is refused at once, see [`crate::slots`]),
//! every connection (readable only while it may read, writable only with
//! output pending) and every instance's output pipes; then handle signals,
//! writes, reads, timers and accepts, in that order (timers after reads,
//! so that what arrived before a deadline counts).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use ally_proto::Failure;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Uid, WaitOptions};

use crate::app::App;
use crate::config::Config;
use crate::conn::{Broken, Conn, Peer};
use crate::control_socket::ControlSocket;
use crate::helpers;
use crate::instance::{Launch, Stream};
use crate::limits::{FRAME_TIMEOUT, HELLO_TIMEOUT, HELPER_EXIT_WAIT, READ_CHUNK, SINK_EXIT_GRACE};
use crate::listeners::{Bound, Listeners};
use crate::listening::PendingListens;
use crate::log;
use crate::logs::{self, AppLog};
use crate::scope;
use crate::sd_notify::Notifier;
use crate::signals::Signals;
use crate::tally::Tally;

/// Whether the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Running,
    /// Instances were sent their stop signal; exit when all are gone.
    Graceful,
    /// A second signal: instances were killed.
    Forced,
}

/// What a ready poll entry belongs to.
#[derive(Debug, Clone, Copy)]
enum Token {
    Signals,
    Control,
    Conn(u64),
    Output {
        app: usize,
        instance: u64,
        stream: Stream,
    },
    Notify {
        app: usize,
        instance: u64,
    },
    Helper(u64),
}

/// The master's whole state.
#[derive(Debug)]
pub struct Master {
    /// The config file, read again by `reread`.
    pub(crate) config_path: std::path::PathBuf,
    /// Where apps' default log files go.
    pub(crate) log_dir: std::path::PathBuf,
    pub(crate) launch: Launch,
    control: ControlSocket,
    signals: Signals,
    pub(crate) apps: Vec<App>,
    pub(crate) listeners: Listeners,
    /// Unix path sockets waiting for their helper.
    pub(crate) pending: PendingListens,
    pub(crate) conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// The one buffer every connection reads into.
    scratch: Box<[u8]>,
    /// How long a started frame may take to arrive (`[master] frame_timeout`).
    frame_timeout: Duration,
    /// Refusals and timeouts, logged without flooding.
    tally: Tally,
    shutdown: Shutdown,
    pub(crate) uid: Uid,
    /// A group whose members may control the master (`[master] group`).
    pub(crate) control_group: Option<u32>,
    /// systemd's `NOTIFY_SOCKET`, if the master runs under it.
    notifier: Notifier,
    /// Where to write a newline once ready (`--ready-fd`), until it is.
    ready_fd: Option<OwnedFd>,
    /// Whether readiness was announced.
    announced: bool,
}

impl Master {
    /// A master for `config`, serving its control socket on `control`.
    ///
    /// # Errors
    ///
    /// If an app's log file cannot be opened.
    pub fn new(
        config: Config,
        launch: Launch,
        control: UnixListener,
        signals: Signals,
    ) -> Result<Master, String> {
        let log_dir = config
            .master
            .log_dir
            .clone()
            .unwrap_or_else(logs::default_dir);
        let apps = config
            .apps
            .into_iter()
            .map(|app| {
                let log = AppLog::open(&app.name, &app.log, &log_dir)?;
                let owner = scope::owner_for_config_sockets(&app).map_err(|f| f.message)?;
                let sockets = app
                    .listen
                    .iter()
                    .map(|decl| Ok((decl.name.clone(), Bound::new(&decl.spec, owner)?)))
                    .collect::<Result<_, Failure>>()
                    .map_err(|f| f.message)?;
                Ok(App::new(app, log, sockets, launch.clone()))
            })
            .collect::<Result<_, String>>()?;
        let uid = rustix::process::geteuid();
        Ok(Master {
            frame_timeout: config.master.frame_timeout.unwrap_or(FRAME_TIMEOUT),
            config_path: config.path,
            log_dir,
            launch,
            control: ControlSocket::new(control, uid),
            signals,
            apps,
            listeners: Listeners::default(),
            pending: PendingListens::default(),
            conns: BTreeMap::new(),
            next_conn: 1,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            tally: Tally::default(),
            shutdown: Shutdown::Running,
            uid,
            control_group: None,
            notifier: Notifier::from_env(),
            ready_fd: None,
            announced: false,
        })
    }

    /// Whether the master is stopping: nothing may start again.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown != Shutdown::Running
    }

    /// Writes a newline to `fd` (and closes it) once the master is ready:
    /// s6-style readiness for supervisors other than systemd.
    pub fn announce_on(&mut self, fd: OwnedFd) {
        self.ready_fd = Some(fd);
    }

    /// Announces readiness once every app has come to rest.
    fn announce_if_ready(&mut self) {
        if self.announced || !self.apps.iter().all(App::settled) {
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
        let mut notices = Vec::new();
        for app in &mut self.apps {
            if !app.config().autostart {
                log!(
                    "{}: autostart = false; start it with `ally-ctl start {}`",
                    app.name(),
                    app.name()
                );
            }
            app.boot(&mut notices);
        }
        self.deliver(notices);
        self.adopt_channels();
        while !(self.shutdown != Shutdown::Running && self.apps.iter().all(App::is_stopped)) {
            let ready = self.poll()?;
            self.turn(&ready);
        }
        for conn in self.conns.values_mut() {
            let _ = conn.write_ready();
        }
        let _ = std::fs::remove_file(&self.launch.socket);
        // Close every socket now, and give the helpers removing their files
        // a moment, so the files are gone once the master has exited.
        self.pending.clear();
        self.listeners.clear();
        for app in &mut self.apps {
            app.sockets.clear();
        }
        helpers::wait_outstanding(HELPER_EXIT_WAIT);
        let deadline = Instant::now() + SINK_EXIT_GRACE;
        for app in &self.apps {
            app.log.flush(deadline);
        }
        log!("all apps stopped; exiting");
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| match c.peer {
            Peer::Unknown { deadline } | Peer::Closing { deadline } => Some(deadline),
            _ => None,
        });
        let frames = self
            .conns
            .values()
            .filter_map(|c| Some(c.frame_started()? + self.frame_timeout));
        self.apps
            .iter()
            .filter_map(App::next_deadline)
            .chain(conns)
            .chain(frames)
            .chain(self.pending.deadline())
            .chain(self.control.paused_until())
            .chain(self.tally.next_report())
            .min()
    }

    /// Polls everything once; returns what is ready.
    fn poll(&self) -> io::Result<Vec<(Token, PollFlags)>> {
        let mut tokens = vec![Token::Signals];
        let mut fds = vec![PollFd::new(&self.signals, PollFlags::IN)];
        if self.control.wants_accept(Instant::now()) {
            tokens.push(Token::Control);
            fds.push(PollFd::new(&self.control, PollFlags::IN));
        }
        for (&id, conn) in &self.conns {
            // With requests still buffered, or the input budget spent, read
            // no more: a client cannot make the master buffer its input.
            let mut flags = if conn.may_read() {
                PollFlags::IN
            } else {
                PollFlags::empty()
            };
            if conn.wants_write() {
                flags |= PollFlags::OUT;
            }
            tokens.push(Token::Conn(id));
            fds.push(PollFd::new(conn, flags));
        }
        for (index, app) in self.apps.iter().enumerate() {
            for instance in app.instances() {
                tokens.push(Token::Notify {
                    app: index,
                    instance: instance.id,
                });
                fds.push(PollFd::new(&instance.notify, PollFlags::IN));
                for pipe in &instance.pipes {
                    tokens.push(Token::Output {
                        app: index,
                        instance: instance.id,
                        stream: pipe.stream(),
                    });
                    fds.push(PollFd::new(pipe, PollFlags::IN));
                }
            }
        }
        for (ticket, helper) in self.pending.helpers() {
            tokens.push(Token::Helper(ticket));
            fds.push(PollFd::new(helper, PollFlags::IN));
        }
        // Requests left to handle now; those of a peer that does not read
        // its answers wait for it to read (a writable wake-up).
        let backlog = self
            .conns
            .values()
            .any(|c| c.backlog && !c.output_stalled());
        let deadline = if backlog {
            Some(Instant::now())
        } else {
            self.next_deadline()
        };
        let timeout = deadline.map(|deadline| {
            let wait = deadline.saturating_duration_since(Instant::now());
            // Round up so the deadline has passed when we wake.
            let wait = wait + Duration::from_millis(1);
            Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(wait.subsec_nanos()),
            }
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            // Woken by a deadline: look once more, without waiting, at what
            // is ready. After a stall (SIGSTOP, a slow turn) the timeout can
            // win over descriptors that became ready long before it, and
            // what arrived before a deadline must count (see `turn`).
            Ok(0) if timeout.is_some() => {
                match rustix::event::poll(&mut fds, Some(&Timespec::default())) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(tokens
            .into_iter()
            .zip(fds.iter().map(PollFd::revents))
            .filter(|(_, revents)| !revents.is_empty())
            .collect())
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
        let backlog: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.backlog && !c.output_stalled())
            .map(|(&id, _)| id)
            .collect();
        for id in backlog {
            self.handle_input(id);
            let done = self
                .conns
                .get_mut(&id)
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
                } => self.apps[app].read_output(instance, stream),
                Token::Notify { app, instance } => {
                    let mut notices = Vec::new();
                    self.apps[app].read_notify(instance, &mut notices);
                    self.deliver(notices);
                }
                Token::Helper(ticket) => self.on_helper_report(ticket),
                _ => {}
            }
        }
        self.on_timers();
        if ready.iter().any(|(t, _)| matches!(t, Token::Control)) {
            self.accept();
        }
        self.send_to_followers();
        self.apps.retain(|app| !app.is_gone());
        self.adopt_channels();
        if self.shutdown == Shutdown::Running {
            self.announce_if_ready();
        }
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
                    for app in &mut self.apps {
                        app.shutdown(&mut notices);
                    }
                    self.deliver(notices);
                }
                Shutdown::Graceful | Shutdown::Forced => {
                    log!("second shutdown signal: killing every instance");
                    self.shutdown = Shutdown::Forced;
                    for app in &mut self.apps {
                        app.kill_all();
                    }
                }
            }
        }
        if pending.hangup {
            log!("SIGHUP: reopening log files and rereading the config");
            self.notifier.reloading();
            if let Err(e) = self.reopen_logs() {
                log!("reopen failed: {e}");
            }
            if let Err(failure) = self.reread() {
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
            if helpers::reaped(pid) {
                continue;
            }
            let listeners = &mut self.listeners;
            let _ = self
                .apps
                .iter_mut()
                .any(|app| app.on_exit(pid, status, listeners, &mut notices));
        }
        self.close_dead_instance_conns();
        self.deliver(notices);
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let mut notices = Vec::new();
        for app in &mut self.apps {
            app.on_timer(now, &mut notices);
        }
        self.deliver(notices);
        self.expire_listens(now);
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.peer {
                Peer::Unknown { deadline } | Peer::Closing { deadline } => deadline <= now,
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(conn) = self.conns.remove(&id)
                && matches!(conn.peer, Peer::Unknown { .. })
            {
                log!(
                    "closed connection from pid {}: no hello within {HELLO_TIMEOUT:?}",
                    conn.cred.pid_text()
                );
            }
        }
        self.close_unfinished_frames(now);
        if let Some(line) = self.tally.report(now) {
            log!("{line}");
        }
    }

    /// Closes every connection whose frame has been arriving for longer
    /// than the frame timeout: it holds memory (and a slot) for nothing.
    fn close_unfinished_frames(&mut self, now: Instant) {
        let timeout = self.frame_timeout;
        let late: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.frame_started().is_some_and(|t| t + timeout <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let Some(conn) = self.conns.get(&id) else {
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
            self.add_conn(conn);
        }
    }

    /// Logs an event that may come in floods through the tally: at once
    /// when the log was quiet, else counted in its next summary.
    pub(crate) fn note(&mut self, what: &'static str, line: impl FnOnce() -> String) {
        if let Some(line) = self.tally.note(Instant::now(), what, line) {
            log!("{line}");
        }
    }

    /// Serves `conn` from now on, under a new id.
    pub(crate) fn add_conn(&mut self, conn: Conn) {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, conn);
    }

    fn flush(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let closing = matches!(conn.peer, Peer::Closing { .. });
        match conn.write_ready() {
            Ok(()) if closing && !conn.wants_write() => {
                self.conns.remove(&id);
            }
            Ok(()) => {}
            Err(broken) => self.drop_conn(id, &broken),
        }
    }

    fn on_readable(&mut self, id: u64, revents: PollFlags) {
        let Some(conn) = self.conns.get_mut(&id) else {
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
                self.conns.remove(&id);
            }
            return;
        }
        // Handle what arrived before the peer closed, then close: at once,
        // or once a backlog of requests is handled (they may be writes).
        self.handle_input(id);
        if let Err(broken) = read {
            match self.conns.get_mut(&id) {
                Some(conn) if conn.backlog => conn.hung_up = Some(broken),
                _ => self.drop_conn(id, &broken),
            }
        }
    }
}
