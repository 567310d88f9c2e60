//! The part of `ally-ctl status APP` beyond what `list` shows: restart
//! counters, drift, listeners and settings, as text and as JSON.
//!
//! ```text
//! crashes     1 in a row (back-off 500ms; 10 make it failed)
//! drift       stop_timeout "30s" -> "1m"
//!             (these apply at its next start or reload)
//! listeners   tcp 127.0.0.1:8080  library      held by 3
//!             tcp 0.0.0.0:80      config http  held by 3, 4
//!
//! command               ["./server", "-v"]
//! cwd                   "/srv/web"
//! ...
//! ```
//!
//! Drift is yellow on a terminal, as Go ally shows it.

use std::fmt::Write;

use ally_proto::{AppDetail, Drift, ListenerDetail, ListenerOrigin};
use serde::Serialize;

use crate::style;

/// Width of a setting's name, so that the values line up.
const SETTING: usize = 22;

/// What drift means, after it.
const DRIFT_NOTE: &str = "(these apply at its next start or reload)";

/// The value of the `crashes` field.
pub fn crashes(detail: &AppDetail) -> String {
    let max = detail
        .settings
        .iter()
        .find(|s| s.name == "restart.max_failures")
        .map(|s| s.value.as_str());
    let limit = match max {
        Some("0") | None => String::new(),
        Some(n) => format!("; {n} make it failed"),
    };
    match detail.backoff_ms {
        Some(ms) => format!(
            "{} in a row (back-off {}{limit})",
            detail.crashes,
            millis(ms)
        ),
        None => format!("{} in a row", detail.crashes),
    }
}

/// `500ms`, `2s`, `1.5s`.
fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// The value of the `drift` field: one line per setting changed, then what
/// that means; in yellow if `colour`.
pub fn drift(drift: Option<&[Drift]>, colour: bool) -> String {
    match drift {
        None => "- (not known: no main instance, or it was started by an older master)".into(),
        Some([]) => "none".into(),
        Some(changed) => {
            let mut out = String::new();
            for d in changed {
                let line = format!("{} {} -> {}", d.name, d.running, d.configured);
                let _ = writeln!(out, "{}", style::paint(&line, style::YELLOW, colour));
            }
            out.push_str(DRIFT_NOTE);
            out
        }
    }
}

/// The value of the `listeners` field: one line per socket.
pub fn listeners(listeners: &[ListenerDetail]) -> String {
    if listeners.is_empty() {
        return "none".into();
    }
    let rows: Vec<[String; 3]> = listeners
        .iter()
        .map(|l| {
            [
                format!("{} {}", l.network, l.address),
                origin(&l.origin),
                holders(&l.holders),
            ]
        })
        .collect();
    let wide = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (a, b) = (wide(0), wide(1));
    let mut out = String::new();
    for [addr, from, held] in rows {
        let _ = writeln!(out, "{addr:<a$}  {from:<b$}  {held}");
    }
    out
}

fn origin(origin: &ListenerOrigin) -> String {
    match origin {
        ListenerOrigin::Library => "library".into(),
        ListenerOrigin::Config { name } => format!("config {name}"),
    }
}

fn holders(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "held by none (kept for the next instance)".into();
    }
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("held by {}", ids.join(", "))
}

/// The settings, one per line.
pub fn settings(detail: &AppDetail) -> String {
    let mut out = String::new();
    for s in &detail.settings {
        let _ = writeln!(out, "{:<SETTING$}{}", s.name, s.value);
    }
    out
}

/// The `--json` document's detail part: its own types, so that the output
/// stays the same when the wire types change.
#[derive(Serialize)]
pub struct Json<'a> {
    crashes: u32,
    backoff_ms: Option<u64>,
    drift: Option<Vec<DriftJson<'a>>>,
    listeners: Vec<ListenerJson<'a>>,
    settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct DriftJson<'a> {
    setting: &'a str,
    running: &'a str,
    configured: &'a str,
}

#[derive(Serialize)]
struct ListenerJson<'a> {
    network: String,
    address: &'a str,
    origin: &'static str,
    name: Option<&'a str>,
    holders: &'a [u64],
}

/// `detail` as the JSON fields `status --json` adds to `list`'s.
pub fn json(detail: &AppDetail) -> Json<'_> {
    Json {
        crashes: detail.crashes,
        backoff_ms: detail.backoff_ms,
        drift: detail.drift.as_ref().map(|d| {
            d.iter()
                .map(|d| DriftJson {
                    setting: &d.name,
                    running: &d.running,
                    configured: &d.configured,
                })
                .collect()
        }),
        listeners: detail
            .listeners
            .iter()
            .map(|l| ListenerJson {
                network: l.network.to_string(),
                address: &l.address,
                origin: match l.origin {
                    ListenerOrigin::Library => "library",
                    ListenerOrigin::Config { .. } => "config",
                },
                name: match &l.origin {
                    ListenerOrigin::Library => None,
                    ListenerOrigin::Config { name } => Some(name),
                },
                holders: &l.holders,
            })
            .collect(),
        settings: detail
            .settings
            .iter()
            .map(|s| (s.name.clone(), serde_json::Value::String(s.value.clone())))
            .collect(),
    }
}
