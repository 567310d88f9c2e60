//! Property test of the machine: 2,000 cases × 200 random events each
//! (reloads of every kind, spawns that fail, ready for live and unknown
//! ids, exits with random statuses, timers at random times on a fake
//! clock, start / stop / restart / kill, rereads that change, remove and
//! add back the app, shutdown and a forced one), then a shutdown and every
//! instance's exit. After every event:
//!
//! - at most one instance is main;
//! - the tracked instances are exactly those spawned and not yet reaped,
//!   and only they are signalled or killed;
//! - a killed instance was sent SIGKILL; after a timer no instance is past
//!   its ready or stop deadline (it was killed), and no deadline is left
//!   overdue (the loop would spin);
//! - no waiter is answered twice; an app in the config is never forgotten;
//!   nothing spawns after shutdown or once the app is gone.
//!
//! At the end every waiter (`reload`, `reload --wait`, an instance's own
//! reload, `start`, `stop`, `restart`) has had exactly one answer, nothing
//! runs and the app reports stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use ally_proto::AppState;
use proptest::collection::vec;
use proptest::prelude::*;
use rustix::process::Signal;

use super::*;
use crate::app::{Notice, Waiter};
use crate::config::{ReadyMode, RestartPolicy};

/// One thing that happens to the app.
#[derive(Debug, Clone)]
enum Step {
    /// A reload: 0 `reload`, 1 `reload --wait`, 2 an instance's own.
    Reload(u8),
    /// Ready from the `n`th live instance, or from an unknown id.
    Ready(usize),
    /// The `n`th live instance exits with `status`.
    Exit(usize, i32),
    /// The clock moves on by this many milliseconds and the timer fires.
    Tick(u64),
    Start,
    Stop,
    Restart,
    Kill,
    /// `reread` with changed settings.
    Reconfigure(Settings),
    /// `reread` without the app.
    Remove,
    /// `reread` with the app again, with these settings.
    Readd(Settings),
    Shutdown,
    ForceShutdown,
}

fn ms(range: std::ops::Range<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

fn settings() -> impl Strategy<Value = Settings> {
    let ready = prop_oneof![
        Just(ReadyMode::Lib),
        Just(ReadyMode::Notify),
        Just(ReadyMode::Immediate),
        ms(1..2000).prop_map(ReadyMode::Delay),
    ];
    let restart = (
        prop::bool::weighted(0.9),
        ms(1..500),
        ms(0..2000),
        1u32..4,
        ms(0..5000),
        0u32..5,
    )
        .prop_map(
            |(enabled, min_delay, extra, factor, stable_after, max_failures)| RestartPolicy {
                enabled,
                min_delay,
                max_delay: min_delay + extra,
                factor,
                stable_after,
                max_failures,
            },
        );
    (
        ready,
        ms(1..3000),
        ms(1..3000),
        0usize..4,
        restart,
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(ready, ready_timeout, stop_timeout, max_draining, restart, autostart)| Settings {
                name: "web".to_owned(),
                ready,
                ready_timeout,
                stop_timeout,
                stop_signal: Signal::TERM,
                max_draining,
                restart,
                autostart,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..3).prop_map(Step::Reload),
        8 => (0usize..8).prop_map(Step::Ready),
        8 => (0usize..8, -1i32..3).prop_map(|(n, status)| Step::Exit(n, status)),
        10 => (0u64..4000).prop_map(Step::Tick),
        2 => Just(Step::Start),
        2 => Just(Step::Stop),
        2 => Just(Step::Restart),
        1 => Just(Step::Kill),
        1 => settings().prop_map(Step::Reconfigure),
        1 => Just(Step::Remove),
        1 => settings().prop_map(Step::Readd),
        1 => Just(Step::Shutdown),
        1 => Just(Step::ForceShutdown),
    ]
}

/// The world around one machine: a fake clock and fake processes.
struct World {
    machine: Machine,
    now: Instant,
    /// How the next spawns go, in turn.
    spawn_ok: Vec<bool>,
    spawns: usize,
    /// Spawned and not yet reaped.
    live: BTreeSet<u64>,
    /// Ever spawned by this machine.
    spawned: BTreeSet<u64>,
    /// Sent SIGKILL.
    killed: BTreeSet<u64>,
    /// Answers so far, by waiter.
    answers: BTreeMap<u64, u32>,
    next_conn: u64,
    in_config: bool,
    forgotten: bool,
    shut_down: bool,
}

impl World {
    fn new(settings: Settings, spawn_ok: Vec<bool>) -> World {
        World {
            machine: Machine::new(settings),
            now: Instant::now(),
            spawn_ok,
            spawns: 0,
            live: BTreeSet::new(),
            spawned: BTreeSet::new(),
            killed: BTreeSet::new(),
            answers: BTreeMap::new(),
            next_conn: 1,
            in_config: true,
            forgotten: false,
            shut_down: false,
        }
    }

    /// A new waiter's connection id.
    fn conn(&mut self) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.answers.insert(conn, 0);
        conn
    }

    fn answer(&mut self, conn: u64) -> Result<(), TestCaseError> {
        let count = self.answers.entry(conn).or_insert(0);
        *count += 1;
        prop_assert!(*count == 1, "waiter {} answered {} times", conn, count);
        Ok(())
    }

    /// Feeds `event` and performs its effects the way the edge does: a
    /// spawn's outcome goes back at once.
    fn feed(&mut self, event: Event) -> Result<(), TestCaseError> {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            for effect in self.machine.step(self.now, event) {
                if let Some(next) = self.perform(effect)? {
                    pending.push(next);
                }
            }
        }
        self.check()
    }

    fn perform(&mut self, effect: Effect) -> Result<Option<Event>, TestCaseError> {
        match effect {
            Effect::Spawn { id } => {
                prop_assert!(!self.shut_down, "spawned {} after shutdown", id);
                prop_assert!(!self.forgotten, "spawned {} once gone", id);
                prop_assert!(self.spawned.insert(id), "id {} spawned twice", id);
                let ok = self.spawn_ok[self.spawns % self.spawn_ok.len()];
                self.spawns += 1;
                if ok {
                    self.live.insert(id);
                    return Ok(Some(Event::Spawned { id }));
                }
                self.spawned.remove(&id);
                let error = "no such file".to_owned();
                return Ok(Some(Event::SpawnFailed { id, error }));
            }
            Effect::Signal { id, .. } => {
                prop_assert!(self.live.contains(&id), "signalled {} not live", id);
            }
            Effect::Kill { id } => {
                prop_assert!(self.live.contains(&id), "killed {} not live", id);
                self.killed.insert(id);
            }
            Effect::Notify(notice) => match notice {
                Notice::Started { waiter, .. } => match waiter {
                    Waiter::Control { conn, wait: false } | Waiter::Instance { conn } => {
                        self.answer(conn)?;
                    }
                    Waiter::Control { wait: true, .. } | Waiter::Lifecycle { .. } => {}
                },
                Notice::Done { waiter, .. } => match waiter {
                    Waiter::Control { conn, wait: true } | Waiter::Lifecycle { conn } => {
                        self.answer(conn)?;
                    }
                    Waiter::Control { wait: false, conn } | Waiter::Instance { conn } => {
                        prop_assert!(false, "a Done for {} that is not waiting", conn);
                    }
                },
                Notice::Failed { waiter, .. } => match waiter {
                    Waiter::Control { conn, .. }
                    | Waiter::Instance { conn }
                    | Waiter::Lifecycle { conn } => self.answer(conn)?,
                },
                Notice::Control { conn, .. } => self.answer(conn)?,
                Notice::Reply(_) => prop_assert!(false, "the machine answered a request"),
            },
            Effect::Log(_) => {}
            Effect::Forget => {
                prop_assert!(!self.in_config, "an app in the config was forgotten");
                self.forgotten = true;
            }
        }
        Ok(None)
    }

    /// The invariants that hold after every event.
    fn check(&self) -> Result<(), TestCaseError> {
        let tracked = self.machine.instances();
        let mains = tracked.iter().filter(|i| i.state == State::Main).count();
        prop_assert!(mains <= 1, "{} main instances", mains);
        let ids: BTreeSet<u64> = tracked.iter().map(|i| i.id).collect();
        prop_assert_eq!(&ids, &self.live, "tracked instances are not the live ones");
        for i in tracked.iter().filter(|i| i.state == State::Killed) {
            prop_assert!(self.killed.contains(&i.id), "{} killed unsent", i.id);
        }
        prop_assert_eq!(self.machine.is_gone(), self.forgotten);
        Ok(())
    }

    /// After a timer at `now`: nothing is past a deadline.
    fn check_timer(&self) -> Result<(), TestCaseError> {
        for i in self.machine.instances() {
            let overdue = i.state.deadline().is_some_and(|d| d <= self.now);
            prop_assert!(!overdue, "instance {} is past its deadline", i.id);
        }
        let next = self.machine.next_deadline();
        prop_assert!(next.is_none_or(|d| d > self.now), "a deadline is overdue");
        Ok(())
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        if self.forgotten {
            // The master knows the app no longer; only a reread brings it
            // back, as a new app (refused while it shuts down).
            if let Step::Readd(settings) = step
                && !self.shut_down
            {
                let answers = std::mem::take(&mut self.answers);
                *self = World {
                    answers,
                    next_conn: self.next_conn,
                    ..World::new(settings, std::mem::take(&mut self.spawn_ok))
                };
                self.feed(Event::Boot)?;
            }
            return Ok(());
        }
        let live: Vec<u64> = self.live.iter().copied().collect();
        match step {
            Step::Reload(kind) => {
                let conn = self.conn();
                let waiter = match kind {
                    0 => Waiter::Control { conn, wait: false },
                    1 => Waiter::Control { conn, wait: true },
                    _ => Waiter::Instance { conn },
                };
                self.feed(Event::Reload(waiter))?;
            }
            Step::Ready(n) => {
                let id = live.get(n).copied().unwrap_or(100 + n as u64);
                self.feed(Event::Ready { id })?;
            }
            Step::Exit(n, status) => {
                if let Some(&id) = live.get(n % live.len().max(1)) {
                    self.exit(id, status)?;
                }
            }
            Step::Tick(ms) => {
                self.now += Duration::from_millis(ms);
                self.feed(Event::Timer { tails: Vec::new() })?;
                self.check_timer()?;
            }
            Step::Start => {
                let conn = self.conn();
                self.feed(Event::Start(Waiter::Lifecycle { conn }))?;
            }
            Step::Stop => {
                let conn = self.conn();
                self.feed(Event::Stop { conn })?;
            }
            Step::Restart => {
                let conn = self.conn();
                self.feed(Event::Restart(Waiter::Lifecycle { conn }))?;
            }
            Step::Kill => self.feed(Event::Signal(Signal::HUP))?,
            // The master refuses a reread while it shuts down.
            Step::Reconfigure(settings) if self.in_config && !self.shut_down => {
                self.feed(Event::Reconfigure(settings))?;
            }
            Step::Remove if self.in_config && !self.shut_down => {
                self.in_config = false;
                self.feed(Event::Remove)?;
            }
            Step::Readd(settings) if !self.in_config && !self.shut_down => {
                self.in_config = true;
                self.feed(Event::Readmit(settings))?;
            }
            Step::Shutdown if !self.shut_down => {
                self.shut_down = true;
                self.feed(Event::Shutdown)?;
            }
            Step::ForceShutdown if self.shut_down => self.feed(Event::ForceShutdown)?,
            Step::Reconfigure(_)
            | Step::Remove
            | Step::Readd(_)
            | Step::Shutdown
            | Step::ForceShutdown => {}
        }
        Ok(())
    }

    fn exit(&mut self, id: u64, status: i32) -> Result<(), TestCaseError> {
        self.live.remove(&id);
        let how = match status {
            -1 => "was killed by SIGKILL".to_owned(),
            code => format!("exited with status {code}"),
        };
        let tail = "(its stderr was empty)".to_owned();
        self.feed(Event::Exited { id, how, tail })
    }

    /// Shuts down, lets the stop deadlines pass, reaps everything, and
    /// checks that every waiter was answered once and nothing runs.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        if !self.forgotten {
            if !self.shut_down {
                self.shut_down = true;
                self.feed(Event::Shutdown)?;
            }
            self.now += Duration::from_secs(3600);
            self.feed(Event::Timer { tails: Vec::new() })?;
            self.check_timer()?;
            let states = self.machine.instances().iter().map(|i| i.state);
            prop_assert!(states.into_iter().all(|s| s == State::Killed));
            for id in self.live.clone() {
                self.exit(id, -1)?;
            }
            prop_assert!(self.machine.instances().is_empty());
            prop_assert!(self.machine.is_stopped());
            let state = self.machine.app_state(self.now, SystemTime::now());
            prop_assert_eq!(state, AppState::Stopped);
        }
        for (conn, count) in &self.answers {
            prop_assert_eq!(*count, 1, "waiter {} answered {} times", conn, count);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_lives_keep_the_invariants(
        first in settings(),
        spawn_ok in vec(prop::bool::weighted(0.85), 1..16),
        steps in vec(step(), 200),
    ) {
        let mut world = World::new(first, spawn_ok);
        world.feed(Event::Boot)?;
        for step in steps {
            world.run(step)?;
        }
        world.finish()?;
    }
}
