//! An app's lifecycle as one state machine, with no I/O: events in
//! ([`Event`]), effects out ([`Effect`]).
//!
//! The machine owns everything that decides what happens next: the app's
//! [`Life`] (supervised, reloading, failed, stopped, gone), the state and
//! deadlines of every instance by id, the crash count and the waiters. It
//! never spawns, signals or logs: it says so, and [`super::App`] does it.
//! Deadlines are read back with [`Machine::next_deadline`]; the loop
//! sends [`Event::Timer`] once one has passed.

use std::time::{Duration, Instant, SystemTime};

use ally_proto::{AppState, ControlResponse, ErrorCode, Failure, InstanceState};
use rustix::process::Signal;

use super::{Notice, Waiter};
use crate::config::{AppConfig, ReadyMode, RestartPolicy};
use crate::instance::unix_ms;
use crate::listeners::Standing;

mod operator;
#[cfg(test)]
mod props;
mod reload;
mod snapshot;
#[cfg(test)]
mod tests;

/// What the machine needs of an app's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The app's name, for messages.
    pub name: String,
    /// How readiness is known.
    pub ready: ReadyMode,
    /// How long a new instance has to become ready.
    pub ready_timeout: Duration,
    /// How long a draining instance has before SIGKILL.
    pub stop_timeout: Duration,
    /// What asks an instance to drain.
    pub stop_signal: Signal,
    /// How many instances may drain at once.
    pub max_draining: usize,
    /// Crash restarts and back-off.
    pub restart: RestartPolicy,
    /// Whether the app starts with the master (and when added back).
    pub autostart: bool,
}

impl Settings {
    /// The settings in `config`.
    pub fn of(config: &AppConfig) -> Settings {
        Settings {
            name: config.name.clone(),
            ready: config.ready,
            ready_timeout: config.ready_timeout,
            stop_timeout: config.stop_timeout,
            stop_signal: config.stop_signal,
            max_draining: config.max_draining,
            restart: config.restart,
            autostart: config.autostart,
        }
    }
}

/// Where an instance is in its life, with the deadline that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Started; killed if not ready by `deadline`.
    Starting {
        /// Ready-timeout deadline.
        deadline: Instant,
    },
    /// Ready and the app's main instance.
    Main,
    /// Asked to stop; killed if still alive at `deadline`.
    Draining {
        /// Stop-timeout deadline.
        deadline: Instant,
    },
    /// SIGKILL sent; waiting to reap it.
    Killed,
}

impl State {
    /// The wire form of this state.
    pub fn wire(self) -> InstanceState {
        match self {
            State::Starting { .. } => InstanceState::Starting,
            State::Main => InstanceState::Main,
            State::Draining { .. } => InstanceState::Draining,
            State::Killed => InstanceState::Killed,
        }
    }

    /// The deadline of this state, if it has one.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            State::Starting { deadline } | State::Draining { deadline } => Some(deadline),
            State::Main | State::Killed => None,
        }
    }
}

/// An instance as the machine knows it: no pid, no pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// Id within the app, from 1.
    pub id: u64,
    /// Where it is in its life.
    pub state: State,
    /// When it was spawned.
    pub started: Instant,
    /// When it counts as ready under `ready = "delay:..."`.
    pub ready_at: Option<Instant>,
}

/// Why an app is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `ally-ctl stop` or `restart`, or `autostart = false`.
    Stopped,
    /// Removed from the config by `reread`: forgotten once stopped.
    Removed,
    /// The master is shutting down; `removed` if the app also left the
    /// config meanwhile.
    ShuttingDown {
        /// Removed from the config too.
        removed: bool,
    },
}

/// Where an app is as a whole. One value, so no combination of "stopped",
/// "failed", "reloading" and "shutting down" can contradict another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Life {
    /// Supervised, no reload under way; while no instance is main a
    /// restart is planned at `restart_at` (none before the first start).
    Up {
        /// When the crash restart is due.
        restart_at: Option<Instant>,
    },
    /// Supervised, instance `instance` starting for `waiters`; reloads
    /// asked meanwhile are `queued` and share the next one.
    Reloading {
        /// The new instance's id.
        instance: u64,
        /// Who hears how it went.
        waiters: Vec<Waiter>,
        /// Who asked since.
        queued: Vec<Waiter>,
    },
    /// Crashed too often (or restarts are off): left alone until `start`.
    Failed,
    /// Stopped on purpose; its instances drain.
    Down {
        /// Why.
        why: Why,
        /// `stop` clients waiting for the last instance to exit.
        stop_waiters: Vec<u64>,
        /// `start` and `restart` clients waiting for the last instance to
        /// exit, then for a new one to be main.
        then_start: Vec<Waiter>,
    },
    /// Removed and stopped: the master forgets it.
    Gone,
}

/// Something that happened to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The master starts: start the first instance, or stay down under
    /// `autostart = false`.
    Boot,
    /// A reload is asked on behalf of the waiter.
    Reload(Waiter),
    /// [`Effect::Spawn`] of instance `id` succeeded.
    Spawned {
        /// The instance.
        id: u64,
    },
    /// [`Effect::Spawn`] of instance `id` failed with `error`.
    SpawnFailed {
        /// The instance.
        id: u64,
        /// What went wrong, with the command.
        error: String,
    },
    /// Instance `id` reported ready.
    Ready {
        /// The instance.
        id: u64,
    },
    /// Instance `id` was reaped.
    Exited {
        /// The instance.
        id: u64,
        /// How it ended ("exited with status 1").
        how: String,
        /// The last lines of its stderr, for failure reports.
        tail: String,
    },
    /// The clock reached `now`: apply the deadlines that passed. `tails`
    /// holds the stderr tails of starting instances past their deadline.
    Timer {
        /// Stderr tails by instance id.
        tails: Vec<(u64, String)>,
    },
    /// `ally-ctl start`.
    Start(Waiter),
    /// `ally-ctl stop` from connection `conn`.
    Stop {
        /// The control connection.
        conn: u64,
    },
    /// `ally-ctl restart`.
    Restart(Waiter),
    /// `ally-ctl kill`: send `signal` to every live instance.
    Signal(Signal),
    /// `reread` changed the app's settings: they apply from now on.
    Reconfigure(Settings),
    /// `reread` removed the app from the config.
    Remove,
    /// `reread` put the removed app back, with these settings.
    Readmit(Settings),
    /// The master is shutting down.
    Shutdown,
    /// A second shutdown signal: kill everything now.
    ForceShutdown,
}

/// Something for the edge to do.
#[derive(Debug)]
pub enum Effect {
    /// Spawn instance `id`, then report [`Event::Spawned`] or
    /// [`Event::SpawnFailed`] before any other event.
    Spawn {
        /// The instance.
        id: u64,
    },
    /// Send `signal` to instance `id`.
    Signal {
        /// The instance.
        id: u64,
        /// The signal.
        signal: Signal,
    },
    /// SIGKILL instance `id`'s process group.
    Kill {
        /// The instance.
        id: u64,
    },
    /// Tell a waiter or a control client.
    Notify(Notice),
    /// Write a line to the master's log.
    Log(String),
    /// The app is removed and stopped: forget it.
    Forget,
}

/// One app's lifecycle.
#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    instances: Vec<Tracked>,
    next_id: u64,
    life: Life,
    /// Consecutive crashes, for back-off and `max_failures`.
    crashes: u32,
    /// Crash restarts so far.
    restarts: u32,
    last_error: Option<String>,
}

/// The effects of one event; building them is the whole transition.
type Out = Vec<Effect>;

impl Machine {
    /// An app with no instance yet, up but not started (see
    /// [`Event::Boot`]).
    pub fn new(settings: Settings) -> Machine {
        Machine {
            settings,
            instances: Vec::new(),
            next_id: 1,
            life: Life::Up { restart_at: None },
            crashes: 0,
            restarts: 0,
            last_error: None,
        }
    }

    /// Applies `event`, happening at `now`; returns what to do, in order.
    pub fn step(&mut self, now: Instant, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::Boot if self.settings.autostart => self.begin(Vec::new(), &mut out),
            Event::Boot => self.life = down(Why::Stopped),
            Event::Reload(waiter) => self.reload(waiter, &mut out),
            Event::Spawned { id } => self.spawned(id, now, &mut out),
            Event::SpawnFailed { id, error } => {
                let message = format!(
                    "cannot start instance {id} of {}: {error}",
                    self.settings.name
                );
                self.reload_failed(id, message, now, &mut out);
            }
            Event::Ready { id } => self.ready(id, now, &mut out),
            Event::Exited { id, how, tail } => self.exited(id, &how, &tail, now, &mut out),
            Event::Timer { tails } => self.timer(now, &tails, &mut out),
            Event::Start(waiter) => self.start(waiter, &mut out),
            Event::Stop { conn } => self.stop(conn, now, &mut out),
            Event::Restart(waiter) => self.restart(waiter, now, &mut out),
            Event::Signal(signal) => self.signal(signal, &mut out),
            Event::Reconfigure(settings) => self.settings = settings,
            Event::Remove => self.remove(now, &mut out),
            Event::Readmit(settings) => {
                self.settings = settings;
                self.readmit(&mut out);
            }
            Event::Shutdown => self.shutdown(now, &mut out),
            Event::ForceShutdown => {
                for i in &mut self.instances {
                    i.state = State::Killed;
                    out.push(Effect::Kill { id: i.id });
                }
            }
        }
        out
    }

    /// Instance `id`, if it is tracked (spawned and not yet reaped).
    pub fn instance(&self, id: u64) -> Option<&Tracked> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// Every tracked instance, oldest first.
    pub fn instances(&self) -> &[Tracked] {
        &self.instances
    }

    /// Id of the main instance, if one serves.
    pub fn main(&self) -> Option<u64> {
        self.instances
            .iter()
            .find(|i| i.state == State::Main)
            .map(|i| i.id)
    }

    /// The instance a reload is starting, if one is.
    pub fn reloading(&self) -> Option<u64> {
        match self.life {
            Life::Reloading { instance, .. } => Some(instance),
            _ => None,
        }
    }

    /// How many reloads wait for the one under way.
    pub fn queued(&self) -> usize {
        match &self.life {
            Life::Reloading { queued, .. } => queued.len(),
            _ => 0,
        }
    }

    /// Crash restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Consecutive crashes of the main instance (reset by a stable run).
    pub fn crashes(&self) -> u32 {
        self.crashes
    }

    /// The back-off delay the last crash in a row started, if any.
    pub fn backoff(&self) -> Option<Duration> {
        let attempt = self.crashes.checked_sub(1)?;
        Some(backoff_delay(&self.settings.restart, attempt))
    }

    /// Why the last reload or the last main instance failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The nearest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let restart = match self.life {
            Life::Up { restart_at } => restart_at,
            _ => None,
        };
        self.instances
            .iter()
            .filter_map(|i| i.state.deadline())
            .chain(
                self.instances
                    .iter()
                    .filter(|i| matches!(i.state, State::Starting { .. }))
                    .filter_map(|i| i.ready_at),
            )
            .chain(restart)
            .min()
    }

    /// Where the app is as `ally-ctl list` shows it, at `now` (`wall` on
    /// the wall clock).
    pub fn app_state(&self, now: Instant, wall: SystemTime) -> AppState {
        match self.life {
            Life::Down { .. } | Life::Gone if self.instances.is_empty() => AppState::Stopped,
            Life::Down { .. } | Life::Gone => AppState::Stopping,
            Life::Failed => AppState::Failed,
            _ if self.main().is_some() => AppState::Running,
            Life::Up {
                restart_at: Some(at),
            } => AppState::Backoff {
                until_unix_ms: unix_ms(wall + at.saturating_duration_since(now)),
            },
            _ => AppState::Starting,
        }
    }

    /// Whether the app has come to rest: serving, stopped or failed.
    pub fn settled(&self) -> bool {
        matches!(self.life, Life::Down { .. } | Life::Failed | Life::Gone) || self.main().is_some()
    }

    /// Whether the master is shutting down and nothing is left of the app.
    pub fn is_stopped(&self) -> bool {
        let shutting = matches!(
            self.life,
            Life::Down {
                why: Why::ShuttingDown { .. },
                ..
            } | Life::Gone
        );
        shutting && self.instances.is_empty()
    }

    /// Whether the app left the config and only waits for its instances.
    pub fn is_retired(&self) -> bool {
        matches!(
            self.life,
            Life::Down {
                why: Why::Removed | Why::ShuttingDown { removed: true },
                ..
            } | Life::Gone
        )
    }

    /// Whether the master can forget the app.
    pub fn is_gone(&self) -> bool {
        self.life == Life::Gone
    }

    /// Where the app stands for the sockets none of its live instances
    /// holds: serving once a main is ready; awaiting an instance while it
    /// is supervised or stopping only to start again (`restart`, or `start`
    /// while it stops); else down — `failed` too, where no instance is
    /// coming until an operator acts, so a client is refused rather than
    /// left waiting in a queue nobody accepts from.
    pub fn standing(&self) -> Standing {
        if self.main().is_some() {
            return Standing::Serving;
        }
        match &self.life {
            Life::Up { .. } | Life::Reloading { .. } => Standing::Awaiting,
            Life::Down {
                why: Why::Stopped,
                then_start,
                ..
            } if !then_start.is_empty() => Standing::Awaiting,
            Life::Down { .. } | Life::Failed | Life::Gone => Standing::Down,
        }
    }
}

/// A fresh [`Life::Down`] for `why`, with no one waiting.
fn down(why: Why) -> Life {
    Life::Down {
        why,
        stop_waiters: Vec::new(),
        then_start: Vec::new(),
    }
}

fn notify_failed(waiter: Waiter, failure: Failure) -> Effect {
    Effect::Notify(Notice::Failed { waiter, failure })
}

fn shutting_down(waiter: Waiter) -> Effect {
    notify_failed(
        waiter,
        Failure::new(ErrorCode::ShuttingDown, "the master is shutting down"),
    )
}

fn stopped(conn: u64, app: &str) -> Effect {
    Effect::Notify(Notice::Control {
        conn,
        response: ControlResponse::Done(format!("{app}: stopped")),
    })
}

/// The delay before restart number `attempt` (from 0): `min_delay` times
/// `factor` to the power `attempt`, at most `max_delay`.
pub fn backoff_delay(policy: &RestartPolicy, attempt: u32) -> Duration {
    let mut delay = policy.min_delay;
    for _ in 0..attempt {
        delay = delay.saturating_mul(policy.factor);
        if delay >= policy.max_delay {
            break;
        }
    }
    delay.min(policy.max_delay)
}
