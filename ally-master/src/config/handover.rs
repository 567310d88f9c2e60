//! An app's config as plain data for an in-place upgrade: the values the
//! master runs, not the files (which may have been edited since, or no
//! longer declare an app that still drains). A new build reads the same
//! values, so the config it runs compares equal to the one before, and
//! the next `reread` sees exactly what changed on disk.

use std::time::Duration;

use ally_proto::state::Limits;
use rustix::process::Signal;

use super::{AppConfig, ListenDecl, LogTarget, ReadyMode, RestartPolicy};
use crate::handover::HandoverError;
use crate::handover::snapshot::{AppConfigSnap, LogTargetSnap, ReadySnap, RestartSnap};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn size(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn back(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl AppConfig {
    /// The config as plain data.
    pub fn snapshot(&self) -> AppConfigSnap {
        let r = &self.restart;
        AppConfigSnap {
            name: self.name.clone(),
            family: self.family.clone(),
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            ready_timeout_ms: ms(self.ready_timeout),
            stop_timeout_ms: ms(self.stop_timeout),
            request_timeout_ms: ms(self.request_timeout),
            stop_signal: self.stop_signal.as_raw(),
            max_cache_entries: size(self.limits.max_entries),
            max_cache_bytes: size(self.limits.max_bytes),
            max_name_len: size(self.limits.max_name_len),
            max_ttl_ms: ms(self.limits.max_ttl),
            max_atomics: size(self.limits.max_atomics),
            max_locks: size(self.limits.max_locks),
            autostart: self.autostart,
            restart: RestartSnap {
                enabled: r.enabled,
                min_delay_ms: ms(r.min_delay),
                max_delay_ms: ms(r.max_delay),
                factor: r.factor,
                stable_after_ms: ms(r.stable_after),
                max_failures: r.max_failures,
            },
            max_draining: size(self.max_draining),
            inherit_env: self.inherit_env,
            user: self.user.clone(),
            group: self.group.clone(),
            listen: self
                .listen
                .iter()
                .map(|d| (d.name.clone(), d.spec.clone()))
                .collect(),
            ready: match self.ready {
                ReadyMode::Lib => ReadySnap::Lib,
                ReadyMode::Notify => ReadySnap::Notify,
                ReadyMode::Delay(d) => ReadySnap::DelayMs(ms(d)),
                ReadyMode::Immediate => ReadySnap::Immediate,
            },
            privileged_ports: self.privileged_ports.clone(),
            log: match &self.log {
                LogTarget::Default => LogTargetSnap::Default,
                LogTarget::Inherit => LogTargetSnap::Inherit,
                LogTarget::File(p) => LogTargetSnap::File(p.clone()),
            },
        }
    }

    /// The config `snap` describes.
    ///
    /// # Errors
    ///
    /// A stop signal this system does not know.
    pub fn restore(snap: AppConfigSnap) -> Result<AppConfig, HandoverError> {
        let d = Duration::from_millis;
        let stop_signal = Signal::from_named_raw(snap.stop_signal).ok_or_else(|| {
            HandoverError::Restore(format!("{}: stop signal {}", snap.name, snap.stop_signal))
        })?;
        let r = snap.restart;
        Ok(AppConfig {
            name: snap.name,
            family: snap.family,
            command: snap.command,
            cwd: snap.cwd,
            env: snap.env,
            ready_timeout: d(snap.ready_timeout_ms),
            stop_timeout: d(snap.stop_timeout_ms),
            request_timeout: d(snap.request_timeout_ms),
            stop_signal,
            limits: Limits {
                max_entries: back(snap.max_cache_entries),
                max_bytes: back(snap.max_cache_bytes),
                max_name_len: back(snap.max_name_len),
                max_ttl: d(snap.max_ttl_ms),
                max_atomics: back(snap.max_atomics),
                max_locks: back(snap.max_locks),
            },
            autostart: snap.autostart,
            restart: RestartPolicy {
                enabled: r.enabled,
                min_delay: d(r.min_delay_ms),
                max_delay: d(r.max_delay_ms),
                factor: r.factor,
                stable_after: d(r.stable_after_ms),
                max_failures: r.max_failures,
            },
            max_draining: back(snap.max_draining),
            inherit_env: snap.inherit_env,
            user: snap.user,
            group: snap.group,
            listen: snap
                .listen
                .into_iter()
                .map(|(name, spec)| ListenDecl { name, spec })
                .collect(),
            ready: match snap.ready {
                ReadySnap::Lib => ReadyMode::Lib,
                ReadySnap::Notify => ReadyMode::Notify,
                ReadySnap::DelayMs(v) => ReadyMode::Delay(d(v)),
                ReadySnap::Immediate => ReadyMode::Immediate,
            },
            privileged_ports: snap.privileged_ports,
            log: match snap.log {
                LogTargetSnap::Default => LogTarget::Default,
                LogTargetSnap::Inherit => LogTarget::Inherit,
                LogTargetSnap::File(p) => LogTarget::File(p),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_value_of_an_app_config_round_trips() {
        let text = r#"
[[app]]
name = "web"
command = ["./server", "-v"]
env = { A = "1" }
ready_timeout = "7s"
stop_timeout = "1m"
request_timeout = "250ms"
stop_signal = "SIGUSR1"
max_cache_entries = 10
max_cache_bytes = 2048
max_atomics = 3
max_locks = 4
autostart = false
max_draining = 2
inherit_env = true
user = "nobody"
group = "nogroup"
listen = ["http=tcp://127.0.0.1:0", "unix:///run/x.sock?mode=0660"]
ready = "delay:2s"
privileged_ports = [80]
log = "inherit"
restart = { enabled = false, min_delay = "1s", max_delay = "9s", factor = 3, stable_after = "5s", max_failures = 7 }
"#;
        let config = crate::config::parse(text, Path::new("/etc/ally/a.toml")).unwrap();
        let app = config.apps[0].clone();
        let snap = app.snapshot();
        let bytes = postcard::to_stdvec(&snap).unwrap();
        let back: AppConfigSnap = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(AppConfig::restore(back).unwrap(), app);
    }
}
