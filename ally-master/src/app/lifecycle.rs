//! What an operator does to an app as a whole: start, stop, restart, the
//! config's changes and the master's own shutdown; and the state that
//! results. Each is one event for the machine.

use super::machine::{Event, Settings};
use super::{App, Notice, Waiter};
use crate::config::AppConfig;
use crate::listeners::Standing;

impl App {
    /// Whether the app has come to rest after the master started it:
    /// serving, stopped on purpose, or given up (`failed`).
    pub fn settled(&self) -> bool {
        self.machine.settled()
    }

    /// `ally-ctl start`: brings a stopped or failed app up. `waiter` hears
    /// `Done` once an instance is main.
    pub fn start(&mut self, waiter: Waiter, out: &mut Vec<Notice>) {
        self.feed(Event::Start(waiter), out);
    }

    /// `ally-ctl stop`: asks every instance to stop and keeps the app down.
    /// `conn` hears `Done` once no instance is left.
    pub fn stop(&mut self, conn: u64, out: &mut Vec<Notice>) {
        self.feed(Event::Stop { conn }, out);
    }

    /// `ally-ctl restart`: stop, then start once the last instance is gone.
    pub fn restart(&mut self, waiter: Waiter, out: &mut Vec<Notice>) {
        self.feed(Event::Restart(waiter), out);
    }

    /// `reread` changed the app's settings: they apply from its next start
    /// (a running instance keeps what it was started with).
    pub fn reconfigure(&mut self, config: AppConfig) {
        self.feed(Event::Reconfigure(Settings::of(&config)), &mut Vec::new());
        self.config = config;
    }

    /// The app left the config (`reread`): stop it for good; the master
    /// forgets it once its last instance has exited.
    pub fn retire(&mut self, out: &mut Vec<Notice>) {
        self.feed(Event::Remove, out);
    }

    /// The app, removed from the config and still stopping, is in it again
    /// with `config` (`reread`): it is supervised again — started at once,
    /// beside its draining instances, unless `autostart = false` keeps it
    /// stopped — instead of being forgotten when they exit. `stop` clients
    /// still waiting hear that the stop was overtaken.
    pub fn readmit(&mut self, config: AppConfig, out: &mut Vec<Notice>) {
        let settings = Settings::of(&config);
        self.config = config;
        self.feed(Event::Readmit(settings), out);
    }

    /// Whether the app left the config and is only waiting for its
    /// instances to exit.
    pub fn is_retired(&self) -> bool {
        self.machine.is_retired()
    }

    /// Where the app stands for the sockets no live instance of it holds
    /// (see [`Standing::keeps`]).
    pub fn standing(&self) -> Standing {
        self.machine.standing()
    }

    /// Whether the master can forget the app: retired, and nothing left.
    pub fn is_gone(&self) -> bool {
        self.machine.is_gone()
    }

    /// The master is shutting down: stop everything for good.
    pub fn shutdown(&mut self, out: &mut Vec<Notice>) {
        self.feed(Event::Shutdown, out);
    }
}
