//! An app's settings as `ally-ctl status` shows them, each by its config
//! key and written as in the config file, and the drift between two
//! configs: the settings whose values differ.
//!
//! One list, [`settings`], feeds both, so every setting shown is compared
//! and a setting added to it is both shown and compared. The shared-state
//! limits (`max_cache_entries`, ...) are not in it: they are those the app
//! was first loaded with until the master restarts, so neither an
//! instance's start nor a reload applies them.

use std::time::Duration;

use ally_proto::{Drift, Setting};

use super::{AppConfig, LogTarget, ReadyMode, signal_name};

/// A duration as a config writes it, in its largest exact unit: `"500ms"`,
/// `"30s"`, `"2m"`, `"1h"`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|&(scale, _)| ms.is_multiple_of(scale))
        .map_or((ms, "ms"), |(scale, unit)| (ms / scale, unit));
    format!("\"{n}{unit}\"")
}

/// A string as a TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `["a", "b"]`.
fn array<'a>(items: impl Iterator<Item = String> + 'a) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// Every setting of `app` that an instance's start or a reload applies,
/// by config key, in the config reference's order. An unset `user`,
/// `group` or `log` is shown as what it means, in parentheses.
pub fn settings(app: &AppConfig) -> Vec<Setting> {
    let r = &app.restart;
    let ready = match app.ready {
        ReadyMode::Lib => quote("lib"),
        ReadyMode::Notify => quote("notify"),
        ReadyMode::Delay(d) => format!("\"delay:{}", &show_duration(d)[1..]),
        ReadyMode::Immediate => quote("immediate"),
    };
    let listen = app.listen.iter().map(|d| {
        let mode = d
            .spec
            .mode
            .map_or(String::new(), |m| format!("?mode={m:04o}"));
        let scheme = d.spec.network.to_string();
        let prefix = if d.name == scheme {
            String::new()
        } else {
            format!("{}=", d.name)
        };
        quote(&format!("{prefix}{scheme}://{}{mode}", d.spec.address))
    });
    let env = app
        .env
        .iter()
        .map(|(k, v)| format!("{k} = {}", quote(v)))
        .collect::<Vec<_>>();
    let env = if env.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{ {} }}", env.join(", "))
    };
    let pairs: [(&str, String); 22] = [
        ("command", array(app.command.iter().map(|a| quote(a)))),
        ("cwd", quote(&app.cwd.to_string_lossy())),
        ("env", env),
        ("inherit_env", app.inherit_env.to_string()),
        (
            "user",
            app.user
                .as_deref()
                .map_or_else(|| "(the master's)".to_owned(), quote),
        ),
        (
            "group",
            app.group
                .as_deref()
                .map_or_else(|| "(the user's)".to_owned(), quote),
        ),
        ("autostart", app.autostart.to_string()),
        ("ready", ready),
        ("ready_timeout", show_duration(app.ready_timeout)),
        ("stop_timeout", show_duration(app.stop_timeout)),
        ("request_timeout", show_duration(app.request_timeout)),
        (
            "stop_signal",
            quote(signal_name(app.stop_signal).unwrap_or("?")),
        ),
        ("max_draining", app.max_draining.to_string()),
        ("listen", array(listen)),
        (
            "privileged_ports",
            array(app.privileged_ports.iter().map(u16::to_string)),
        ),
        (
            "log",
            match &app.log {
                LogTarget::Default => "(the default file)".to_owned(),
                LogTarget::Inherit => quote("inherit"),
                LogTarget::File(path) => quote(&path.to_string_lossy()),
            },
        ),
        ("restart.enabled", r.enabled.to_string()),
        ("restart.min_delay", show_duration(r.min_delay)),
        ("restart.factor", r.factor.to_string()),
        ("restart.max_delay", show_duration(r.max_delay)),
        ("restart.stable_after", show_duration(r.stable_after)),
        ("restart.max_failures", r.max_failures.to_string()),
    ];
    pairs
        .into_iter()
        .map(|(name, value)| Setting {
            name: name.to_owned(),
            value,
        })
        .collect()
}

/// The settings whose values differ between `running` (what an instance
/// was started with) and `configured` (the config now), in
/// [`settings`]'s order.
pub fn drift(running: &AppConfig, configured: &AppConfig) -> Vec<Drift> {
    settings(running)
        .into_iter()
        .zip(settings(configured))
        .filter(|(old, new)| old.value != new.value)
        .map(|(old, new)| Drift {
            name: old.name,
            running: old.value,
            configured: new.value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::parse;

    fn app(text: &str) -> AppConfig {
        parse(text, Path::new("/etc/ally/t.toml"))
            .unwrap()
            .apps
            .remove(0)
    }

    const BASE: &str = "[[app]]\nname = \"web\"\ncommand = [\"./srv\", \"-v\"]\n";

    #[test]
    fn durations_in_their_largest_exact_unit() {
        assert_eq!(show_duration(Duration::from_millis(500)), "\"500ms\"");
        assert_eq!(show_duration(Duration::from_secs(30)), "\"30s\"");
        assert_eq!(show_duration(Duration::from_secs(120)), "\"2m\"");
        assert_eq!(show_duration(Duration::from_secs(3600)), "\"1h\"");
    }

    #[test]
    fn settings_read_as_the_config_writes_them() {
        let text = format!(
            "{BASE}listen = [\"http=tcp://127.0.0.1:80\", \"unix:///run/a.sock?mode=0660\"]\n\
             ready = \"delay:2s\"\nenv = {{ A = \"x \\\"y\\\"\" }}\n"
        );
        let all = settings(&app(&text));
        let get = |k: &str| all.iter().find(|s| s.name == k).unwrap().value.clone();
        assert_eq!(get("command"), r#"["./srv", "-v"]"#);
        assert_eq!(get("cwd"), r#""/etc/ally""#);
        assert_eq!(
            get("listen"),
            r#"["http=tcp://127.0.0.1:80", "unix:///run/a.sock?mode=0660"]"#
        );
        assert_eq!(get("ready"), r#""delay:2s""#);
        assert_eq!(get("env"), r#"{ A = "x \"y\"" }"#);
        assert_eq!(get("user"), "(the master's)");
        assert_eq!(get("restart.max_delay"), r#""30s""#);
    }

    #[test]
    fn drift_names_exactly_what_changed() {
        let before = app(BASE);
        assert!(drift(&before, &before).is_empty());
        let after = app(&format!(
            "{BASE}stop_timeout = \"1m\"\n[app.restart]\nmax_failures = 3\n"
        ));
        let changed = drift(&before, &after);
        assert_eq!(
            changed,
            vec![
                Drift {
                    name: "stop_timeout".into(),
                    running: "\"30s\"".into(),
                    configured: "\"1m\"".into(),
                },
                Drift {
                    name: "restart.max_failures".into(),
                    running: "10".into(),
                    configured: "3".into(),
                },
            ]
        );
    }

    #[test]
    fn shared_state_limits_are_not_drift() {
        let before = app(BASE);
        let after = app(&format!("{BASE}max_atomics = 5\n"));
        assert!(drift(&before, &after).is_empty());
    }
}
