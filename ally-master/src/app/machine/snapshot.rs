//! The machine as plain data for an in-place upgrade: every instance's
//! state with its deadline as time left, the app's life with its waiters,
//! the crash counts. Settings are not carried: they are the app's config's.

use std::time::Instant;

use super::{Life, Machine, Settings, State, Tracked, Why};
use crate::app::Waiter;
use crate::handover::snapshot::{
    LifeSnap, MachineSnap, StateSnap, TrackedSnap, WaiterSnap, WhySnap,
};
use crate::handover::{self, HandoverError};

impl Machine {
    /// As plain data, deadlines relative to `now`.
    pub fn snapshot(&self, now: Instant) -> MachineSnap {
        let left = |d: Instant| handover::left_ms(d, now);
        let instances = self
            .instances
            .iter()
            .map(|t| TrackedSnap {
                id: t.id,
                state: match t.state {
                    State::Starting { deadline } => StateSnap::Starting {
                        left_ms: left(deadline),
                    },
                    State::Main => StateSnap::Main,
                    State::Draining { deadline } => StateSnap::Draining {
                        left_ms: left(deadline),
                    },
                    State::Killed => StateSnap::Killed,
                },
                started_ago_ms: handover::ago_ms(t.started, now),
                ready_in_ms: t.ready_at.map(left),
            })
            .collect();
        let waiters = |w: &[Waiter]| w.iter().map(|w| waiter_snap(*w)).collect();
        let life = match &self.life {
            Life::Up { restart_at } => LifeSnap::Up {
                restart_in_ms: restart_at.map(left),
            },
            Life::Reloading {
                instance,
                waiters: w,
                queued,
            } => LifeSnap::Reloading {
                instance: *instance,
                waiters: waiters(w),
                queued: waiters(queued),
            },
            Life::Failed => LifeSnap::Failed,
            Life::Down {
                why,
                stop_waiters,
                then_start,
            } => LifeSnap::Down {
                why: match why {
                    Why::Stopped => WhySnap::Stopped,
                    Why::Removed => WhySnap::Removed,
                    Why::ShuttingDown { removed } => WhySnap::ShuttingDown { removed: *removed },
                },
                stop_waiters: stop_waiters.clone(),
                then_start: waiters(then_start),
            },
            Life::Gone => LifeSnap::Gone,
        };
        MachineSnap {
            instances,
            next_id: self.next_id,
            life,
            crashes: self.crashes,
            restarts: self.restarts,
            last_error: self.last_error.clone(),
        }
    }

    /// The machine `snap` describes, with `settings`.
    ///
    /// # Errors
    ///
    /// An instance id twice or not below the next id.
    pub fn restore(
        settings: Settings,
        snap: MachineSnap,
        now: Instant,
    ) -> Result<Machine, HandoverError> {
        let after = |ms| handover::after(now, ms);
        let mut instances: Vec<Tracked> = Vec::with_capacity(snap.instances.len());
        for t in snap.instances {
            if t.id >= snap.next_id || instances.iter().any(|i| i.id == t.id) {
                return Err(HandoverError::Restore(format!(
                    "{}: instance {} twice or ahead of the next id",
                    settings.name, t.id
                )));
            }
            instances.push(Tracked {
                id: t.id,
                state: match t.state {
                    StateSnap::Starting { left_ms } => State::Starting {
                        deadline: after(left_ms),
                    },
                    StateSnap::Main => State::Main,
                    StateSnap::Draining { left_ms } => State::Draining {
                        deadline: after(left_ms),
                    },
                    StateSnap::Killed => State::Killed,
                },
                started: handover::before(now, t.started_ago_ms),
                ready_at: t.ready_in_ms.map(after),
            });
        }
        let waiters = |w: Vec<WaiterSnap>| w.into_iter().map(waiter).collect();
        let life = match snap.life {
            LifeSnap::Up { restart_in_ms } => Life::Up {
                restart_at: restart_in_ms.map(after),
            },
            LifeSnap::Reloading {
                instance,
                waiters: w,
                queued,
            } => Life::Reloading {
                instance,
                waiters: waiters(w),
                queued: waiters(queued),
            },
            LifeSnap::Failed => Life::Failed,
            LifeSnap::Down {
                why,
                stop_waiters,
                then_start,
            } => Life::Down {
                why: match why {
                    WhySnap::Stopped => Why::Stopped,
                    WhySnap::Removed => Why::Removed,
                    WhySnap::ShuttingDown { removed } => Why::ShuttingDown { removed },
                },
                stop_waiters,
                then_start: waiters(then_start),
            },
            LifeSnap::Gone => Life::Gone,
        };
        Ok(Machine {
            settings,
            instances,
            next_id: snap.next_id,
            life,
            crashes: snap.crashes,
            restarts: snap.restarts,
            last_error: snap.last_error,
        })
    }
}

fn waiter_snap(w: Waiter) -> WaiterSnap {
    match w {
        Waiter::Control { conn, wait } => WaiterSnap::Control { conn, wait },
        Waiter::Instance { conn } => WaiterSnap::Instance { conn },
        Waiter::Lifecycle { conn } => WaiterSnap::Lifecycle { conn },
    }
}

fn waiter(w: WaiterSnap) -> Waiter {
    match w {
        WaiterSnap::Control { conn, wait } => Waiter::Control { conn, wait },
        WaiterSnap::Instance { conn } => Waiter::Instance { conn },
        WaiterSnap::Lifecycle { conn } => Waiter::Lifecycle { conn },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::app::machine::Event;
    use crate::config;

    #[test]
    fn a_reloading_machine_round_trips_with_its_deadlines_and_waiters() {
        let text = "[[app]]\nname = \"web\"\ncommand = [\"x\"]\nready_timeout = \"10s\"\n";
        let app = config::parse(text, std::path::Path::new("/a.toml"))
            .unwrap()
            .apps[0]
            .clone();
        let t0 = Instant::now();
        let mut m = Machine::new(Settings::of(&app));
        m.step(t0, Event::Boot);
        m.step(t0, Event::Spawned { id: 1 });
        m.step(t0, Event::Ready { id: 1 });
        let waiter = Waiter::Control {
            conn: 7,
            wait: true,
        };
        m.step(t0, Event::Reload(waiter));
        m.step(t0, Event::Spawned { id: 2 });
        m.step(t0, Event::Reload(Waiter::Instance { conn: 9 }));
        assert_eq!(m.reloading(), Some(2));
        assert_eq!(m.queued(), 1);

        let snap = m.snapshot(t0 + Duration::from_secs(4));
        let bytes = postcard::to_stdvec(&snap).unwrap();
        let back: MachineSnap = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, snap);
        let t1 = Instant::now() + Duration::from_secs(1000);
        let mut r = Machine::restore(Settings::of(&app), back, t1).unwrap();
        assert_eq!(r.main(), Some(1));
        assert_eq!(r.reloading(), Some(2));
        assert_eq!(r.queued(), 1);
        // Six seconds of the ready timeout were left.
        assert_eq!(r.next_deadline(), Some(t1 + Duration::from_secs(6)));
        // The reload completes after the upgrade: its waiter hears it.
        let effects = r.step(t1, Event::Ready { id: 2 });
        assert!(effects.iter().any(|e| matches!(
            e,
            crate::app::machine::Effect::Notify(crate::app::Notice::Done { waiter: w, .. }) if *w == waiter
        )));
    }
}
