//! status, start, stop, restart and kill.

use super::*;

/// `status` as the master answers it: a few settings, listeners of both
/// origins, one setting drifted.
fn detail(status: AppStatus) -> ControlResponse {
    let setting = |name: &str, value: &str| Setting {
        name: name.into(),
        value: value.into(),
    };
    ControlResponse::Detail(Box::new(AppDetail {
        status,
        settings: vec![
            setting("command", r#"["./srv"]"#),
            setting("stop_timeout", r#""1m""#),
            setting("restart.max_failures", "10"),
        ],
        drift: Some(vec![Drift {
            name: "stop_timeout".into(),
            running: r#""30s""#.into(),
            configured: r#""1m""#.into(),
        }]),
        listeners: vec![
            ListenerDetail {
                network: Network::Tcp,
                address: "0.0.0.0:80".into(),
                origin: ListenerOrigin::Config {
                    name: "http".into(),
                },
                holders: vec![2, 3],
            },
            ListenerDetail {
                network: Network::Unix,
                address: "/run/web.sock".into(),
                origin: ListenerOrigin::Library,
                holders: vec![],
            },
        ],
        crashes: 1,
        backoff_ms: Some(500),
    }))
}

#[test]
fn status_prints_the_detail() {
    let now = now_ms();
    let web = apps(now).swap_remove(0);
    let master = FakeMaster::start(vec![Step::Reply(detail(web))]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["status", "web"]), 0);
    assert_eq!(stderr, "");
    assert_eq!(
        stdout,
        "\
app         web
family      -
state       running
restarts    1
main        instance 3
reload      waiting for instance 4
last error  -
dropped     0
crashes     1 in a row (back-off 500ms; 10 make it failed)
drift       stop_timeout \"30s\" -> \"1m\"
            (these apply at its next start or reload)
listeners   tcp 0.0.0.0:80      config http  held by 2, 3
            unix /run/web.sock  library      held by none (kept for the next instance)
instances   2

instance    2
state       draining
pid         4100
user        uid 4000000000
uptime      2h03m
listeners   1
tasks       0
cpu         1m01s
ram         8.1M
version     1.4.1
commit      89abcdef0123
text        -
deadline    20s left

instance    3
state       main
pid         4242
user        uid 4000000000
uptime      5m12s
listeners   2
tasks       17
cpu         1.2s
ram         12.3M
version     1.4.2
commit      0123abcd4567
text        warm
deadline    -

command               [\"./srv\"]
stop_timeout          \"1m\"
restart.max_failures  10
"
    );
    assert_eq!(
        master.request(),
        Some(ControlRequest::Detail { app: "web".into() })
    );
}

#[test]
fn status_json_adds_the_detail_to_the_list_object() {
    let web = apps(now_ms()).swap_remove(0);
    let master = FakeMaster::start(vec![Step::Reply(detail(web))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["status", "web", "--json"]), 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["name"], "web");
    assert_eq!(doc["instances"][1]["id"], 3);
    assert_eq!(doc["crashes"], 1);
    assert_eq!(doc["backoff_ms"], 500);
    assert_eq!(doc["drift"][0]["setting"], "stop_timeout");
    assert_eq!(doc["drift"][0]["running"], "\"30s\"");
    assert_eq!(doc["drift"][0]["configured"], "\"1m\"");
    assert_eq!(doc["listeners"][0]["origin"], "config");
    assert_eq!(doc["listeners"][0]["name"], "http");
    assert_eq!(doc["listeners"][0]["holders"], serde_json::json!([2, 3]));
    assert_eq!(doc["listeners"][1]["origin"], "library");
    assert_eq!(doc["settings"]["stop_timeout"], "\"1m\"");
}

#[test]
fn status_of_a_stopped_app() {
    let mut idle = apps(now_ms()).swap_remove(1);
    idle.state = AppState::Stopped;
    let master = FakeMaster::start(vec![Step::Reply(detail(idle))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["status", "idle"]), 0);
    assert!(
        stdout.starts_with("app         idle\nfamily      -\nstate       stopped\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nlast error  instance 1 exited with status 1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\ninstances   0\n\ncommand "), "{stdout}");
}

#[test]
fn status_of_another_app_is_a_protocol_error() {
    let idle = apps(now_ms()).swap_remove(1);
    let master = FakeMaster::start(vec![Step::Reply(detail(idle))]);
    let (_, stderr) = expect_code(&ctl(master.dir(), &["status", "web"]), 6);
    assert!(stderr.contains("got the status of idle"), "{stderr}");
}

#[test]
fn unknown_app_exits_4_for_every_app_command() {
    let message = "no app named `wbe`; this master runs: web, idle";
    for args in [
        &["status", "wbe"][..],
        &["start", "wbe"],
        &["stop", "wbe"],
        &["restart", "wbe"],
        &["kill", "wbe"],
        &["logs", "wbe"],
        &["logs", "wbe", "-f"],
    ] {
        let master = FakeMaster::start(vec![error(ErrorCode::UnknownApp, message)]);
        let (stdout, stderr) = expect_code(&ctl(master.dir(), args), 4);
        assert_eq!(stdout, "", "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn start_stop_restart_print_the_outcome() {
    let cases = [
        (
            "start",
            ControlRequest::Start { app: "web".into() },
            "web: instance 5 is main",
        ),
        (
            "stop",
            ControlRequest::Stop { app: "web".into() },
            "web: stopped 2 instances",
        ),
        (
            "restart",
            ControlRequest::Restart { app: "web".into() },
            "web: instance 6 is main",
        ),
    ];
    for (command, request, message) in cases {
        let master = FakeMaster::start(vec![done(message)]);
        let (stdout, stderr) = expect_code(&ctl(master.dir(), &[command, "web"]), 0);
        assert_eq!(stdout, format!("{message}\n"), "{command}");
        assert_eq!(stderr, "", "{command}");
        assert_eq!(master.request(), Some(request), "{command}");
    }
}

#[test]
fn start_that_fails_exits_1_with_the_reason() {
    let reason = "instance 5 exited with status 1 before it was ready; last lines of its \
                  stderr:\nError: bad config";
    let master = FakeMaster::start(vec![error(ErrorCode::ReloadFailed, reason)]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["start", "web"]), 1);
    assert_eq!(stdout, "");
    assert_eq!(stderr, format!("ally-ctl: cannot start web: {reason}\n"));
}

#[test]
fn stop_refused_while_shutting_down_exits_4() {
    let master = FakeMaster::start(vec![error(
        ErrorCode::ShuttingDown,
        "the master is exiting",
    )]);
    let (_, stderr) = expect_code(&ctl(master.dir(), &["stop", "web"]), 4);
    assert!(
        stderr.contains("cannot stop web: the master is exiting"),
        "{stderr}"
    );
}

#[test]
fn restart_timeout_exits_5_and_says_how_to_check() {
    let master = FakeMaster::start(vec![Step::Hang]);
    let out = ctl(master.dir(), &["restart", "web", "--timeout", "0.2"]);
    let (stdout, stderr) = expect_code(&out, 5);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("timed out after 200ms waiting for web to restart"),
        "{stderr}"
    );
    assert!(stderr.contains("ally-ctl status web"), "{stderr}");
    assert_eq!(
        master.request(),
        Some(ControlRequest::Restart { app: "web".into() })
    );
}

#[test]
fn restart_help_points_to_reload() {
    let empty = TempDir::new();
    let (stdout, _) = expect_code(&ctl(empty.path(), &["restart", "--help"]), 0);
    assert!(
        stdout.contains("not zero-downtime; use reload for that"),
        "{stdout}"
    );
}

#[test]
fn kill_sends_term_by_default_and_takes_names_and_numbers() {
    let cases = [
        (&["kill", "web"][..], rustix::process::Signal::TERM),
        (
            &["kill", "web", "--signal", "usr1"],
            rustix::process::Signal::USR1,
        ),
        (
            &["kill", "web", "--signal", "SIGHUP"],
            rustix::process::Signal::HUP,
        ),
        (&["kill", "web", "-s", "9"], rustix::process::Signal::KILL),
    ];
    for (args, signal) in cases {
        let master = FakeMaster::start(vec![done("web: sent signal to 2 instance(s)")]);
        let (stdout, _) = expect_code(&ctl(master.dir(), args), 0);
        assert_eq!(stdout, "web: sent signal to 2 instance(s)\n");
        assert_eq!(
            master.request(),
            Some(ControlRequest::Kill {
                app: "web".into(),
                signal: signal.as_raw(),
            }),
            "{args:?}"
        );
    }
}

#[test]
fn kill_with_a_bad_signal_name_exits_2_naming_the_valid_ones() {
    let empty = TempDir::new();
    let (stdout, stderr) = expect_code(
        &ctl(empty.path(), &["kill", "web", "--signal", "TERMINATE"]),
        2,
    );
    assert_eq!(stdout, "");
    assert!(stderr.contains("unknown signal \"TERMINATE\""), "{stderr}");
    assert!(stderr.contains("HUP INT QUIT"), "{stderr}");
    assert!(stderr.contains("TERM"), "{stderr}");
}

#[test]
fn status_drift_is_yellow_on_a_terminal_only() {
    if !Command::new("sh")
        .args(["-c", "command -v script"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no `script` (util-linux) to run ally-ctl on a terminal");
        return;
    }
    let web = apps(now_ms()).swap_remove(0);
    let master = FakeMaster::start(vec![Step::Reply(detail(web.clone()))]);
    let socket = master.socket().to_str().unwrap().to_owned();
    let command = format!(
        "'{}' --socket '{socket}' status web",
        env!("CARGO_BIN_EXE_ally-ctl")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 0);
    assert!(
        stdout.contains("drift       \x1b[33mstop_timeout \"30s\" -> \"1m\"\x1b[0m"),
        "{stdout:?}"
    );
    let master = FakeMaster::start(vec![Step::Reply(detail(web))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["status", "web"]), 0);
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
}
