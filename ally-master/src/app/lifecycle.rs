//! What an operator does to an app as a whole: start, stop, restart,
//! signal, and the master's own shutdown; and the state that results.

use std::time::Instant;

use ally_proto::{AppState, ControlResponse, ErrorCode, Failure};
use rustix::process::Signal;

use super::{App, Notice, Waiter};
use crate::instance::{Launch, State, signal_name, unix_ms};
use crate::log;

impl App {
    /// Where the app is as a whole.
    pub fn state(&self) -> AppState {
        if self.down || self.shutting_down {
            if self.instances.is_empty() {
                AppState::Stopped
            } else {
                AppState::Stopping
            }
        } else if self.failed {
            AppState::Failed
        } else if self.main().is_some() {
            AppState::Running
        } else if let Some(at) = self.backoff.at {
            let wait = at.saturating_duration_since(Instant::now());
            AppState::Backoff {
                until_unix_ms: unix_ms(std::time::SystemTime::now() + wait),
            }
        } else {
            AppState::Starting
        }
    }

    /// Whether the app has come to rest after the master started it:
    /// serving, stopped on purpose, or given up (`failed`).
    pub fn settled(&self) -> bool {
        self.down || self.failed || self.main().is_some()
    }

    /// Leaves the app stopped without starting it (`autostart = false`).
    pub fn hold_down(&mut self) {
        self.down = true;
    }

    /// `ally-ctl start`: brings a stopped or failed app up. `waiter` hears
    /// `Done` once an instance is main.
    pub fn start(&mut self, waiter: Waiter, launch: &Launch, out: &mut Vec<Notice>) {
        if self.shutting_down {
            out.push(shutting_down(waiter));
            return;
        }
        if let (false, false, Some(id)) = (self.down, self.failed, self.main()) {
            out.push(Notice::Done {
                waiter,
                app: self.config.name.clone(),
                instance: id,
            });
            return;
        }
        if self.down && !self.instances.is_empty() {
            // Still stopping: start once the last instance is gone.
            self.start_after_stop.push(waiter);
            return;
        }
        self.down = false;
        self.failed = false;
        self.backoff.crashes = 0;
        self.backoff.at = None;
        self.request_reload(waiter, launch, out);
    }

    /// `ally-ctl stop`: asks every instance to stop and keeps the app down.
    /// `conn` hears `Done` once no instance is left.
    pub fn stop(&mut self, conn: u64, out: &mut Vec<Notice>) {
        let why = format!("{} was stopped by `ally-ctl stop`", self.config.name);
        self.take_down(&why, ErrorCode::BadRequest, out);
        if self.instances.is_empty() {
            out.push(stopped(conn, &self.config.name));
        } else {
            self.stop_waiters.push(conn);
        }
    }

    /// `ally-ctl restart`: stop, then start once the last instance is gone.
    pub fn restart(&mut self, waiter: Waiter, launch: &Launch, out: &mut Vec<Notice>) {
        if self.shutting_down {
            out.push(shutting_down(waiter));
            return;
        }
        let why = format!("{} is being restarted", self.config.name);
        self.take_down(&why, ErrorCode::BadRequest, out);
        self.start_after_stop.push(waiter);
        if self.instances.is_empty() {
            self.on_last_exit(launch, out);
        }
    }

    /// `ally-ctl kill`: sends `signal` to every live instance; returns how
    /// many got it.
    pub fn kill(&mut self, signal: Signal) -> usize {
        let live = self.instances.iter().filter(|i| i.state != State::Killed);
        let mut sent = 0;
        for instance in live {
            instance.signal(signal);
            sent += 1;
        }
        log!(
            "{}: sent {} to {sent} instance(s)",
            self.config.name,
            signal_name(signal)
        );
        sent
    }

    /// The app left the config (`reread`): stop it for good; the master
    /// forgets it once its last instance has exited.
    pub fn retire(&mut self, out: &mut Vec<Notice>) {
        self.retired = true;
        let why = format!("{} was removed from the config", self.config.name);
        self.take_down(&why, ErrorCode::UnknownApp, out);
        for waiter in std::mem::take(&mut self.start_after_stop) {
            out.push(Notice::Failed {
                waiter,
                failure: Failure::new(ErrorCode::UnknownApp, why.clone()),
            });
        }
    }

    /// The app, removed from the config and still stopping, is in it again
    /// (`reread`): it is supervised again — started at once, beside its
    /// draining instances, unless `autostart = false` keeps it stopped —
    /// instead of being forgotten when they exit. `stop` clients still
    /// waiting hear that the stop was overtaken.
    pub fn readmit(&mut self, launch: &Launch, out: &mut Vec<Notice>) {
        self.retired = false;
        if self.shutting_down || !self.config.autostart {
            return;
        }
        let why = format!(
            "{} was added back to the config and starts again",
            self.config.name
        );
        for conn in std::mem::take(&mut self.stop_waiters) {
            out.push(Notice::Control {
                conn,
                response: ControlResponse::Error(Failure::new(ErrorCode::BadRequest, why.clone())),
            });
        }
        self.down = false;
        self.failed = false;
        self.backoff.crashes = 0;
        self.backoff.at = None;
        // Retiring failed every reload and queued one: none runs now.
        self.begin(Vec::new(), launch, out);
    }

    /// Whether the app left the config and is only waiting for its
    /// instances to exit.
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// Whether the master can forget the app: retired, and nothing left.
    pub fn is_gone(&self) -> bool {
        self.retired && self.instances.is_empty()
    }

    /// The master is shutting down: stop everything for good.
    pub fn shutdown(&mut self, out: &mut Vec<Notice>) {
        self.shutting_down = true;
        self.take_down("the master is shutting down", ErrorCode::ShuttingDown, out);
        for waiter in std::mem::take(&mut self.start_after_stop) {
            out.push(shutting_down(waiter));
        }
    }

    /// Stops supervising: fails pending reloads with `why`, cancels a
    /// planned restart, and sends every instance the stop signal.
    fn take_down(&mut self, why: &str, code: ErrorCode, out: &mut Vec<Notice>) {
        self.down = true;
        self.failed = false;
        self.backoff.at = None;
        let mut waiters = self.reload.take().map(|r| r.waiters).unwrap_or_default();
        waiters.append(&mut self.queued);
        for waiter in waiters {
            out.push(Notice::Failed {
                waiter,
                failure: Failure::new(code, why),
            });
        }
        let deadline = Instant::now() + self.config.stop_timeout;
        for instance in &mut self.instances {
            if matches!(instance.state, State::Main | State::Starting { .. }) {
                instance.signal(self.config.stop_signal);
                instance.state = State::Draining { deadline };
            }
        }
    }

    /// The last instance exited: finish a stop, and start again if a
    /// restart asked for it.
    pub(super) fn on_last_exit(&mut self, launch: &Launch, out: &mut Vec<Notice>) {
        if !self.down {
            return;
        }
        for conn in std::mem::take(&mut self.stop_waiters) {
            out.push(stopped(conn, &self.config.name));
        }
        let waiters = std::mem::take(&mut self.start_after_stop);
        if !waiters.is_empty() && !self.shutting_down {
            self.down = false;
            self.backoff.crashes = 0;
            self.begin(waiters, launch, out);
        }
    }
}

fn shutting_down(waiter: Waiter) -> Notice {
    Notice::Failed {
        waiter,
        failure: Failure::new(ErrorCode::ShuttingDown, "the master is shutting down"),
    }
}

fn stopped(conn: u64, app: &str) -> Notice {
    Notice::Control {
        conn,
        response: ControlResponse::Done(format!("{app}: stopped")),
    }
}
