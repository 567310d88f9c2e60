//! One app: its instances and the reload state machine.
//!
//! Every start is a reload: a new instance is spawned and becomes main when
//! it reports ready, at which point every older instance gets the stop
//! signal. If it exits or misses its ready deadline first it is killed, the
//! old main keeps serving, and whoever asked is told why. A reload asked
//! while one runs is queued; queued requests share the next reload.
//!
//! The app does no I/O on connections: it returns [`Notice`]s for the event
//! loop to deliver.

use std::time::{Duration, Instant};

use ally_proto::{ControlResponse, ErrorCode, Failure};
use rustix::process::{Pid, WaitStatus};

use crate::config::{AppConfig, ReadyMode, RestartPolicy};
use crate::instance::{Instance, Launch, State, Stream, describe_exit, signal_name};
use crate::listeners::{Bound, Listeners};
use crate::log;
use crate::logs::AppLog;

mod io;
mod lifecycle;
mod status;
use crate::shared_state::{Reply, SharedState};

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

#[derive(Debug)]
struct Reload {
    instance: u64,
    waiters: Vec<Waiter>,
}

/// Crash-restart back-off.
#[derive(Debug, Default)]
struct Backoff {
    crashes: u32,
    at: Option<Instant>,
}

/// An app from the config and its live instances.
#[derive(Debug)]
pub struct App {
    /// Its settings.
    pub config: AppConfig,
    /// Live (not yet reaped) instances, oldest first.
    pub instances: Vec<Instance>,
    /// Cache, atomics and locks: they outlive every instance.
    pub state: SharedState,
    /// Where its instances' output goes.
    pub log: AppLog,
    /// Connections following the log (`ally-ctl logs -f`).
    pub followers: Vec<u64>,
    /// Lines written since the followers were last sent what is new.
    pub unsent: Vec<String>,
    /// The sockets of its `listen` key, handed to every instance at fds
    /// 3.. (bound while the app is configured, like a socket unit).
    pub sockets: Vec<(String, Bound)>,
    next_id: u64,
    reload: Option<Reload>,
    queued: Vec<Waiter>,
    last_error: Option<String>,
    backoff: Backoff,
    /// The master is shutting down: nothing starts again.
    shutting_down: bool,
    /// Stopped on purpose (`ally-ctl stop`, `autostart = false`, removed by
    /// `reread`): no instance should run.
    down: bool,
    /// Crashed `max_failures` times in a row: left alone until `start`.
    failed: bool,
    /// Crash restarts so far.
    restarts: u32,
    /// `stop` clients waiting for the last instance to exit.
    stop_waiters: Vec<u64>,
    /// `restart` clients waiting for the last instance to exit, then for
    /// the new one to be main.
    start_after_stop: Vec<Waiter>,
    /// Removed from the config by `reread`; forgotten once stopped.
    retired: bool,
}

impl App {
    /// An app with no instances yet, writing its output to `log`, handing
    /// `sockets` to its instances.
    pub fn new(config: AppConfig, log: AppLog, sockets: Vec<(String, Bound)>) -> App {
        App {
            sockets,
            state: SharedState::new(config.limits),
            log,
            followers: Vec::new(),
            unsent: Vec::new(),
            config,
            instances: Vec::new(),
            next_id: 1,
            reload: None,
            queued: Vec::new(),
            last_error: None,
            backoff: Backoff::default(),
            shutting_down: false,
            down: false,
            failed: false,
            restarts: 0,
            stop_waiters: Vec::new(),
            start_after_stop: Vec::new(),
            retired: false,
        }
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Id of the main instance, if one serves.
    pub fn main(&self) -> Option<u64> {
        self.instances
            .iter()
            .find(|i| i.state == State::Main)
            .map(|i| i.id)
    }

    /// Whether the app has stopped for good: shutting down, nothing left.
    pub fn is_stopped(&self) -> bool {
        self.shutting_down && self.instances.is_empty()
    }

    /// Asks for a reload on behalf of `waiter`.
    pub fn request_reload(&mut self, waiter: Waiter, launch: &Launch, out: &mut Vec<Notice>) {
        if self.shutting_down {
            out.push(Notice::Failed {
                waiter,
                failure: Failure::new(ErrorCode::ShuttingDown, "the master is shutting down"),
            });
        } else if self.down {
            out.push(Notice::Failed {
                waiter,
                failure: Failure::new(
                    ErrorCode::BadRequest,
                    format!(
                        "{} is stopped; start it with `ally-ctl start {}`",
                        self.config.name, self.config.name
                    ),
                ),
            });
        } else if self.reload.is_some() {
            self.queued.push(waiter);
        } else {
            self.begin(vec![waiter], launch, out);
        }
    }

    /// Starts a new instance for `waiters` (none for the first start or a
    /// crash restart).
    pub fn begin(&mut self, waiters: Vec<Waiter>, launch: &Launch, out: &mut Vec<Notice>) {
        self.backoff.at = None;
        let id = self.next_id;
        self.next_id += 1;
        match Instance::spawn(&self.config, id, launch, &self.sockets) {
            Ok(instance) => {
                log!(
                    "{}#{id}: started, pid {}",
                    self.name(),
                    instance.pid.as_raw_nonzero()
                );
                self.instances.push(instance);
                out.extend(waiters.iter().map(|&waiter| Notice::Started {
                    waiter,
                    app: self.config.name.clone(),
                    instance: id,
                }));
                // Only `reload --wait`, `start` and `restart` hear the
                // outcome too.
                let waiters = waiters
                    .into_iter()
                    .filter(|w| {
                        matches!(
                            w,
                            Waiter::Control { wait: true, .. } | Waiter::Lifecycle { .. }
                        )
                    })
                    .collect();
                self.reload = Some(Reload {
                    instance: id,
                    waiters,
                });
                if self.config.ready == ReadyMode::Immediate {
                    self.on_ready(id, launch, out);
                }
            }
            Err(e) => {
                let message = format!(
                    "cannot start instance {id} of {}: `{}` in {}: {e}",
                    self.name(),
                    self.config.command.join(" "),
                    self.config.cwd.display()
                );
                self.fail(waiters, message, out);
                self.after_reload(launch, out);
            }
        }
    }

    /// Instance `id` reported ready.
    pub fn on_ready(&mut self, id: u64, launch: &Launch, out: &mut Vec<Notice>) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
            return;
        };
        if !matches!(instance.state, State::Starting { .. }) {
            return;
        }
        instance.state = State::Main;
        log!("{}#{id}: ready, now main", self.config.name);
        let now = Instant::now();
        let deadline = now + self.config.stop_timeout;
        for older in self.instances.iter_mut().filter(|i| i.id < id) {
            if matches!(older.state, State::Main | State::Starting { .. }) {
                older.signal(self.config.stop_signal);
                older.state = State::Draining { deadline };
                log!(
                    "{}#{}: sent {}, draining (killed after {:?})",
                    self.config.name,
                    older.id,
                    signal_name(self.config.stop_signal),
                    self.config.stop_timeout
                );
            }
        }
        self.cap_draining();
        if let Some(reload) = self.reload.take_if(|r| r.instance == id) {
            self.last_error = None;
            out.extend(reload.waiters.into_iter().map(|waiter| Notice::Done {
                waiter,
                app: self.config.name.clone(),
                instance: id,
            }));
            self.after_reload(launch, out);
        }
    }

    /// The process `pid` ended with `status`. Returns `false` if it is not an
    /// instance of this app.
    pub fn on_exit(
        &mut self,
        pid: Pid,
        status: WaitStatus,
        listeners: &mut Listeners,
        launch: &Launch,
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
        let how = describe_exit(status);
        let id = instance.id;
        match instance.state {
            State::Starting { .. } => {
                let message = format!(
                    "instance {id} of {} {how} before it was ready; {}",
                    self.config.name,
                    instance.stderr_tail()
                );
                if let Some(reload) = self.reload.take_if(|r| r.instance == id) {
                    self.fail(reload.waiters, message, out);
                    self.after_reload(launch, out);
                }
            }
            State::Main => {
                let message = format!(
                    "main instance {id} of {} {how} unexpectedly; {}",
                    self.config.name,
                    instance.stderr_tail()
                );
                log!("{message}");
                self.last_error = Some(message);
                if instance.started.elapsed() >= self.config.restart.stable_after {
                    self.backoff.crashes = 0;
                }
                self.schedule_restart();
            }
            State::Draining { .. } | State::Killed => {
                log!("{}#{id}: {how}", self.config.name);
            }
        }
        if self.instances.is_empty() {
            self.on_last_exit(launch, out);
        }
        true
    }

    /// Instance `id` exited: its locks go.
    pub fn owner_gone(&mut self, id: u64, out: &mut Vec<Notice>) {
        let mut replies = Vec::new();
        self.state.owner_gone(id, &mut replies);
        out.extend(replies.into_iter().map(Notice::Reply));
    }

    /// Applies deadlines that have passed by `now`.
    pub fn on_timer(&mut self, now: Instant, launch: &Launch, out: &mut Vec<Notice>) {
        self.report_strangers(now);
        let mut replies = Vec::new();
        self.state.on_timer(now, &mut replies);
        out.extend(replies.into_iter().map(Notice::Reply));
        let delayed: Vec<u64> = self
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Starting { .. }))
            .filter(|i| i.ready_at.is_some_and(|at| at <= now))
            .map(|i| i.id)
            .collect();
        for id in delayed {
            log!("{}#{id}: ready by its delay", self.config.name);
            self.on_ready(id, launch, out);
        }
        let mut unready = None;
        for instance in &mut self.instances {
            match instance.state {
                State::Starting { deadline } if deadline <= now => {
                    instance.kill();
                    unready = Some(instance.id);
                }
                State::Draining { deadline } if deadline <= now => {
                    log!(
                        "{}#{}: still running {:?} after the stop signal; sent SIGKILL",
                        self.config.name,
                        instance.id,
                        self.config.stop_timeout
                    );
                    instance.kill();
                }
                _ => {}
            }
        }
        if let Some(id) = unready {
            // What it wrote last says why, in the report.
            for stream in [Stream::Stdout, Stream::Stderr] {
                self.read_output(id, stream);
            }
            let tail = self
                .instances
                .iter()
                .find(|i| i.id == id)
                .map(Instance::stderr_tail)
                .unwrap_or_default();
            let message = format!(
                "instance {id} of {} was not ready within {:?} and was killed; {tail}",
                self.config.name, self.config.ready_timeout
            );
            match self.reload.take_if(|r| r.instance == id) {
                Some(reload) => self.fail(reload.waiters, message, out),
                None => self.fail(Vec::new(), message, out),
            }
            self.after_reload(launch, out);
        }
        if self.backoff.at.is_some_and(|at| at <= now) && self.reload.is_none() {
            self.restarts = self.restarts.saturating_add(1);
            log!("{}: restarting after a crash", self.config.name);
            self.begin(Vec::new(), launch, out);
        }
    }

    /// The nearest deadline this app has, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter_map(|i| i.state.deadline())
            .chain(
                self.instances
                    .iter()
                    .filter(|i| matches!(i.state, State::Starting { .. }))
                    .filter_map(|i| i.ready_at),
            )
            .chain(self.backoff.at)
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
        for instance in &mut self.instances {
            instance.kill();
        }
    }

    fn fail(&mut self, waiters: Vec<Waiter>, message: String, out: &mut Vec<Notice>) {
        log!("{}: {message}", self.config.name);
        out.extend(waiters.into_iter().map(|waiter| Notice::Failed {
            waiter,
            failure: Failure::new(ErrorCode::ReloadFailed, message.clone()),
        }));
        self.last_error = Some(message);
        if self.main().is_none() {
            self.schedule_restart();
        }
    }

    /// After a reload ends: start the queued one, if any.
    fn after_reload(&mut self, launch: &Launch, out: &mut Vec<Notice>) {
        if self.reload.is_none() && !self.queued.is_empty() && !self.shutting_down && !self.down {
            let waiters = std::mem::take(&mut self.queued);
            self.begin(waiters, launch, out);
        }
    }

    /// No main instance and nothing starting: plan the next start under the
    /// app's restart policy, or give up and mark the app failed.
    fn schedule_restart(&mut self) {
        if self.shutting_down || self.down || self.reload.is_some() || self.main().is_some() {
            return;
        }
        let policy = self.config.restart;
        self.backoff.crashes = self.backoff.crashes.saturating_add(1);
        if !policy.enabled {
            self.failed = true;
            log!(
                "{}: no main instance, and restarts are disabled: failed",
                self.config.name
            );
            return;
        }
        if policy.max_failures > 0 && self.backoff.crashes > policy.max_failures {
            self.failed = true;
            log!(
                "{}: failed {} times in a row; not restarting until `ally-ctl start {}`",
                self.config.name,
                policy.max_failures,
                self.config.name
            );
            return;
        }
        let delay = backoff_delay(&policy, self.backoff.crashes - 1);
        self.backoff.at = Some(Instant::now() + delay);
        log!(
            "{}: no main instance; restarting in {delay:?}",
            self.config.name
        );
    }

    /// SIGKILLs the oldest draining instances beyond `max_draining`.
    fn cap_draining(&mut self) {
        let draining = self
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Draining { .. }))
            .count();
        let excess = draining.saturating_sub(self.config.max_draining.max(1));
        let oldest = self
            .instances
            .iter_mut()
            .filter(|i| matches!(i.state, State::Draining { .. }))
            .take(excess);
        for instance in oldest {
            log!(
                "{}#{}: more than max_draining = {} instances draining; sent SIGKILL to the oldest",
                self.config.name,
                instance.id,
                self.config.max_draining
            );
            instance.kill();
        }
    }
}

/// The delay before restart number `attempt` (from 0): `min_delay` times
/// `factor` to the power `attempt`, at most `max_delay`.
fn backoff_delay(policy: &RestartPolicy, attempt: u32) -> Duration {
    let mut delay = policy.min_delay;
    for _ in 0..attempt {
        delay = delay.saturating_mul(policy.factor);
        if delay >= policy.max_delay {
            break;
        }
    }
    delay.min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RestartPolicy::default();
        let ms = |a| backoff_delay(&policy, a).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3)], [500, 1000, 2000, 4000]);
        assert_eq!(ms(10), 30_000);
        assert_eq!(ms(u32::MAX), 30_000);
    }
}
