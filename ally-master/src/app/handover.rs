//! An app as plain data for an in-place upgrade, and back: its config,
//! instances, shared state, log, followers, sockets and lifecycle.

use std::time::Instant;

use super::App;
use super::machine::{Machine, Settings};
use crate::config::AppConfig;
use crate::fd_store::FdStore;
use crate::handover::HandoverError;
use crate::handover::fds::{Export, Import};
use crate::handover::snapshot::AppSnap;
use crate::instance::{Instance, Launch};
use crate::listeners::Bound;
use crate::logs::AppLog;
use crate::shared_state::SharedState;

impl App {
    /// As plain data, its descriptors listed in `fds`.
    pub fn snapshot<'a>(&'a self, fds: &mut Export<'a>, now: Instant) -> AppSnap {
        let (store, waits) = self.state.snapshot(now);
        AppSnap {
            config: self.config.snapshot(),
            instances: self
                .instances
                .iter()
                .map(|i| i.snapshot(fds, now))
                .collect(),
            store,
            waits,
            log: self.log.snapshot(fds),
            followers: self.followers.clone(),
            unsent: self.unsent.clone(),
            sockets: self
                .sockets
                .iter()
                .map(|(name, b)| (name.clone(), b.snapshot(fds)))
                .collect(),
            machine: self.machine.snapshot(now),
        }
    }

    /// The app `snap` describes, its instances started with `launch`, its
    /// sockets still parked in `store` as they were.
    ///
    /// # Errors
    ///
    /// A missing descriptor, or a part that contradicts itself (an
    /// instance the machine does not track, or the reverse).
    pub fn restore(
        snap: AppSnap,
        fds: &mut Import,
        now: Instant,
        launch: Launch,
        store: &FdStore,
    ) -> Result<App, HandoverError> {
        let config = AppConfig::restore(snap.config)?;
        let instances = snap
            .instances
            .into_iter()
            .map(|i| Instance::restore(i, fds, now))
            .collect::<Result<Vec<_>, _>>()?;
        let machine = Machine::restore(Settings::of(&config), snap.machine, now)?;
        let tracked: Vec<u64> = machine.instances().iter().map(|t| t.id).collect();
        let live: Vec<u64> = instances.iter().map(|i| i.id).collect();
        if tracked != live {
            return Err(HandoverError::Restore(format!(
                "{}: the machine tracks instances {tracked:?}, the processes are {live:?}",
                config.name
            )));
        }
        let state = SharedState::restore(config.limits, snap.store, snap.waits, now)?;
        let log = AppLog::restore(&config.name, snap.log, fds)?;
        let sockets = snap
            .sockets
            .into_iter()
            .map(|(name, b)| Ok((name, Bound::restore(b, fds, store)?)))
            .collect::<Result<Vec<_>, HandoverError>>()?;
        Ok(App {
            config,
            instances,
            state,
            log,
            followers: snap.followers,
            unsent: snap.unsent,
            sockets,
            launch,
            machine,
        })
    }
}
