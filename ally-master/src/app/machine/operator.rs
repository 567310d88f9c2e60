//! Transitions an operator asks for: start, stop, restart, kill, the
//! config's removal and re-addition, and the master's shutdown.

use std::time::Instant;

use ally_proto::{ControlResponse, ErrorCode, Failure};
use rustix::process::Signal;

use super::{Effect, Life, Machine, Out, State, Why, down, notify_failed, shutting_down, stopped};
use crate::app::{Notice, Waiter};
use crate::instance::signal_name;

impl Machine {
    /// `ally-ctl start`: brings a stopped or failed app up; `waiter` hears
    /// `Done` once an instance is main.
    pub(super) fn start(&mut self, waiter: Waiter, out: &mut Out) {
        let main = self.main();
        let stopping = !self.instances.is_empty();
        match &mut self.life {
            Life::Down {
                why: Why::ShuttingDown { .. },
                ..
            } => return out.push(shutting_down(waiter)),
            Life::Down {
                why: Why::Removed, ..
            }
            | Life::Gone => return out.push(self.removed(waiter)),
            // Still stopping: start once the last instance is gone.
            Life::Down { then_start, .. } if stopping => return then_start.push(waiter),
            Life::Up { .. } | Life::Reloading { .. } if main.is_some() => {
                return out.push(Effect::Notify(Notice::Done {
                    waiter,
                    app: self.settings.name.clone(),
                    instance: main.unwrap_or_default(),
                }));
            }
            Life::Up { .. } | Life::Reloading { .. } | Life::Down { .. } | Life::Failed => {}
        }
        self.crashes = 0;
        if !matches!(self.life, Life::Reloading { .. }) {
            self.life = Life::Up { restart_at: None };
        }
        self.reload(waiter, out);
    }

    /// `ally-ctl stop`: every instance is asked to stop and the app stays
    /// down; `conn` hears `Done` once no instance is left.
    pub(super) fn stop(&mut self, conn: u64, now: Instant, out: &mut Out) {
        let why = format!("{} was stopped by `ally-ctl stop`", self.settings.name);
        self.take_down(Why::Stopped, &why, ErrorCode::BadRequest, now, out);
        match &mut self.life {
            Life::Down { stop_waiters, .. } if !self.instances.is_empty() => {
                stop_waiters.push(conn);
            }
            _ => out.push(stopped(conn, &self.settings.name)),
        }
    }

    /// `ally-ctl restart`: stop, then start once the last instance is gone.
    pub(super) fn restart(&mut self, waiter: Waiter, now: Instant, out: &mut Out) {
        match self.life {
            Life::Down {
                why: Why::ShuttingDown { .. },
                ..
            } => return out.push(shutting_down(waiter)),
            Life::Down {
                why: Why::Removed, ..
            }
            | Life::Gone => return out.push(self.removed(waiter)),
            _ => {}
        }
        let why = format!("{} is being restarted", self.settings.name);
        self.take_down(Why::Stopped, &why, ErrorCode::BadRequest, now, out);
        if let Life::Down { then_start, .. } = &mut self.life {
            then_start.push(waiter);
        }
        if self.instances.is_empty() {
            self.last_exit(out);
        }
    }

    /// `ally-ctl kill`: `signal` to every instance not yet killed.
    pub(super) fn signal(&mut self, signal: Signal, out: &mut Out) {
        let mut sent = 0;
        for i in self.instances.iter().filter(|i| i.state != State::Killed) {
            out.push(Effect::Signal { id: i.id, signal });
            sent += 1;
        }
        out.push(Effect::Log(format!(
            "{}: sent {} to {sent} instance(s)",
            self.settings.name,
            signal_name(signal)
        )));
    }

    /// The app left the config: stop it for good; it is forgotten once its
    /// last instance has exited.
    pub(super) fn remove(&mut self, now: Instant, out: &mut Out) {
        if self.is_retired() {
            return;
        }
        let why = format!("{} was removed from the config", self.settings.name);
        self.take_down(Why::Removed, &why, ErrorCode::UnknownApp, now, out);
        if let Life::Down { then_start, .. } = &mut self.life {
            for waiter in std::mem::take(then_start) {
                let failure = Failure::new(ErrorCode::UnknownApp, why.clone());
                out.push(notify_failed(waiter, failure));
            }
        }
        if self.instances.is_empty() {
            self.last_exit(out);
        }
    }

    /// The removed app is in the config again: supervised again — started
    /// at once, beside its draining instances, unless `autostart = false`
    /// keeps it stopped — instead of forgotten when they exit. `stop`
    /// clients still waiting hear that the stop was overtaken.
    pub(super) fn readmit(&mut self, out: &mut Out) {
        let why = match &mut self.life {
            Life::Down { why, .. } => why,
            _ => return,
        };
        match why {
            Why::ShuttingDown { removed } => return *removed = false,
            Why::Stopped => return,
            Why::Removed if !self.settings.autostart => return *why = Why::Stopped,
            Why::Removed => {}
        }
        let Life::Down { stop_waiters, .. } = std::mem::replace(&mut self.life, Life::Failed)
        else {
            return;
        };
        let why = format!(
            "{} was added back to the config and starts again",
            self.settings.name
        );
        for conn in stop_waiters {
            out.push(Effect::Notify(Notice::Control {
                conn,
                response: ControlResponse::Error(Failure::new(ErrorCode::BadRequest, why.clone())),
            }));
        }
        self.crashes = 0;
        self.begin(Vec::new(), out);
    }

    /// The master is shutting down: stop everything for good.
    pub(super) fn shutdown(&mut self, now: Instant, out: &mut Out) {
        let removed = self.is_retired();
        let why = Why::ShuttingDown { removed };
        let message = "the master is shutting down";
        self.take_down(why, message, ErrorCode::ShuttingDown, now, out);
        if let Life::Down { then_start, .. } = &mut self.life {
            out.extend(std::mem::take(then_start).into_iter().map(shutting_down));
        }
    }

    /// Stops supervising for `why`: fails a reload under way and those
    /// queued with `message`, cancels a planned restart, and asks every
    /// instance to stop. An app already down keeps its waiters, and the
    /// stronger reason (shutting down over removed over stopped).
    fn take_down(&mut self, why: Why, message: &str, code: ErrorCode, now: Instant, out: &mut Out) {
        let life = std::mem::replace(&mut self.life, Life::Gone);
        self.life = match life {
            Life::Down {
                why: was,
                stop_waiters,
                then_start,
            } => Life::Down {
                why: stronger(was, why),
                stop_waiters,
                then_start,
            },
            Life::Gone => Life::Gone,
            Life::Reloading {
                waiters, queued, ..
            } => {
                for waiter in waiters.into_iter().chain(queued) {
                    out.push(notify_failed(waiter, Failure::new(code, message)));
                }
                down(why)
            }
            Life::Up { .. } | Life::Failed => down(why),
        };
        let deadline = now + self.settings.stop_timeout;
        for i in &mut self.instances {
            if matches!(i.state, State::Main | State::Starting { .. }) {
                i.state = State::Draining { deadline };
                out.push(Effect::Signal {
                    id: i.id,
                    signal: self.settings.stop_signal,
                });
            }
        }
    }

    /// The last instance is gone: finish a stop, start again if a restart
    /// or start asked for it, or forget a removed app.
    pub(super) fn last_exit(&mut self, out: &mut Out) {
        let Life::Down {
            why,
            stop_waiters,
            then_start,
        } = &mut self.life
        else {
            return;
        };
        for conn in std::mem::take(stop_waiters) {
            out.push(stopped(conn, &self.settings.name));
        }
        match *why {
            Why::Stopped if !then_start.is_empty() => {
                let waiters = std::mem::take(then_start);
                self.crashes = 0;
                self.begin(waiters, out);
            }
            Why::Removed | Why::ShuttingDown { removed: true } => {
                self.life = Life::Gone;
                out.push(Effect::Forget);
            }
            Why::Stopped | Why::ShuttingDown { removed: false } => {}
        }
    }

    /// The answer to a `start` or `restart` of an app no longer in the
    /// config.
    fn removed(&self, waiter: Waiter) -> Effect {
        let why = format!("{} was removed from the config", self.settings.name);
        notify_failed(waiter, Failure::new(ErrorCode::UnknownApp, why))
    }
}

/// The reason that wins when an app already down for `was` is taken down
/// for `now`.
fn stronger(was: Why, now: Why) -> Why {
    match (was, now) {
        (Why::ShuttingDown { .. }, Why::Removed) => Why::ShuttingDown { removed: true },
        (Why::ShuttingDown { removed }, _) => Why::ShuttingDown { removed },
        (Why::Removed, Why::ShuttingDown { .. }) => Why::ShuttingDown { removed: true },
        (Why::Removed, _) => Why::Removed,
        (Why::Stopped, now) => now,
    }
}
