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
        let usage: Vec<_> = self
            .instances
            .iter()
            .map(|i| proc_stats::usage(i.pid))
            .collect();
        AppStatus {
            name: self.config.name.clone(),
            state: self.state(),
            restarts: self.restarts,
            main: self.main(),
            reloading: self.reload.as_ref().map(|r| r.instance),
            queued_reloads: u32::try_from(self.queued.len()).unwrap_or(u32::MAX),
            dropped_lines: self.log.dropped(),
            last_error: self.last_error.clone(),
            instances: self
                .instances
                .iter()
                .enumerate()
                .map(|(index, i)| InstanceStatus {
                    id: i.id,
                    pid: i.pid.as_raw_nonzero().get() as u32,
                    state: i.state.wire(),
                    started_unix_ms: i.started_unix_ms,
                    listeners: listeners.held_by(&self.config.name, i.id)
                        + u32::try_from(self.sockets.len()).unwrap_or(u32::MAX),
                    deadline_unix_ms: i
                        .state
                        .deadline()
                        .map(|d| unix_ms(wall + d.saturating_duration_since(now))),
                    report: i.report.clone(),
                    cpu_ms: usage[index].cpu_ms,
                    rss_bytes: usage[index].rss_bytes,
                    uid: usage[index].uid,
                })
                .collect(),
        }
    }
}
