//! The machine on its own: named cases, regressions among them.

use std::time::{Duration, Instant};

use ally_proto::{AppState, ControlResponse, ErrorCode};
use rustix::process::Signal;

use super::*;
use crate::app::{Notice, Waiter};
use crate::config::{ReadyMode, RestartPolicy};

/// Settings for app `web` under `ready = "lib"`.
pub(super) fn settings() -> Settings {
    Settings {
        name: "web".to_owned(),
        ready: ReadyMode::Lib,
        ready_timeout: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(10),
        stop_signal: Signal::TERM,
        max_draining: 2,
        restart: RestartPolicy::default(),
        autostart: true,
    }
}

/// A machine and a clock, spawning every instance it is asked to.
struct Rig {
    machine: Machine,
    now: Instant,
    effects: Vec<Effect>,
}

impl Rig {
    fn new(settings: Settings) -> Rig {
        Rig {
            machine: Machine::new(settings),
            now: Instant::now(),
            effects: Vec::new(),
        }
    }

    /// Feeds `event`, answering every spawn with success; returns the
    /// effects, the spawns' own included.
    fn feed(&mut self, event: Event) -> Vec<Effect> {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            for effect in self.machine.step(self.now, event) {
                if let Effect::Spawn { id } = effect {
                    pending.push(Event::Spawned { id });
                }
                self.effects.push(effect);
            }
        }
        std::mem::take(&mut self.effects)
    }

    fn exit(&mut self, id: u64) -> Vec<Effect> {
        self.feed(Event::Exited {
            id,
            how: "exited with status 0".to_owned(),
            tail: "(its stderr was empty)".to_owned(),
        })
    }

    fn advance(&mut self, by: Duration) -> Vec<Effect> {
        self.now += by;
        self.feed(Event::Timer { tails: Vec::new() })
    }

    fn state(&self, id: u64) -> Option<State> {
        self.machine.instance(id).map(|i| i.state)
    }

    fn app_state(&self) -> AppState {
        self.machine.app_state(self.now, SystemTime::now())
    }
}

fn spawns(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Spawn { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn killed(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Kill { id } => Some(*id),
            _ => None,
        })
        .collect()
}

/// A running app: instance 1 is main.
fn running() -> Rig {
    let mut rig = Rig::new(settings());
    assert_eq!(spawns(&rig.feed(Event::Boot)), [1]);
    rig.feed(Event::Ready { id: 1 });
    assert_eq!(rig.machine.main(), Some(1));
    rig
}

/// A failed app: restarts are off and its main instance 1 crashed.
fn failed() -> Rig {
    let mut settings = settings();
    settings.restart.enabled = false;
    let mut rig = Rig::new(settings);
    rig.feed(Event::Boot);
    rig.feed(Event::Ready { id: 1 });
    rig.exit(1);
    assert_eq!(rig.app_state(), AppState::Failed);
    rig
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let policy = RestartPolicy::default();
    let ms = |a| backoff_delay(&policy, a).as_millis();
    assert_eq!([ms(0), ms(1), ms(2), ms(3)], [500, 1000, 2000, 4000]);
    assert_eq!(ms(10), 30_000);
    assert_eq!(ms(u32::MAX), 30_000);
}

#[test]
fn a_reload_makes_the_new_instance_main_and_drains_the_old() {
    let mut rig = running();
    let waiter = Waiter::Control {
        conn: 7,
        wait: true,
    };
    assert_eq!(spawns(&rig.feed(Event::Reload(waiter))), [2]);
    let effects = rig.feed(Event::Ready { id: 2 });
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Signal {
            id: 1,
            signal: Signal::TERM
        }
    )));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Notify(Notice::Done { instance: 2, .. })))
    );
    assert_eq!(rig.machine.main(), Some(2));
    assert!(matches!(rig.state(1), Some(State::Draining { .. })));
    assert_eq!(killed(&rig.advance(Duration::from_secs(10))), [1]);
}

#[test]
fn reloads_asked_during_a_reload_share_the_next_one() {
    let mut rig = running();
    rig.feed(Event::Reload(Waiter::Instance { conn: 1 }));
    for conn in [2, 3] {
        assert!(spawns(&rig.feed(Event::Reload(Waiter::Control { conn, wait: true }))).is_empty());
    }
    assert_eq!(rig.machine.queued(), 2);
    let effects = rig.feed(Event::Ready { id: 2 });
    assert_eq!(spawns(&effects), [3]);
    let done = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Notify(Notice::Done { .. })))
            .count()
    };
    assert_eq!(done(&rig.feed(Event::Ready { id: 3 })), 2);
}

#[test]
fn a_new_instance_not_ready_in_time_is_killed_and_the_old_keeps_serving() {
    let mut rig = running();
    rig.feed(Event::Reload(Waiter::Control {
        conn: 9,
        wait: true,
    }));
    let effects = rig.advance(Duration::from_secs(5));
    assert_eq!(killed(&effects), [2]);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Notify(Notice::Failed { failure, .. }) if failure.code == ErrorCode::ReloadFailed
    )));
    assert_eq!(rig.machine.main(), Some(1));
}

#[test]
fn a_crashing_main_is_restarted_after_a_backoff_then_marked_failed() {
    let mut settings = settings();
    settings.restart.max_failures = 2;
    let mut rig = Rig::new(settings);
    rig.feed(Event::Boot);
    rig.feed(Event::Ready { id: 1 });
    rig.exit(1);
    assert!(matches!(rig.app_state(), AppState::Backoff { .. }));
    assert!(spawns(&rig.advance(Duration::from_millis(499))).is_empty());
    assert_eq!(spawns(&rig.advance(Duration::from_millis(1))), [2]);
    rig.feed(Event::Ready { id: 2 });
    rig.exit(2);
    assert_eq!(spawns(&rig.advance(Duration::from_secs(1))), [3]);
    rig.exit(3);
    assert_eq!(rig.app_state(), AppState::Failed);
    assert_eq!(rig.machine.next_deadline(), None);
    assert_eq!(
        spawns(&rig.feed(Event::Start(Waiter::Lifecycle { conn: 4 }))),
        [4]
    );
    assert_eq!(rig.app_state(), AppState::Starting);
}

#[test]
fn stop_is_answered_once_the_last_instance_exits_and_restart_starts_again() {
    let mut rig = running();
    let effects = rig.feed(Event::Stop { conn: 5 });
    assert!(!effects.iter().any(|e| matches!(e, Effect::Notify(_))));
    assert_eq!(rig.app_state(), AppState::Stopping);
    let restart = Waiter::Lifecycle { conn: 6 };
    assert!(spawns(&rig.feed(Event::Restart(restart))).is_empty());
    let effects = rig.exit(1);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Notify(Notice::Control {
            conn: 5,
            response: ControlResponse::Done(_)
        })
    )));
    assert_eq!(spawns(&effects), [2]);
    let effects = rig.feed(Event::Ready { id: 2 });
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Notify(Notice::Done {
            waiter: Waiter::Lifecycle { conn: 6 },
            ..
        })
    )));
}

/// Regression: an app removed by `reread` and added back while its
/// instances drain was forgotten when the last of them exited.
#[test]
fn an_app_added_back_while_it_drains_is_not_forgotten() {
    let mut rig = running();
    let stop = rig.feed(Event::Stop { conn: 3 }).len();
    assert!(stop > 0);
    rig.feed(Event::Remove);
    assert!(rig.machine.is_retired());
    let effects = rig.feed(Event::Readmit(settings()));
    assert_eq!(spawns(&effects), [2]);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Notify(Notice::Control {
            conn: 3,
            response: ControlResponse::Error(_)
        })
    )));
    assert!(!rig.machine.is_retired());
    let effects = rig.exit(1);
    assert!(!effects.iter().any(|e| matches!(e, Effect::Forget)));
    assert!(!rig.machine.is_gone());
    rig.feed(Event::Ready { id: 2 });
    assert_eq!(rig.app_state(), AppState::Running);
}

#[test]
fn a_removed_app_is_forgotten_once_stopped() {
    let mut rig = running();
    rig.feed(Event::Remove);
    assert!(!rig.machine.is_gone());
    assert!(rig.exit(1).iter().any(|e| matches!(e, Effect::Forget)));
    assert!(rig.machine.is_gone());
}

#[test]
fn shutdown_stops_everything_and_refuses_new_work() {
    let mut rig = running();
    rig.feed(Event::Reload(Waiter::Control {
        conn: 2,
        wait: true,
    }));
    let effects = rig.feed(Event::Shutdown);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Notify(Notice::Failed { failure, .. }) if failure.code == ErrorCode::ShuttingDown
    )));
    assert!(spawns(&rig.feed(Event::Start(Waiter::Lifecycle { conn: 3 }))).is_empty());
    assert_eq!(killed(&rig.feed(Event::ForceShutdown)), [1, 2]);
    rig.exit(1);
    assert!(!rig.machine.is_stopped());
    rig.exit(2);
    assert!(rig.machine.is_stopped());
    assert_eq!(rig.app_state(), AppState::Stopped);
}

#[test]
fn draining_beyond_max_draining_kills_the_oldest() {
    let mut rig = running();
    for id in 2..=4 {
        rig.feed(Event::Reload(Waiter::Instance { conn: id }));
        let effects = rig.feed(Event::Ready { id });
        if id == 4 {
            assert_eq!(killed(&effects), [1]);
        } else {
            assert!(killed(&effects).is_empty());
        }
    }
}

#[test]
fn start_and_restart_of_a_removed_app_are_refused() {
    let mut rig = running();
    rig.feed(Event::Remove);
    for event in [
        Event::Start(Waiter::Lifecycle { conn: 1 }),
        Event::Restart(Waiter::Lifecycle { conn: 2 }),
    ] {
        let effects = rig.feed(event);
        assert!(spawns(&effects).is_empty());
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Notify(Notice::Failed { failure, .. }) if failure.code == ErrorCode::UnknownApp
        )));
    }
    assert!(rig.exit(1).iter().any(|e| matches!(e, Effect::Forget)));
}

#[test]
fn a_failed_app_that_is_reloaded_runs_again() {
    let mut rig = failed();
    assert_eq!(
        spawns(&rig.feed(Event::Reload(Waiter::Instance { conn: 1 }))),
        [2]
    );
    assert_eq!(rig.app_state(), AppState::Starting);
    rig.feed(Event::Ready { id: 2 });
    assert_eq!(rig.app_state(), AppState::Running);
}

#[test]
fn an_app_awaits_an_instance_through_crashes_kill_and_restart_but_not_after_stop() {
    let mut rig = Rig::new(settings());
    rig.feed(Event::Boot);
    assert_eq!(rig.machine.standing(), Standing::Awaiting, "starting");
    rig.feed(Event::Ready { id: 1 });
    assert_eq!(rig.machine.standing(), Standing::Serving);
    // A crash (SIGKILL, or `kill`'s TERM): the back-off awaits instance 2.
    rig.exit(1);
    assert!(matches!(rig.app_state(), AppState::Backoff { .. }));
    assert_eq!(rig.machine.standing(), Standing::Awaiting);
    rig.advance(Duration::from_secs(1));
    rig.feed(Event::Ready { id: 2 });
    assert_eq!(rig.machine.standing(), Standing::Serving);
    // `restart` stops only to start again.
    rig.feed(Event::Restart(Waiter::Lifecycle { conn: 7 }));
    assert_eq!(rig.machine.standing(), Standing::Awaiting);
    rig.exit(2);
    assert_eq!(
        rig.machine.standing(),
        Standing::Awaiting,
        "instance 3 starting"
    );
    rig.feed(Event::Ready { id: 3 });
    // `stop` is down at once, its instances still draining.
    rig.feed(Event::Stop { conn: 8 });
    assert_eq!(rig.machine.standing(), Standing::Down);
    rig.exit(3);
    assert_eq!(rig.machine.standing(), Standing::Down);
    // `start` while stopping awaits the instance it will start.
    let mut rig = running();
    rig.feed(Event::Stop { conn: 9 });
    rig.feed(Event::Start(Waiter::Lifecycle { conn: 10 }));
    assert_eq!(rig.machine.standing(), Standing::Awaiting);
}

#[test]
fn a_failed_removed_or_shut_down_app_is_down() {
    // Failed: no instance is coming until an operator starts it.
    let rig = failed();
    assert_eq!(rig.machine.standing(), Standing::Down);
    let mut rig = running();
    rig.feed(Event::Remove);
    assert_eq!(rig.machine.standing(), Standing::Down);
    let mut rig = running();
    rig.feed(Event::Restart(Waiter::Lifecycle { conn: 1 }));
    rig.feed(Event::Shutdown);
    assert_eq!(
        rig.machine.standing(),
        Standing::Down,
        "shutdown overrides restart"
    );
}
