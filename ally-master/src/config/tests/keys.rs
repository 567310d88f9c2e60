//! The keys of an app's lifecycle, identity and output, and `[master]
//! log_dir`.

use super::*;

#[test]
fn every_key_set() {
    let config = ok(r#"
[master]
log_dir = "logs/./ally"
frame_timeout = "250ms"

[[app]]
name = "web"
command = ["./server"]
autostart = false
max_draining = 1
inherit_env = true
user = "www-data"
group = 33
log = "log/web.log"

[app.restart]
enabled = false
min_delay = "1s"
max_delay = "1s"
factor = 100
stable_after = "1h"
max_failures = 0

[[app]]
name = "api"
command = ["./api"]
user = 0
group = "0"
log = "inherit"
restart = { factor = 1 }
"#);
    assert_eq!(
        config.master.log_dir,
        Some(PathBuf::from("/etc/ally/logs/ally"))
    );
    assert_eq!(
        config.master.frame_timeout,
        Some(Duration::from_millis(250))
    );
    let web = &config.apps[0];
    assert!(!web.autostart);
    assert_eq!(web.max_draining, 1);
    assert!(web.inherit_env);
    assert_eq!(web.user.as_deref(), Some("www-data"));
    assert_eq!(web.group.as_deref(), Some("33"));
    assert_eq!(
        web.log,
        LogTarget::File(PathBuf::from("/etc/ally/log/web.log"))
    );
    assert_eq!(
        web.restart,
        RestartPolicy {
            enabled: false,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            factor: 100,
            stable_after: Duration::from_secs(3600),
            max_failures: 0,
        }
    );
    let api = &config.apps[1];
    assert!(api.autostart);
    assert_eq!(api.max_draining, DEFAULT_MAX_DRAINING);
    assert_eq!(api.user.as_deref(), Some("0"));
    assert_eq!(api.group.as_deref(), Some("0"));
    assert_eq!(api.log, LogTarget::Inherit);
    assert_eq!(
        api.restart,
        RestartPolicy {
            factor: 1,
            ..RestartPolicy::default()
        }
    );
}

#[test]
fn log_paths() {
    for (text, target) in [
        ("/var/log/web.log", "/var/log/web.log"),
        ("./inherit", "/etc/ally/inherit"),
        ("../log/web", "/etc/ally/../log/web"),
        ("Inherit", "/etc/ally/Inherit"),
    ] {
        let config = ok(&app_with(&format!("log = {text:?}")));
        assert_eq!(config.apps[0].log, LogTarget::File(target.into()), "{text}");
    }
}

#[test]
fn ids_as_numbers_and_strings() {
    for (text, id) in [
        ("1000", "1000"),
        ("\"1000\"", "1000"),
        ("4294967294", "4294967294"),
        ("\"nobody\"", "nobody"),
        ("\"_svc-1.x\"", "_svc-1.x"),
    ] {
        let config = ok(&app_with(&format!("user = {text}\ngroup = {text}")));
        assert_eq!(config.apps[0].user.as_deref(), Some(id), "{text}");
        assert_eq!(config.apps[0].group.as_deref(), Some(id), "{text}");
    }
}

#[test]
fn rejects_bad_flags() {
    assert_eq!(
        err(&app_with(r#"autostart = "yes""#)),
        r#"4:13: invalid type: string "yes", expected a boolean"#
    );
    assert_eq!(
        err(&app_with("inherit_env = 1")),
        "4:15: invalid type: integer `1`, expected a boolean"
    );
    assert_eq!(
        err(&app_with("[app.restart]\nenabled = \"no\"")),
        r#"5:11: invalid type: string "no", expected a boolean"#
    );
}

#[test]
fn rejects_bad_max_draining() {
    assert_eq!(
        err(&app_with("max_draining = 0")),
        "4:16: invalid limit 0: must be a whole number above zero"
    );
    assert_eq!(
        err(&app_with("max_draining = -2")),
        "4:16: invalid limit -2: must be a whole number above zero"
    );
    assert_eq!(
        err(&app_with(r#"max_draining = "4""#)),
        r#"4:16: invalid type: string "4", expected i64"#
    );
}

#[test]
fn rejects_bad_user_and_group() {
    let user = "give a name or a numeric uid, without ':' or NUL";
    for bad in ["", "www:data", "a\\u0000b"] {
        let shown = bad.replace("\\u0000", "\\0");
        assert_eq!(
            err(&app_with(&format!("user = \"{bad}\""))),
            format!("4:8: invalid user \"{shown}\": {user}")
        );
    }
    assert_eq!(
        err(&app_with(r#"group = "wheel:x""#)),
        r#"4:9: invalid group "wheel:x": give a name or a numeric gid, without ':' or NUL"#
    );
    for bad in [
        "-1",
        "4294967295",
        "\"4294967295\"",
        "\"99999999999999999999\"",
    ] {
        let shown = bad.trim_matches('"');
        assert_eq!(
            err(&app_with(&format!("user = {bad}"))),
            format!("4:8: invalid user {shown}: a numeric uid must be from 0 to 4294967294")
        );
        assert_eq!(
            err(&app_with(&format!("group = {bad}"))),
            format!("4:9: invalid group {shown}: a numeric gid must be from 0 to 4294967294")
        );
    }
    assert_eq!(
        err(&app_with("user = true")),
        "4:8: invalid type: boolean `true`, expected a user name or a numeric uid"
    );
    assert_eq!(
        err(&app_with("group = 1.5")),
        "4:9: invalid type: floating point `1.5`, expected a group name or a numeric gid"
    );
}

#[test]
fn rejects_bad_log() {
    let example = r#"write "inherit" or a file path such as "log/web.log""#;
    assert_eq!(
        err(&app_with(r#"log = """#)),
        format!("4:7: empty log path: {example}")
    );
    for dir in ["log/", "/", ".", "..", "log/.", "log/.."] {
        assert_eq!(
            err(&app_with(&format!("log = {dir:?}"))),
            format!("4:7: log path {dir:?} names a directory: {example}")
        );
    }
    assert_eq!(
        err(&app_with(r#"log = "a\u0000""#)),
        "4:7: a path cannot contain a NUL character"
    );
    assert_eq!(
        err(&app_with("log = false")),
        r#"4:7: invalid type: boolean `false`, expected "inherit" or a file path"#
    );
}

#[test]
fn rejects_bad_restart_values() {
    let restart = |line: &str| app_with(&format!("[app.restart]\n{line}"));
    assert_eq!(
        err(&restart("factor = 0")),
        "5:10: invalid factor 0: must be a whole number from 1 to 100"
    );
    assert_eq!(
        err(&restart("factor = 101")),
        "5:10: invalid factor 101: must be a whole number from 1 to 100"
    );
    assert_eq!(
        err(&restart("max_failures = -1")),
        "5:16: invalid count -1: must be a whole number from 0 to 4294967295"
    );
    assert_eq!(
        err(&restart("max_failures = 4294967296")),
        "5:16: invalid count 4294967296: must be a whole number from 0 to 4294967295"
    );
    assert_eq!(
        err(&restart(r#"stable_after = "60""#)),
        r#"5:16: invalid duration "60": expected a number with a unit, e.g. 500ms, 10s, 2m, 1h"#
    );
    assert_eq!(
        err(&restart(r#"min_delay = "0ms""#)),
        r#"5:13: invalid duration "0ms": must be more than zero"#
    );
    assert_eq!(
        err(&restart(r#"max_delay = "2d""#)),
        r#"5:13: invalid duration "2d": expected a number with a unit, e.g. 500ms, 10s, 2m, 1h"#
    );
    assert_eq!(
        err(&app_with("restart = true")),
        "4:11: invalid type: boolean `true`, expected a table, e.g. [app.restart] or \
         restart = { max_failures = 0 }"
    );
    assert_eq!(
        err(&app_with("restart = { tries = 3 }")),
        "4:13: unknown field `tries`, expected one of `enabled`, `min_delay`, `max_delay`, \
         `factor`, `stable_after`, `max_failures`"
    );
}

#[test]
fn rejects_min_delay_above_max_delay() {
    assert_eq!(
        err(&app_with(
            "[app.restart]\nmin_delay = \"5s\"\nmax_delay = \"1500ms\""
        )),
        r#"6:13: max_delay "1500ms" is shorter than min_delay "5s": the delay grows from min_delay up to max_delay"#
    );
    assert_eq!(
        err(&app_with(r#"restart = { max_delay = "100ms" }"#)),
        r#"4:25: max_delay "100ms" is shorter than min_delay "500ms": the delay grows from min_delay up to max_delay"#
    );
    assert_eq!(
        err(&app_with("[app.restart]\n\nmin_delay = \"2m\"")),
        r#"6:13: min_delay "2m" is longer than the default max_delay "30s": lower it or set max_delay"#
    );
}

#[test]
fn rejects_bad_log_dir() {
    assert_eq!(
        err(&format!("[master]\nlog_dir = \"\"\n{}", app_with(""))),
        r#"2:11: empty path: write "." for the config file's directory"#
    );
    assert_eq!(
        err(&format!("[master]\nlog_dir = [\"a\"]\n{}", app_with(""))),
        "2:11: invalid type: sequence, expected a path"
    );
}
