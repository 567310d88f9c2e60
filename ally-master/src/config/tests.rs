use super::*;

mod include;
mod keys;

const PATH: &str = "/etc/ally/ally.toml";

fn ok(text: &str) -> Config {
    parse(text, Path::new(PATH)).unwrap_or_else(|e| panic!("{e}"))
}

/// The error for `text` as `line:column: message`.
fn err(text: &str) -> String {
    let e = parse(text, Path::new(PATH)).expect_err("config should be refused");
    let shown = e.to_string();
    match e {
        ConfigError::Invalid { line, column, .. } => {
            let rest = shown
                .strip_prefix(&format!("{PATH}:"))
                .expect("names the file");
            assert!(rest.starts_with(&format!("{line}:{column}: ")), "{shown}");
            rest.to_owned()
        }
        other => panic!("not an Invalid error: {other}"),
    }
}

/// A minimal valid app, to which a test adds one line.
fn app_with(line: &str) -> String {
    format!("[[app]]\nname = \"web\"\ncommand = [\"./server\"]\n{line}\n")
}

#[test]
fn full_config() {
    let config = ok(r#"
[master]
socket = "ctl/web.sock"

[[app]]
name = "web"
command = ["./target/release/examples/demo", "--addr", "127.0.0.1:8080"]
cwd = "./run/."
env = { RUST_LOG = "info", EMPTY = "" }
ready_timeout = "500ms"
stop_timeout = "2m"
stop_signal = "usr2"

[[app]]
name = "api.v2_b-1"
command = ["/usr/bin/api"]
cwd = "/srv/api"
ready_timeout = "1h"
stop_signal = "SIGQUIT"
"#);
    assert_eq!(config.path, PathBuf::from(PATH));
    assert_eq!(
        config.master.socket,
        Some(PathBuf::from("/etc/ally/ctl/web.sock"))
    );
    let web = &config.apps[0];
    assert_eq!(web.name, "web");
    assert_eq!(
        web.command,
        ["./target/release/examples/demo", "--addr", "127.0.0.1:8080"]
    );
    assert_eq!(web.cwd, PathBuf::from("/etc/ally/run"));
    assert_eq!(
        web.env,
        BTreeMap::from([
            ("EMPTY".to_owned(), String::new()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ])
    );
    assert_eq!(web.ready_timeout, Duration::from_millis(500));
    assert_eq!(web.stop_timeout, Duration::from_secs(120));
    assert_eq!(web.stop_signal, Signal::USR2);
    let api = &config.apps[1];
    assert_eq!(api.name, "api.v2_b-1");
    assert_eq!(api.cwd, PathBuf::from("/srv/api"));
    assert_eq!(api.ready_timeout, Duration::from_secs(3600));
    assert_eq!(api.stop_signal, Signal::QUIT);
    assert_eq!(signal_name(api.stop_signal), Some("SIGQUIT"));
}

#[test]
fn defaults() {
    let config = ok("[[app]]\nname = \"web\"\ncommand = [\"server\"]\n");
    assert_eq!(config.master, MasterSettings::default());
    assert_eq!(
        config.apps,
        [AppConfig {
            name: "web".into(),
            family: None,
            command: vec!["server".into()],
            cwd: PathBuf::from("/etc/ally"),
            env: BTreeMap::new(),
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            stop_signal: Signal::TERM,
            limits: ally_proto::state::Limits::default(),
            autostart: true,
            restart: RestartPolicy::default(),
            max_draining: 4,
            inherit_env: false,
            user: None,
            group: None,
            listen: Vec::new(),
            ready: ReadyMode::Lib,
            privileged_ports: Vec::new(),
            log: LogTarget::Default,
        }]
    );
    assert_eq!(signal_name(DEFAULT_STOP_SIGNAL), Some("SIGTERM"));
}

#[test]
fn relative_config_path_is_made_absolute() {
    let config = parse(&app_with(""), Path::new("ally.toml")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(config.path, cwd.join("ally.toml"));
    assert_eq!(config.apps[0].cwd, cwd);
}

#[test]
fn durations() {
    for (text, ms) in [("1ms", 1), ("500ms", 500), ("10s", 10_000), ("2m", 120_000)] {
        assert_eq!(value::parse_duration(text), Ok(Duration::from_millis(ms)));
    }
    assert_eq!(value::parse_duration("24h"), Ok(value::MAX_TIMEOUT));
    for bad in ["", "10", "s", "1.5s", "10 s", "-1s", "10S", "1d", "+1s"] {
        assert!(value::parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert!(value::parse_duration("99999999999999999999999h").is_err());
    assert!(value::parse_duration("18446744073709551615h").is_err());
}

#[test]
fn signal_names() {
    for (text, sig) in [
        ("TERM", Signal::TERM),
        ("sigterm", Signal::TERM),
        ("SigHup", Signal::HUP),
        ("ALRM", Signal::ALARM),
        ("winch", Signal::WINCH),
    ] {
        let config = ok(&app_with(&format!("stop_signal = {text:?}")));
        assert_eq!(config.apps[0].stop_signal, sig, "{text}");
    }
}

#[test]
fn rejects_bad_duration() {
    assert_eq!(
        err(&app_with(r#"ready_timeout = "10x""#)),
        r#"4:17: invalid duration "10x": expected a number with a unit, e.g. 500ms, 10s, 2m, 1h"#
    );
    assert_eq!(
        err(&app_with("stop_timeout = 10")),
        r#"4:16: invalid type: integer `10`, expected a duration with a unit, e.g. "10s""#
    );
    assert_eq!(
        err(&app_with(r#"stop_timeout = "0ms""#)),
        r#"4:16: invalid duration "0ms": must be more than zero"#
    );
    assert_eq!(
        err(&app_with(r#"stop_timeout = "25h""#)),
        r#"4:16: invalid duration "25h": must be at most 24h"#
    );
}

#[test]
fn rejects_unknown_keys() {
    assert_eq!(
        err(&app_with("restarts = true")),
        "4:1: unknown field `restarts`, expected one of `name`, `command`, `family`, `cwd`, `env`, \
         `ready_timeout`, `stop_timeout`, `request_timeout`, `stop_signal`, `max_cache_entries`, `max_cache_bytes`, \
         `max_atomics`, `max_locks`, `autostart`, `restart`, `max_draining`, `listen`, `ready`, `inherit_env`, \
         `user`, `group`, `log`, `privileged_ports`"
    );
    assert_eq!(
        err("[master]\nsockets = \"x\"\n"),
        "2:1: unknown field `sockets`, expected one of `socket`, `log_dir`, `group`, `frame_timeout`"
    );
    assert_eq!(
        err("[mastr]\n"),
        "1:2: unknown field `mastr`, expected one of `master`, `app`, `include`"
    );
    assert_eq!(
        err(&app_with("[app.restart]\nenable = false")),
        "5:1: unknown field `enable`, expected one of `enabled`, `min_delay`, `max_delay`, \
         `factor`, `stable_after`, `max_failures`"
    );
}

#[test]
fn requires_an_app() {
    let hint = r#"declare one with an [[app]] table: name = "web" and command = ["./server"]"#;
    assert_eq!(err(""), format!("1:1: no app declared: {hint}"));
    assert_eq!(
        err("[master]\nsocket = \"x.sock\"\n"),
        format!("1:1: no app declared: {hint}")
    );
    assert_eq!(err("\napp = []\n"), format!("2:7: no app declared: {hint}"));
    assert_eq!(
        err("[app]\nname = \"web\"\n"),
        "1:1: `app` must be an array of tables: write [[app]] (two brackets), not [app]"
    );
}

#[test]
fn rejects_missing_name_and_command() {
    let first = "[[app]]\nname = \"web\"\ncommand = [\"x\"]\n\n";
    assert_eq!(
        err(&format!("{first}[[app]]\ncommand = [\"x\"]\n")),
        r#"5:1: this [[app]] has no name: add one, e.g. name = "web""#
    );
    assert_eq!(
        err(&format!("{first}[[app]]\nname = \"api\"\n")),
        r#"5:1: app "api" has no command: add one, e.g. command = ["./server", "--port", "8080"]"#
    );
}

#[test]
fn rejects_bad_commands() {
    let base = "[[app]]\nname = \"web\"\n";
    assert_eq!(
        err(&format!("{base}command = []\n")),
        r#"3:11: command is empty: give the program and its arguments, e.g. ["./server", "--port", "8080"]"#
    );
    assert_eq!(
        err(&format!("{base}command = [\" \", \"-v\"]\n")),
        r#"3:12: the program name is blank: the command's first element names the program to run, e.g. ["./server", "--port", "8080"]"#
    );
    assert_eq!(
        err(&format!("{base}command = [\"\"]\n")),
        r#"3:12: the program name is blank: the command's first element names the program to run, e.g. ["./server", "--port", "8080"]"#
    );
    assert_eq!(
        err(&format!("{base}command = [\"x\", \"a\\u0000b\"]\n")),
        "3:17: a command argument cannot contain a NUL character"
    );
    assert_eq!(
        err(&format!("{base}command = \"./server --port 8080\"\n")),
        r#"3:11: invalid type: string "./server --port 8080", expected the program and its arguments as an array, e.g. ["./server", "--port", "8080"]"#
    );
}

#[test]
fn rejects_bad_names() {
    let expected = r#"use 1 to 64 letters, digits, '_', '.' or '-' (and not "." or "..")"#;
    for bad in ["", "w b", "web/1", "..", ".", "é", &"x".repeat(65)] {
        let text = format!("[[app]]\nname = {bad:?}\ncommand = [\"x\"]\n");
        assert_eq!(
            err(&text),
            format!("2:8: invalid app name {bad:?}: {expected}")
        );
    }
    ok(&format!(
        "[[app]]\nname = {:?}\ncommand = [\"x\"]\n",
        "x".repeat(64)
    ));
}

#[test]
fn families_are_named_like_apps_and_all_is_reserved() {
    let config = ok("[[app]]\nname = \"web\"\nfamily = \"payments\"\ncommand = [\"x\"]\n");
    assert_eq!(config.apps[0].family.as_deref(), Some("payments"));
    let expected = r#"use 1 to 64 letters, digits, '_', '.' or '-' (and not "." or "..")"#;
    for bad in ["", "a b", "..", "é"] {
        let text = format!("[[app]]\nname = \"web\"\nfamily = {bad:?}\ncommand = [\"x\"]\n");
        assert_eq!(
            err(&text),
            format!("3:10: invalid family name {bad:?}: {expected}")
        );
    }
    assert_eq!(
        err("[[app]]\nname = \"web\"\nfamily = [\"a\", \"b\"]\ncommand = [\"x\"]\n"),
        "3:10: invalid type: sequence, expected a family name such as \"payments\""
    );
    for text in [
        "[[app]]\nname = \"all\"\ncommand = [\"x\"]\n",
        "[[app]]\nname = \"web\"\nfamily = \"all\"\ncommand = [\"x\"]\n",
    ] {
        assert!(err(text).contains("\"all\" is reserved"), "{}", err(text));
    }
}

#[test]
fn duplicate_name_points_at_the_second() {
    let text = "[[app]]\nname = \"web\"\ncommand = [\"x\"]\n\n[[app]]\n  name = \"web\"\ncommand = [\"y\"]\n";
    assert_eq!(
        err(text),
        r#"6:10: duplicate app name "web": already declared at /etc/ally/ally.toml:2:8; app names must be unique"#
    );
}

#[test]
fn rejects_bad_env() {
    assert_eq!(
        err(&app_with(r#"env = { "A=B" = "x" }"#)),
        r#"4:9: invalid environment variable name "A=B": it must be non-empty, without '=' or NUL"#
    );
    assert_eq!(
        err(&app_with(r#"env = { "" = "x" }"#)),
        r#"4:9: invalid environment variable name "": it must be non-empty, without '=' or NUL"#
    );
    assert_eq!(
        err(&app_with(r#"env = { ALLY_APP = "x" }"#)),
        "4:9: environment variable ALLY_APP is set by the master for every instance; \
         remove it from env"
    );
    assert_eq!(
        err(&app_with("env = { PORT = 8080 }")),
        "4:16: invalid type: integer `8080`, expected a string"
    );
    assert_eq!(
        err(&app_with(r#"env = { A = "x\u0000" }"#)),
        "4:13: an environment variable value cannot contain a NUL character"
    );
}

#[test]
fn rejects_bad_signal() {
    assert_eq!(
        err(&app_with(r#"stop_signal = "KILL""#)),
        r#"4:15: unsupported stop signal "KILL": use one of HUP, INT, QUIT, USR1, USR2, TERM, WINCH, ALRM"#
    );
}

#[test]
fn rejects_bad_paths() {
    assert_eq!(
        err(&app_with(r#"cwd = """#)),
        r#"4:7: empty path: write "." for the config file's directory"#
    );
    let long = format!("/{}", "s".repeat(107));
    assert_eq!(
        err(&format!("[master]\nsocket = {long:?}\n{}", app_with(""))),
        format!(
            "2:10: socket path {long} is 108 bytes long; a unix socket path can have at most 107"
        )
    );
}

#[test]
fn rejects_bad_toml() {
    assert_eq!(
        err("[[app]]\nname = \"web\"\ncommand = [\"x\"\n"),
        "3:15: unclosed array, expected `]`"
    );
    assert_eq!(
        err("[[app]]\nname = \"web\"\nname = \"api\"\n"),
        "3:1: duplicate key"
    );
}

#[test]
fn columns_count_characters() {
    assert_eq!(
        err(&app_with(r#"env = { "É" = "x", ALLY_APP = "y" }"#)),
        "4:20: environment variable ALLY_APP is set by the master for every instance; \
         remove it from env"
    );
}

#[test]
fn load_names_the_file() {
    let missing = Path::new("/nonexistent/ally.toml");
    let e = load(missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/ally.toml: "),
        "{e}"
    );

    let dir = std::env::temp_dir().join(format!("ally-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, b"[[app]]\nname = \"w\xffb\"\n").unwrap();
    let e = load(&file).unwrap_err().to_string();
    std::fs::write(&file, app_with("")).unwrap();
    let config = load(&file);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        e,
        format!("{}:2:10: the file is not valid UTF-8", file.display())
    );
    assert_eq!(config.unwrap().apps[0].cwd, dir);
}

#[test]
fn state_limits() {
    let config = ok(&app_with(
        "max_cache_entries = 10\nmax_cache_bytes = 4096\n",
    ));
    assert_eq!(config.apps[0].limits.max_entries, 10);
    assert_eq!(config.apps[0].limits.max_bytes, 4096);
    assert_eq!(
        config.apps[0].limits.max_locks,
        ally_proto::state::Limits::default().max_locks
    );
    let err = parse(
        &app_with("max_locks = 0\n"),
        Path::new("/etc/ally/ally.toml"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("above zero"), "{err}");
}
