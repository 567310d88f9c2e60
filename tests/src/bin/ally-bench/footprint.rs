//! What ally-master costs in memory: idle with one app, and with
//! [`APPS`] apps holding [`LISTENERS_PER_APP`] listeners each.
//!
//! Each app is `sleep` with `ready = "immediate"`: it costs the master an
//! app, an instance and, through `listen`, sockets it binds and hands over,
//! and nothing else. The apps' listeners are `tcp://127.0.0.N:0` for N from
//! 1: distinct addresses, because the master hands one socket per
//! (app, address), and port 0, so that nothing collides.

use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until_every;
use serde_json::Value;

use crate::state::status_kib;
use crate::table::{Row, Section, ratio};

/// Apps of the large master.
pub const APPS: usize = 100;
/// Listeners of each app of the large master.
pub const LISTENERS_PER_APP: usize = 10;
/// How long every app may take to have its main instance.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the listing is asked for while the apps start.
const POLL: Duration = Duration::from_millis(100);

/// The master's `VmRSS` with one app, and with [`APPS`] apps and
/// `APPS × LISTENERS_PER_APP` listeners, each measured once everything is
/// up; the second beside the first.
pub fn measure() -> Section {
    let listeners = APPS * LISTENERS_PER_APP;
    eprintln!(
        "ally-bench: ally-master memory, 1 app, then {APPS} apps with {listeners} listeners..."
    );
    let idle = rss_with(1, 0);
    let large = rss_with(APPS, LISTENERS_PER_APP);
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let per_app = large.saturating_sub(idle) as f64 / (APPS - 1) as f64;
    Section {
        rows: vec![
            Row("ally-master VmRSS, 1 idle app".into(), mib(idle)),
            Row(
                format!("ally-master VmRSS, {APPS} apps / {listeners} listeners"),
                format!(
                    "{} = {} the 1-app figure (+{per_app:.0} KiB per further app and its \
                     {LISTENERS_PER_APP} listeners)",
                    mib(large),
                    ratio(large as f64 / idle as f64)
                ),
            ),
        ],
        notes: vec![format!(
            "ally-master VmRSS: a master of its own per figure, read from /proc/PID/status once \
             every app's instance is main (and, for {APPS} apps, holds its {LISTENERS_PER_APP} \
             listeners: tcp://127.0.0.N:0 for N = 1..{LISTENERS_PER_APP}); each app is `sleep` \
             with ready = \"immediate\"."
        )],
    }
}

/// The `VmRSS` (KiB) of a master running `apps` apps with `listeners`
/// listeners each, once all are up.
fn rss_with(apps: usize, listeners: usize) -> u64 {
    let dir = TestDir::new("bench_footprint");
    let configs: Vec<AppConfig> = (0..apps).map(|n| sleeper(n, listeners)).collect();
    let master = Master::start_with(bins(), &dir, &config_toml(&configs));
    let mut last = Value::Null;
    let up = wait_until_every(POLL, START_TIMEOUT, || {
        last = master.list_json();
        all_up(&last, apps, listeners)
    });
    assert!(
        up,
        "{apps} apps with {listeners} listeners each were not all up within \
         {START_TIMEOUT:?}; last listing: {last}\n{}",
        master.log_tail()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", master.pid()));
    let rss = status_kib(&status.unwrap_or_default(), "VmRSS");
    drop(master);
    rss.expect("the master's VmRSS")
}

/// App `n`: `sleep` with `listeners` listeners, ready at once, silent.
pub fn sleeper(n: usize, listeners: usize) -> AppConfig {
    let mut app = AppConfig::new(&format!("idle{n:03}"), "sleep".as_ref())
        .line("ready = \"immediate\"")
        .stop_signal("SIGTERM");
    app.command.push("infinity".into());
    if listeners > 0 {
        let urls: Vec<String> = (1..=listeners)
            .map(|i| format!("\"tcp://127.0.0.{i}:0\""))
            .collect();
        app = app.line(&format!("listen = [{}]", urls.join(", ")));
    }
    app
}

/// Whether `list` shows `apps` apps, each with a main instance holding
/// `listeners` listeners.
pub fn all_up(list: &Value, apps: usize, listeners: usize) -> bool {
    let Some(all) = list["apps"].as_array() else {
        return false;
    };
    all.len() == apps
        && all.iter().all(|app| {
            app["instances"].as_array().is_some_and(|insts| {
                insts.iter().any(|i| {
                    i["id"] == app["main"]
                        && i["state"] == "main"
                        && i["listeners"].as_u64() == Some(listeners as u64)
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_up_once_each_main_holds_its_listeners() {
        let list = |n: u64| -> Value {
            serde_json::from_str(&format!(
                r#"{{"apps":[{{"name":"a","main":1,"instances":[
                    {{"id":1,"state":"main","listeners":{n}}}]}}]}}"#
            ))
            .unwrap()
        };
        assert!(all_up(&list(10), 1, 10));
        assert!(!all_up(&list(3), 1, 10));
        assert!(!all_up(&list(10), 2, 10));
        let starting: Value = serde_json::from_str(
            r#"{"apps":[{"name":"a","main":null,"instances":[
                {"id":1,"state":"starting","listeners":0}]}]}"#,
        )
        .unwrap();
        assert!(!all_up(&starting, 1, 0));
    }

    #[test]
    fn sleepers_listen_on_distinct_addresses() {
        let toml = sleeper(7, 3).to_toml();
        assert!(toml.contains("name = \"idle007\""), "{toml}");
        assert!(
            toml.contains("command = [\"sleep\", \"infinity\"]"),
            "{toml}"
        );
        assert!(
            toml.contains(
                "listen = [\"tcp://127.0.0.1:0\", \"tcp://127.0.0.2:0\", \"tcp://127.0.0.3:0\"]"
            ),
            "{toml}"
        );
    }
}
