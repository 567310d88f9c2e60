//! One app: the edge between its lifecycle ([`machine`], pure) and the
//! world (processes, pipes, the log, waiting connections).
//!
//! Every start is a reload: a new instance is spawned and becomes main when
//! it reports ready, at which point every older instance gets the stop
//! signal. If it exits or misses its ready deadline first it is killed, the
//! old main keeps serving, and whoever asked is told why. A reload asked
//! while one runs is queued; queued requests share the next reload.
//!
//! [`App`] feeds each event to its [`Machine`] and performs the effects:
//! spawning, signalling and killing instances (keyed by id), logging, and
//! returning [`Notice`]s for the event loop to deliver.

use std::time::Instant;

use ally_proto::{ControlResponse, Failure, InstanceRequest, InstanceResponse};
use rustix::process::{Pid, Signal, WaitStatus};

use crate::config::AppConfig;
use crate::instance::{Instance, Launch, Stream, describe_exit};
use crate::listeners::{Bound, Listeners};
use crate::log;
use crate::logs::AppLog;

mod followers;
mod handover;
mod io;
mod lifecycle;
pub mod machine;
mod sockets;
mod status;
use crate::shared_state::{Reply, SharedState};
use machine::{Effect, Event, Machine, Settings};
pub use sockets::assemble;

/// Who asked for a reload, and so who hears how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// A control client; with `wait` it also wants the outcome.
    Control {
        /// Connection id.
        conn: u64,
        /// Whether to send the outcome.
        wait: bool,
    },
    /// An instance that asked for its own app's reload.
    Instance {
        /// Connection id.
        conn: u64,
    },
    /// A control client's `start` or `restart`: hears `Done` once an
    /// instance is main.
    Lifecycle {
        /// Connection id.
        conn: u64,
    },
}

/// Something to tell a waiter.
#[derive(Debug)]
pub enum Notice {
    /// The reload's instance was spawned.
    Started {
        /// Who to tell.
        waiter: Waiter,
        /// The app's name.
        app: String,
        /// The new instance's id.
        instance: u64,
    },
    /// The reload's instance is main.
    Done {
        /// Who to tell.
        waiter: Waiter,
        /// The app's name.
        app: String,
        /// The new main instance's id.
        instance: u64,
    },
    /// The reload failed.
    Failed {
        /// Who to tell.
        waiter: Waiter,
        /// Why.
        failure: Failure,
    },
    /// A late answer to an instance's request (a lock wait ended).
    Reply(Reply),
    /// A late answer to a control request (a stop finished).
    Control {
        /// Connection id.
        conn: u64,
        /// The answer.
        response: ControlResponse,
    },
}

/// An app from the config and its live instances.
#[derive(Debug)]
pub struct App {
    /// Its settings; changed only through [`App::reconfigure`] and
    /// [`App::readmit`], which tell the machine too.
    config: AppConfig,
    /// Live (not yet reaped) instances, oldest first: the processes of the
    /// machine's tracked instances, by id. Added and removed only here, as
    /// the machine spawns and the loop reaps.
    instances: Vec<Instance>,
    /// Cache, atomics and locks: they outlive every instance.
    state: SharedState,
    /// Where its instances' output goes.
    log: AppLog,
    /// Connections following the log (`ally-ctl logs -f`).
    followers: Vec<u64>,
    /// Lines written since the followers were last sent what is new.
    unsent: Vec<String>,
    /// The sockets of its `listen` key, handed to every instance at fds
    /// 3.. (bound while the app is configured, like a socket unit).
    sockets: Vec<(String, Bound)>,
    /// What its instances are started with.
    launch: Launch,
    /// Its lifecycle.
    machine: Machine,
}

impl App {
    /// An app with no instances yet, writing its output to `log`, handing
    /// `sockets` to its instances, started with `launch`.
    pub fn new(
        config: AppConfig,
        log: AppLog,
        sockets: Vec<(String, Bound)>,
        launch: Launch,
    ) -> App {
        App {
            sockets,
            state: SharedState::new(config.limits),
            log,
            followers: Vec::new(),
            unsent: Vec::new(),
            machine: Machine::new(Settings::of(&config)),
            config,
            instances: Vec::new(),
            launch,
        }
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its settings.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Live (not yet reaped) instances, oldest first.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Live instances, to take their channels or record their reports.
    pub fn instances_mut(&mut self) -> &mut [Instance] {
        &mut self.instances
    }

    /// Instance `id`, if it is live.
    pub fn instance_mut(&mut self, id: u64) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| i.id == id)
    }

    /// Whether instance `id` is live (spawned and not yet reaped).
    pub fn is_live(&self, id: u64) -> bool {
        self.instances.iter().any(|i| i.id == id)
    }

    /// Whether the app has stopped for good: shutting down, nothing left.
    pub fn is_stopped(&self) -> bool {
        self.machine.is_stopped()
    }

    /// The master starts the app: its first instance, unless
    /// `autostart = false` keeps it stopped.
    pub fn boot(&mut self, out: &mut Vec<Notice>) {
        self.feed(Event::Boot, out);
    }

    /// Asks for a reload on behalf of `waiter`.
    pub fn request_reload(&mut self, waiter: Waiter, out: &mut Vec<Notice>) {
        self.feed(Event::Reload(waiter), out);
    }

    /// Instance `id` reported ready.
    pub fn on_ready(&mut self, id: u64, out: &mut Vec<Notice>) {
        self.feed(Event::Ready { id }, out);
    }

    /// The process `pid` ended with `status`. Returns `false` if it is not an
    /// instance of this app.
    pub fn on_exit(
        &mut self,
        pid: Pid,
        status: WaitStatus,
        listeners: &mut Listeners,
        out: &mut Vec<Notice>,
    ) -> bool {
        let Some(index) = self.instances.iter().position(|i| i.pid == pid) else {
            return false;
        };
        let mut instance = self.instances.remove(index);
        self.read_last_output(&mut instance);
        if let Some(count) = instance.notify.strangers.take_all() {
            self.log_strangers(instance.id, count);
        }
        listeners.release_instance(&self.config.name, instance.id);
        self.owner_gone(instance.id, out);
        let event = Event::Exited {
            id: instance.id,
            how: describe_exit(status),
            tail: instance.stderr_tail(),
        };
        self.feed(event, out);
        true
    }

    /// A request from instance `id` on connection `conn`, if it is one for
    /// the shared state (see [`SharedState::handle`]); waiters it lets in
    /// are added to `out`.
    pub fn state_request(
        &mut self,
        id: u64,
        conn: u64,
        req: &InstanceRequest,
        now: Instant,
        out: &mut Vec<Reply>,
    ) -> Option<Option<InstanceResponse>> {
        self.state.handle(id, conn, req, now, out)
    }

    /// Connection `conn`, one of an instance's, closed: the lock waits it
    /// carried are withdrawn. Its holds stay: they belong to the instance,
    /// released when it exits.
    pub fn conn_closed(&mut self, conn: u64, out: &mut Vec<Notice>) {
        let mut replies = Vec::new();
        self.state.conn_closed(conn, &mut replies);
        out.extend(replies.into_iter().map(Notice::Reply));
    }

    /// Instance `id` exited: its locks go.
    pub fn owner_gone(&mut self, id: u64, out: &mut Vec<Notice>) {
        let mut replies = Vec::new();
        self.state.owner_gone(id, &mut replies);
        out.extend(replies.into_iter().map(Notice::Reply));
    }

    /// Applies deadlines that have passed by `now`.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Notice>) {
        self.report_strangers(now);
        let mut replies = Vec::new();
        self.state.on_timer(now, &mut replies);
        out.extend(replies.into_iter().map(Notice::Reply));
        // The stderr tails of instances about to be killed for missing
        // their ready deadline, for the failure report.
        let overdue: Vec<u64> = self
            .machine
            .instances()
            .iter()
            .filter(|t| t.state.deadline().is_some_and(|d| d <= now))
            .filter(|t| matches!(t.state, machine::State::Starting { .. }))
            .map(|t| t.id)
            .collect();
        let mut tails = Vec::with_capacity(overdue.len());
        for id in overdue {
            // What it wrote last says why, in the report.
            for stream in [Stream::Stdout, Stream::Stderr] {
                self.read_output(id, stream);
            }
            if let Some(instance) = self.instances.iter().find(|i| i.id == id) {
                tails.push((id, instance.stderr_tail()));
            }
        }
        self.feed_at(now, Event::Timer { tails }, out);
    }

    /// The nearest deadline this app has, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.machine
            .next_deadline()
            .into_iter()
            .chain(self.state.next_deadline())
            .chain(
                self.instances
                    .iter()
                    .filter_map(|i| i.notify.strangers.due()),
            )
            .min()
    }

    /// Kills every instance at once (a second shutdown signal).
    pub fn kill_all(&mut self) {
        self.feed(Event::ForceShutdown, &mut Vec::new());
    }

    /// `ally-ctl kill`: sends `signal` to every live instance; returns how
    /// many got it.
    pub fn kill(&mut self, signal: Signal) -> usize {
        let effects = self.machine.step(Instant::now(), Event::Signal(signal));
        let sent = effects
            .iter()
            .filter(|e| matches!(e, Effect::Signal { .. }))
            .count();
        self.perform(effects, &mut Vec::new());
        sent
    }

    /// Feeds `event`, happening now, to the machine and performs what it
    /// says.
    fn feed(&mut self, event: Event, out: &mut Vec<Notice>) {
        self.feed_at(Instant::now(), event, out);
    }

    fn feed_at(&mut self, now: Instant, event: Event, out: &mut Vec<Notice>) {
        let effects = self.machine.step(now, event);
        self.perform(effects, out);
    }

    /// Performs `effects` in order. A spawn's outcome goes back to the
    /// machine at once, and what that brings is performed before the rest.
    fn perform(&mut self, effects: Vec<Effect>, out: &mut Vec<Notice>) {
        for effect in effects {
            match effect {
                Effect::Spawn { id } => {
                    let event = self.spawn(id);
                    self.feed(event, out);
                }
                Effect::Signal { id, signal } => {
                    if let Some(i) = self.instances.iter().find(|i| i.id == id) {
                        i.signal(signal);
                    }
                }
                Effect::Kill { id } => {
                    if let Some(i) = self.instances.iter().find(|i| i.id == id) {
                        i.kill();
                    }
                }
                Effect::Notify(notice) => out.push(notice),
                Effect::Log(line) => log!("{line}"),
                // The event loop drops a gone app at the end of its turn.
                Effect::Forget => {}
            }
        }
    }

    /// Spawns instance `id`; returns how it went, for the machine.
    fn spawn(&mut self, id: u64) -> Event {
        match Instance::spawn(&self.config, id, &self.launch, &self.sockets) {
            Ok(instance) => {
                log!(
                    "{}#{id}: started, pid {}",
                    self.name(),
                    instance.pid.as_raw_nonzero()
                );
                self.instances.push(instance);
                Event::Spawned { id }
            }
            Err(e) => Event::SpawnFailed {
                id,
                error: format!(
                    "`{}` in {}: {e}",
                    self.config.command.join(" "),
                    self.config.cwd.display()
                ),
            },
        }
    }
}
