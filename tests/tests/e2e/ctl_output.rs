//! What `ally-ctl list` prints: colour on a terminal only, and the shape
//! of `--json`, against a real master.

use std::process::Command;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::cmd::run;
use ally_tests::fixture::{ANY_PORT, START_TIMEOUT};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::script::{sh_quote, write_script};
use ally_tests::service::Service;
use serde_json::Value;

const ESC: &str = "\x1b[";

/// Whether `script` (util-linux) can run a command on a pseudo-terminal.
fn script_works() -> bool {
    let ok = Command::new("script")
        .args(["-qec", "true", "/dev/null"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: `script -qec true /dev/null` does not work here");
    }
    ok
}

/// Runs `ally-ctl --socket S ARGS...` on a pseudo-terminal, with `TERM` and
/// `NO_COLOR` as given.
fn ctl_on_terminal(master: &Master, args: &str, no_color: Option<&str>) -> String {
    let line = format!(
        "{} --socket {} {args}",
        sh_quote(&bins().ctl.to_string_lossy()),
        sh_quote(&master.socket().to_string_lossy())
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = run(&mut cmd, Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{out}");
    out.stdout
}

#[test]
fn list_is_coloured_on_a_terminal_only() {
    if !script_works() {
        return;
    }
    let dir = TestDir::new("colour");
    let service = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
    let app = AppConfig::new("web", service.path()).ready_timeout("10s");
    let master = Master::start(&dir, &[app]);
    master.wait_main("web", Some(1), START_TIMEOUT);

    let tty = ctl_on_terminal(&master, "list", None);
    assert!(
        tty.contains(ESC) && tty.contains("web"),
        "no colour on a terminal: {tty:?}"
    );
    // `running` and `main` in green.
    assert!(tty.contains("\x1b[32m"), "{tty:?}");
    let tty_status = ctl_on_terminal(&master, "status web", None);
    assert!(tty_status.contains(ESC), "status: {tty_status:?}");

    let no_color = ctl_on_terminal(&master, "list", Some("1"));
    assert!(
        !no_color.contains(ESC) && no_color.contains("web"),
        "colour despite NO_COLOR: {no_color:?}"
    );
    let piped = master.ctl_expect(&["list"], 0);
    master.assert_output(
        &piped,
        !piped.stdout.contains(ESC) && piped.stdout.contains("web"),
        "colour when stdout is not a terminal",
    );
    // The same table either way, once the codes are gone.
    let strip = |s: &str| {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(ESC) {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            rest = rest.find('m').map_or("", |m| &rest[m + 1..]);
        }
        out.push_str(rest);
        out.replace("\r\n", "\n")
    };
    let header = |s: &str| s.lines().next().unwrap_or_default().trim_end().to_string();
    assert_eq!(header(&strip(&tty)), header(&piped.stdout));
}

fn is_uint(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn is_uint_or_null(v: &Value) -> bool {
    v.is_null() || is_uint(v)
}

fn is_str_or_null(v: &Value) -> bool {
    v.is_null() || v.is_string()
}

/// Asserts that `object` has exactly the keys `keys`.
fn assert_keys(object: &Value, keys: &[&str]) {
    let mut got: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "keys of {object}");
}

const APP_KEYS: [&str; 11] = [
    "name",
    "master",
    "family",
    "state",
    "restarts",
    "main",
    "reloading",
    "queued_reloads",
    "last_error",
    "dropped_lines",
    "instances",
];

const INSTANCE_KEYS: [&str; 13] = [
    "id",
    "pid",
    "state",
    "started_unix_ms",
    "deadline_unix_ms",
    "listeners",
    "tasks",
    "version",
    "commit",
    "text",
    "cpu_ms",
    "rss_bytes",
    "uid",
];

#[test]
fn list_json_has_the_documented_shape() {
    let dir = TestDir::new("json_shape");
    let service = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
    let crash = write_script(dir.path(), "crash", "exit 1\n");
    let apps = [
        AppConfig::new("web", service.path()).ready_timeout("10s"),
        AppConfig::new("idle", service.path()).line("autostart = false"),
        AppConfig::new("cron", &crash).line("restart = { min_delay = \"1m\", max_delay = \"1m\" }"),
    ];
    let master = Master::start_with(bins(), &dir, &config_toml(&apps));
    let web = master.wait_main("web", Some(1), START_TIMEOUT);
    assert!(
        wait_until(Duration::from_secs(10), || master.app("cron")["state"]
            == "backoff"),
        "cron should be in backoff\n{}",
        master.log_tail()
    );

    let out = master.ctl_expect(&["list", "--json"], 0);
    master.assert_output(
        &out,
        out.stdout.trim_end().lines().count() == 1,
        "--json prints one line",
    );
    let list: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_keys(&list, &["apps"]);
    let apps = list["apps"].as_array().expect("apps is an array");
    let names: Vec<&str> = apps.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["web", "idle", "cron"], "apps in config order");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for app in apps {
        let backoff = app["state"] == "backoff";
        let mut keys = APP_KEYS.to_vec();
        if backoff {
            keys.push("backoff_until_unix_ms");
            let until = app["backoff_until_unix_ms"].as_u64().unwrap_or(0);
            assert!(
                until > now_ms && until < now_ms + 61_000,
                "next start in about a minute: {app}"
            );
        }
        assert_keys(app, &keys);
        assert!(app["name"].is_string() && app["state"].is_string(), "{app}");
        assert!(
            is_uint(&app["restarts"])
                && is_uint(&app["queued_reloads"])
                && is_uint(&app["dropped_lines"]),
            "{app}"
        );
        assert!(
            is_uint_or_null(&app["main"]) && is_uint_or_null(&app["reloading"]),
            "{app}"
        );
        assert!(is_str_or_null(&app["last_error"]), "{app}");
        assert!(app["master"].is_string(), "{app}");
        assert!(is_str_or_null(&app["family"]), "{app}");
        assert!(app["instances"].is_array(), "{app}");
    }
    let [web_app, idle, cron] = [&apps[0], &apps[1], &apps[2]];
    assert_eq!(web_app["state"], "running");
    assert_eq!(web_app["main"], web.id);
    assert_eq!(web_app["reloading"], Value::Null);
    assert_eq!(idle["state"], "stopped");
    assert_eq!(idle["instances"], serde_json::json!([]));
    assert_eq!(idle["main"], Value::Null);
    assert_eq!(cron["instances"], serde_json::json!([]));
    assert!(cron["last_error"].is_string(), "{cron}");

    let instances = web_app["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{web_app}");
    let inst = &instances[0];
    assert_keys(inst, &INSTANCE_KEYS);
    assert_eq!(inst["id"], web.id);
    assert_eq!(inst["pid"], web.pid);
    assert_eq!(inst["state"], "main");
    let started = inst["started_unix_ms"].as_u64().unwrap_or(0);
    assert!(
        started <= now_ms && started + 60_000 > now_ms,
        "started within the last minute: {inst}"
    );
    assert_eq!(
        inst["deadline_unix_ms"],
        Value::Null,
        "a main instance has no deadline"
    );
    for key in ["listeners", "cpu_ms", "rss_bytes"] {
        assert!(is_uint(&inst[key]), "{key}: {inst}");
    }
    assert!(inst["listeners"].as_u64() >= Some(1), "{inst}");
    assert!(inst["rss_bytes"].as_u64() > Some(0), "{inst}");
    assert!(is_uint_or_null(&inst["tasks"]), "{inst}");
    for key in ["version", "commit", "text"] {
        assert!(is_str_or_null(&inst[key]), "{key}: {inst}");
    }
}
