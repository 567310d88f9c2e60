//! Transitions of a reload and of crash recovery: a new instance is
//! spawned, becomes main when ready (older ones drain, the oldest beyond
//! `max_draining` killed), or fails by exiting or missing its deadline; a
//! main instance that dies is restarted after a back-off, until
//! `max_failures`.

use std::time::Instant;

use ally_proto::{ErrorCode, Failure};

use super::{
    Effect, Life, Machine, Out, State, Tracked, Why, backoff_delay, notify_failed, shutting_down,
};
use crate::app::{Notice, Waiter};
use crate::config::ReadyMode;
use crate::instance::signal_name;

impl Machine {
    /// A reload for `waiter`: started now, queued behind the one under
    /// way, or refused when the app is down.
    pub(super) fn reload(&mut self, waiter: Waiter, out: &mut Out) {
        match &mut self.life {
            Life::Down {
                why: Why::ShuttingDown { .. },
                ..
            } => out.push(shutting_down(waiter)),
            Life::Down { .. } | Life::Gone => {
                let name = &self.settings.name;
                let failure = Failure::new(
                    ErrorCode::BadRequest,
                    format!("{name} is stopped; start it with `ally-ctl start {name}`"),
                );
                out.push(notify_failed(waiter, failure));
            }
            Life::Reloading { queued, .. } => queued.push(waiter),
            Life::Up { .. } | Life::Failed => self.begin(vec![waiter], out),
        }
    }

    /// Starts a new instance for `waiters` (none for a first start or a
    /// crash restart).
    pub(super) fn begin(&mut self, waiters: Vec<Waiter>, out: &mut Out) {
        let id = self.next_id;
        self.next_id += 1;
        self.life = Life::Reloading {
            instance: id,
            waiters,
            queued: Vec::new(),
        };
        out.push(Effect::Spawn { id });
    }

    /// Instance `id` runs: it starts its ready deadline, and those who
    /// asked hear it started.
    pub(super) fn spawned(&mut self, id: u64, now: Instant, out: &mut Out) {
        let ready_at = match self.settings.ready {
            ReadyMode::Delay(delay) => Some(now + delay),
            ReadyMode::Lib | ReadyMode::Notify | ReadyMode::Immediate => None,
        };
        self.instances.push(Tracked {
            id,
            state: State::Starting {
                deadline: now + self.settings.ready_timeout,
            },
            started: now,
            ready_at,
        });
        if let Life::Reloading {
            instance, waiters, ..
        } = &mut self.life
            && *instance == id
        {
            out.extend(waiters.iter().map(|&waiter| {
                Effect::Notify(Notice::Started {
                    waiter,
                    app: self.settings.name.clone(),
                    instance: id,
                })
            }));
            // Only `reload --wait`, `start` and `restart` hear the outcome
            // too.
            waiters.retain(|w| {
                matches!(
                    w,
                    Waiter::Control { wait: true, .. } | Waiter::Lifecycle { .. }
                )
            });
        }
        if self.settings.ready == ReadyMode::Immediate {
            self.ready(id, now, out);
        }
    }

    /// Instance `id` is ready: it becomes main, every older one drains.
    pub(super) fn ready(&mut self, id: u64, now: Instant, out: &mut Out) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
            return;
        };
        if !matches!(instance.state, State::Starting { .. }) {
            return;
        }
        instance.state = State::Main;
        let name = &self.settings.name;
        out.push(Effect::Log(format!("{name}#{id}: ready, now main")));
        let deadline = now + self.settings.stop_timeout;
        let signal = self.settings.stop_signal;
        for older in self.instances.iter_mut().filter(|i| i.id < id) {
            if matches!(older.state, State::Main | State::Starting { .. }) {
                older.state = State::Draining { deadline };
                out.push(Effect::Signal {
                    id: older.id,
                    signal,
                });
                out.push(Effect::Log(format!(
                    "{name}#{}: sent {}, draining (killed after {:?})",
                    older.id,
                    signal_name(signal),
                    self.settings.stop_timeout
                )));
            }
        }
        self.cap_draining(out);
        if let Life::Reloading { instance, .. } = self.life
            && instance == id
            && let Life::Reloading {
                waiters, queued, ..
            } = std::mem::replace(&mut self.life, Life::Up { restart_at: None })
        {
            self.last_error = None;
            out.extend(waiters.into_iter().map(|waiter| {
                Effect::Notify(Notice::Done {
                    waiter,
                    app: self.settings.name.clone(),
                    instance: id,
                })
            }));
            self.after_reload(queued, out);
        }
    }

    /// SIGKILLs the oldest draining instances beyond `max_draining`.
    pub(super) fn cap_draining(&mut self, out: &mut Out) {
        let draining = self
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Draining { .. }))
            .count();
        let excess = draining.saturating_sub(self.settings.max_draining.max(1));
        let oldest = self
            .instances
            .iter_mut()
            .filter(|i| matches!(i.state, State::Draining { .. }))
            .take(excess);
        for instance in oldest {
            instance.state = State::Killed;
            out.push(Effect::Log(format!(
                "{}#{}: more than max_draining = {} instances draining; sent SIGKILL to the oldest",
                self.settings.name, instance.id, self.settings.max_draining
            )));
            out.push(Effect::Kill { id: instance.id });
        }
    }

    /// The reload starting instance `id` failed with `message` (a spawn
    /// error, an exit, a missed deadline); an instance starting for no
    /// reload fails with no one to tell.
    pub(super) fn reload_failed(&mut self, id: u64, message: String, now: Instant, out: &mut Out) {
        match std::mem::replace(&mut self.life, Life::Up { restart_at: None }) {
            Life::Reloading {
                instance,
                waiters,
                queued,
            } if instance == id => {
                self.fail(waiters, message, now, out);
                self.after_reload(queued, out);
            }
            life => {
                self.life = life;
                self.fail(Vec::new(), message, now, out);
            }
        }
    }

    pub(super) fn fail(
        &mut self,
        waiters: Vec<Waiter>,
        message: String,
        now: Instant,
        out: &mut Out,
    ) {
        out.push(Effect::Log(format!("{}: {message}", self.settings.name)));
        out.extend(waiters.into_iter().map(|waiter| {
            notify_failed(
                waiter,
                Failure::new(ErrorCode::ReloadFailed, message.clone()),
            )
        }));
        self.last_error = Some(message);
        if self.main().is_none() {
            self.schedule_restart(now, out);
        }
    }

    /// After a reload ends: start the queued one, if any.
    pub(super) fn after_reload(&mut self, queued: Vec<Waiter>, out: &mut Out) {
        if queued.is_empty() {
            return;
        }
        if matches!(self.life, Life::Up { .. } | Life::Failed) {
            self.begin(queued, out);
        }
    }

    /// No main instance and nothing starting: plan the next start under the
    /// restart policy, or give up and mark the app failed.
    pub(super) fn schedule_restart(&mut self, now: Instant, out: &mut Out) {
        if !matches!(self.life, Life::Up { .. } | Life::Failed) || self.main().is_some() {
            return;
        }
        let policy = self.settings.restart;
        let name = &self.settings.name;
        self.crashes = self.crashes.saturating_add(1);
        if !policy.enabled {
            self.life = Life::Failed;
            out.push(Effect::Log(format!(
                "{name}: no main instance, and restarts are disabled: failed"
            )));
        } else if policy.max_failures > 0 && self.crashes > policy.max_failures {
            self.life = Life::Failed;
            out.push(Effect::Log(format!(
                "{name}: failed {} times in a row; not restarting until `ally-ctl start {name}`",
                policy.max_failures
            )));
        } else {
            let delay = backoff_delay(&policy, self.crashes - 1);
            self.life = Life::Up {
                restart_at: Some(now + delay),
            };
            out.push(Effect::Log(format!(
                "{name}: no main instance; restarting in {delay:?}"
            )));
        }
    }

    pub(super) fn exited(&mut self, id: u64, how: &str, tail: &str, now: Instant, out: &mut Out) {
        let Some(index) = self.instances.iter().position(|i| i.id == id) else {
            return;
        };
        let instance = self.instances.remove(index);
        let name = &self.settings.name;
        match instance.state {
            State::Starting { .. } => {
                let message = format!("instance {id} of {name} {how} before it was ready; {tail}");
                if self.reloading() == Some(id) {
                    self.reload_failed(id, message, now, out);
                }
            }
            State::Main => {
                let message = format!("main instance {id} of {name} {how} unexpectedly; {tail}");
                out.push(Effect::Log(message.clone()));
                self.last_error = Some(message);
                if now.saturating_duration_since(instance.started)
                    >= self.settings.restart.stable_after
                {
                    self.crashes = 0;
                }
                self.schedule_restart(now, out);
            }
            State::Draining { .. } | State::Killed => {
                out.push(Effect::Log(format!("{name}#{id}: {how}")));
            }
        }
        if self.instances.is_empty() {
            self.last_exit(out);
        }
    }

    /// Applies the deadlines that passed by `now`.
    pub(super) fn timer(&mut self, now: Instant, tails: &[(u64, String)], out: &mut Out) {
        let delayed: Vec<u64> = self
            .instances
            .iter()
            .filter(|i| matches!(i.state, State::Starting { .. }))
            .filter(|i| i.ready_at.is_some_and(|at| at <= now))
            .map(|i| i.id)
            .collect();
        for id in delayed {
            out.push(Effect::Log(format!(
                "{}#{id}: ready by its delay",
                self.settings.name
            )));
            self.ready(id, now, out);
        }
        let mut unready = Vec::new();
        for instance in &mut self.instances {
            match instance.state {
                State::Starting { deadline } if deadline <= now => {
                    instance.state = State::Killed;
                    out.push(Effect::Kill { id: instance.id });
                    unready.push(instance.id);
                }
                State::Draining { deadline } if deadline <= now => {
                    instance.state = State::Killed;
                    out.push(Effect::Log(format!(
                        "{}#{}: still running {:?} after the stop signal; sent SIGKILL",
                        self.settings.name, instance.id, self.settings.stop_timeout
                    )));
                    out.push(Effect::Kill { id: instance.id });
                }
                _ => {}
            }
        }
        for id in unready {
            let tail = tails
                .iter()
                .find(|(i, _)| *i == id)
                .map_or("(its stderr was empty)", |(_, tail)| tail.as_str());
            let message = format!(
                "instance {id} of {} was not ready within {:?} and was killed; {tail}",
                self.settings.name, self.settings.ready_timeout
            );
            self.reload_failed(id, message, now, out);
        }
        if let Life::Up {
            restart_at: Some(at),
        } = self.life
            && at <= now
        {
            self.restarts = self.restarts.saturating_add(1);
            out.push(Effect::Log(format!(
                "{}: restarting after a crash",
                self.settings.name
            )));
            self.begin(Vec::new(), out);
        }
    }
}
