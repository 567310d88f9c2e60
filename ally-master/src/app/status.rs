//! The app as `ally-ctl list` and `status` show it.

use std::time::{Instant, SystemTime};

use ally_proto::{AppStatus, InstanceStatus};

use super::App;
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
}
