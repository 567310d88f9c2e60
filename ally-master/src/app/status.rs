//! The app as `ally-ctl list` and `status` show it.

use std::time::{Instant, SystemTime};

use ally_proto::{AppDetail, AppStatus, InstanceStatus, ListenerDetail, ListenerOrigin};

use super::App;
use crate::config::LogTarget;
use crate::config::settings::{drift, quote, settings};
use crate::instance::unix_ms;
use crate::listeners::Listeners;
use crate::proc_stats;

impl App {
    /// The app as `ally-ctl list` shows it.
    pub fn status(&self, listeners: &Listeners) -> AppStatus {
        let now = Instant::now();
        let wall = SystemTime::now();
        AppStatus {
            name: self.config.name.clone(),
            state: self.machine.app_state(now, wall),
            restarts: self.machine.restarts(),
            main: self.machine.main(),
            reloading: self.machine.reloading(),
            queued_reloads: u32::try_from(self.machine.queued()).unwrap_or(u32::MAX),
            dropped_lines: self.log.dropped(),
            family: self.config.family.clone(),
            last_error: self.machine.last_error().map(str::to_owned),
            instances: self
                .instances
                .iter()
                .filter_map(|i| Some((i, self.machine.instance(i.id)?.state)))
                .map(|(i, state)| {
                    let usage = proc_stats::usage(i.pid);
                    InstanceStatus {
                        id: i.id,
                        pid: i.pid.as_raw_nonzero().get() as u32,
                        state: state.wire(),
                        started_unix_ms: i.started_unix_ms,
                        listeners: listeners.held_by(&self.config.name, i.id)
                            + u32::try_from(self.sockets.len()).unwrap_or(u32::MAX),
                        deadline_unix_ms: state
                            .deadline()
                            .map(|d| unix_ms(wall + d.saturating_duration_since(now))),
                        report: i.report.clone(),
                        cpu_ms: usage.cpu_ms,
                        rss_bytes: usage.rss_bytes,
                        uid: usage.uid,
                    }
                })
                .collect(),
        }
    }

    /// The app as `ally-ctl status` shows it: its status, settings,
    /// listeners with their holders, restart counters, and the drift of
    /// its main instance's config from the app's.
    pub fn detail(&self, listeners: &Listeners) -> AppDetail {
        let mut settings = settings(&self.config);
        if let (LogTarget::Default, Some(path)) = (&self.config.log, self.log.path())
            && let Some(log) = settings.iter_mut().find(|s| s.name == "log")
        {
            log.value = format!("{} (the default)", quote(&path.to_string_lossy()));
        }
        let drift = self
            .machine
            .main()
            .and_then(|id| self.instances.iter().find(|i| i.id == id))
            .and_then(|i| i.started_with())
            .map(|started| drift(started, &self.config));
        // The `listen` sockets are handed to every instance at its start.
        let live: Vec<u64> = self.instances.iter().map(|i| i.id).collect();
        // Every one was bound from its spec (`Bound::new`).
        let declared = self.sockets.iter().filter_map(|(name, bound)| {
            Some(ListenerDetail {
                network: bound.spec()?.network,
                address: bound.local.clone(),
                origin: ListenerOrigin::Config { name: name.clone() },
                holders: live.clone(),
            })
        });
        let asked =
            listeners
                .of_app(&self.config.name)
                .into_iter()
                .map(|(network, address, holders)| ListenerDetail {
                    network,
                    address,
                    origin: ListenerOrigin::Library,
                    holders,
                });
        AppDetail {
            status: self.status(listeners),
            settings,
            drift,
            listeners: declared.chain(asked).collect(),
            crashes: self.machine.crashes(),
            backoff_ms: self
                .machine
                .backoff()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}
