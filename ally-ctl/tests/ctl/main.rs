//! Runs the real `ally-ctl` binary against a fake master and checks what it
//! prints and how it exits.

mod master;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ally_proto::{
    AppState, AppStatus, ControlRequest, ControlResponse, ErrorCode, Failure, HelloReply,
    InstanceState, InstanceStatus, Report,
};

use master::{FakeMaster, Step, TempDir};

/// Runs ally-ctl with `args`, finding the master in `runtime_dir`.
fn ctl(runtime_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ally-ctl"))
        .args(args)
        .env("ALLY_RUNTIME_DIR", runtime_dir)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

/// Asserts the exit code, showing everything about the run if it differs.
fn expect_code(out: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn reload(app: &str, wait: bool) -> Option<ControlRequest> {
    Some(ControlRequest::Reload {
        app: app.into(),
        wait,
    })
}

fn started(instance: u64) -> Step {
    Step::Reply(ControlResponse::ReloadStarted {
        app: "web".into(),
        instance,
    })
}

fn error(code: ErrorCode, message: &str) -> Step {
    Step::Reply(ControlResponse::Error(Failure::new(code, message)))
}

fn done(message: &str) -> Step {
    Step::Reply(ControlResponse::Done(message.into()))
}

fn log_lines(lines: &[&str]) -> Step {
    Step::Reply(ControlResponse::LogLines(
        lines.iter().map(|l| (*l).to_owned()).collect(),
    ))
}

/// Two apps: `web` mid-reload with a draining and a main instance, `idle`
/// failed, with none and a last error.
fn apps(now: u64) -> Vec<AppStatus> {
    vec![
        AppStatus {
            name: "web".into(),
            state: AppState::Running,
            restarts: 1,
            main: Some(3),
            reloading: Some(4),
            queued_reloads: 0,
            last_error: None,
            instances: vec![
                InstanceStatus {
                    id: 2,
                    pid: 4100,
                    state: InstanceState::Draining,
                    started_unix_ms: now - 7_380_000,
                    listeners: 1,
                    deadline_unix_ms: Some(now + 20_000),
                    report: Report {
                        tasks: Some(0),
                        version: Some("1.4.1".into()),
                        commit: Some("89abcdef0123".into()),
                        text: None,
                    },
                    cpu_ms: 61_000,
                    rss_bytes: 8_500_000,
                },
                InstanceStatus {
                    id: 3,
                    pid: 4242,
                    state: InstanceState::Main,
                    started_unix_ms: now - 312_000,
                    listeners: 2,
                    deadline_unix_ms: None,
                    report: Report {
                        tasks: Some(17),
                        version: Some("1.4.2".into()),
                        commit: Some("0123abcd4567".into()),
                        text: Some("warm".into()),
                    },
                    cpu_ms: 1_234,
                    rss_bytes: 12_900_000,
                },
            ],
        },
        AppStatus {
            name: "idle".into(),
            state: AppState::Failed,
            restarts: 5,
            main: None,
            reloading: None,
            queued_reloads: 0,
            last_error: Some("instance 1 exited with status 1".into()),
            instances: vec![],
        },
    ]
}

#[test]
fn list_prints_a_table() {
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(apps(now_ms())))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["list"]), 0);
    assert_eq!(
        stdout,
        "\
APP   STATE    INSTANCE          PID   UPTIME  LISTEN  TASKS  CPU    RAM    VERSION  COMMIT
web   running  2 draining (20s)  4100  2h03m   1       0      1m01s  8.1M   1.4.1    89abcdef
web   running  3* main           4242  5m12s   2       17     1.2s   12.3M  1.4.2    0123abcd
      reload in progress: waiting for instance 4
idle  failed   -                 -     -       -       -      -      -      -        -
      last error: instance 1 exited with status 1
"
    );
    assert_eq!(master.request(), Some(ControlRequest::List));
}

#[test]
fn list_json_is_pinned() {
    let mut apps = apps(1_000_000_000);
    apps.push(AppStatus {
        name: "cron".into(),
        state: AppState::Backoff {
            until_unix_ms: 1_000_003_000,
        },
        restarts: 2,
        main: None,
        reloading: None,
        queued_reloads: 0,
        last_error: None,
        instances: vec![],
    });
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(apps))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["list", "--json"]), 0);
    assert_eq!(
        stdout,
        r#"{"apps":[{"name":"web","state":"running","restarts":1,"main":3,"reloading":4,"queued_reloads":0,"last_error":null,"instances":[{"id":2,"pid":4100,"state":"draining","started_unix_ms":992620000,"deadline_unix_ms":1000020000,"listeners":1,"tasks":0,"version":"1.4.1","commit":"89abcdef0123","text":null,"cpu_ms":61000,"rss_bytes":8500000},{"id":3,"pid":4242,"state":"main","started_unix_ms":999688000,"deadline_unix_ms":null,"listeners":2,"tasks":17,"version":"1.4.2","commit":"0123abcd4567","text":"warm","cpu_ms":1234,"rss_bytes":12900000}]},{"name":"idle","state":"failed","restarts":5,"main":null,"reloading":null,"queued_reloads":0,"last_error":"instance 1 exited with status 1","instances":[]},{"name":"cron","state":"backoff","backoff_until_unix_ms":1000003000,"restarts":2,"main":null,"reloading":null,"queued_reloads":0,"last_error":null,"instances":[]}]}
"#
    );
}

#[test]
fn reload_wait_succeeds() {
    let done = Step::Reply(ControlResponse::ReloadDone {
        app: "web".into(),
        instance: 3,
    });
    let master = FakeMaster::start(vec![started(3), done]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["reload", "web", "--wait"]), 0);
    assert_eq!(
        stdout,
        "reload of web started: instance 3\nweb: instance 3 is main\n"
    );
    assert_eq!(stderr, "");
    assert_eq!(master.request(), reload("web", true));
}

#[test]
fn reload_without_wait_returns_once_started() {
    let master = FakeMaster::start(vec![started(7), Step::Hang]);
    let socket = master.socket().to_str().unwrap().to_owned();
    // An explicit --socket; the runtime directory is empty.
    let empty = TempDir::new();
    let out = ctl(empty.path(), &["--socket", &socket, "reload", "web"]);
    let (stdout, _) = expect_code(&out, 0);
    assert_eq!(stdout, "reload of web started: instance 7\n");
    assert_eq!(master.request(), reload("web", false));
}

#[test]
fn reload_wait_failure_exits_1_with_the_reason() {
    let reason = "instance 3 exited with status 1 before it was ready; last lines of its \
                  stderr:\nError: address 127.0.0.1:8080 is invalid";
    let master = FakeMaster::start(vec![started(3), error(ErrorCode::ReloadFailed, reason)]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["reload", "web", "--wait"]), 1);
    assert_eq!(stdout, "reload of web started: instance 3\n");
    assert_eq!(
        stderr,
        format!("ally-ctl: reload of web failed: {reason}\n")
    );
}

#[test]
fn unknown_app_exits_4() {
    let master = FakeMaster::start(vec![error(ErrorCode::UnknownApp, "no app named \"wbe\"")]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["reload", "wbe", "--wait"]), 4);
    assert_eq!(stdout, "");
    assert!(stderr.contains("no app named \"wbe\""), "{stderr}");
}

#[test]
fn refused_hello_exits_4() {
    let refusal = Failure::new(
        ErrorCode::NotPermitted,
        "uid 1000 may not control this master",
    );
    let master = FakeMaster::with_hello(HelloReply::Refused(refusal), vec![]);
    let (_, stderr) = expect_code(&ctl(master.dir(), &["list"]), 4);
    assert!(stderr.contains("uid 1000 may not control"), "{stderr}");
}

#[test]
fn no_master_exits_3() {
    let empty = TempDir::new();
    let (_, stderr) = expect_code(&ctl(empty.path(), &["list"]), 3);
    assert_eq!(
        stderr,
        format!(
            "ally-ctl: no ally-master is running (looked for *.sock in {}); start one with \
             `ally-master --config FILE` or pass --socket\n",
            empty.path().display()
        )
    );
}

#[test]
fn timeout_exits_5_and_says_how_to_check() {
    let master = FakeMaster::start(vec![started(3), Step::Hang]);
    let start = Instant::now();
    let out = ctl(
        master.dir(),
        &["reload", "web", "--wait", "--timeout", "0.3"],
    );
    let (stdout, stderr) = expect_code(&out, 5);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(stdout, "reload of web started: instance 3\n");
    assert!(stderr.contains("timed out after 300ms"), "{stderr}");
    assert!(stderr.contains("may still be in progress"), "{stderr}");
    assert!(stderr.contains("ally-ctl list"), "{stderr}");
    assert_eq!(master.request(), reload("web", true));
}

#[test]
fn list_timeout_exits_5() {
    let master = FakeMaster::start(vec![Step::Hang]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["list", "--timeout", "0.2"]), 5);
    assert_eq!(stdout, "");
    assert!(stderr.contains("timed out after 200ms"), "{stderr}");
}

#[test]
fn malformed_reply_exits_6() {
    // A frame announcing one byte that is no ControlResponse variant.
    let master = FakeMaster::start(vec![Step::Raw(vec![1, 0, 0, 0, 0x7f])]);
    let (_, stderr) = expect_code(&ctl(master.dir(), &["list"]), 6);
    assert!(stderr.contains("bad reply from the master"), "{stderr}");
}

#[test]
fn usage_error_exits_2() {
    let empty = TempDir::new();
    let (stdout, stderr) = expect_code(&ctl(empty.path(), &["reload"]), 2);
    assert_eq!(stdout, "");
    assert!(stderr.contains("app"), "{stderr}");
    let (stdout, _) = expect_code(&ctl(empty.path(), &["--help"]), 0);
    assert!(stdout.contains("Error codes:"), "{stdout}");
}

#[test]
fn version_needs_no_master() {
    let empty = TempDir::new();
    let (stdout, _) = expect_code(&ctl(empty.path(), &["version"]), 0);
    assert_eq!(
        stdout,
        format!("ally-ctl {} (protocol 2)\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn list_colours_only_on_a_terminal() {
    if !Command::new("sh")
        .args(["-c", "command -v script"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no `script` (util-linux) to run ally-ctl on a terminal");
        return;
    }
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(apps(now_ms())))]);
    let socket = master.socket().to_str().unwrap().to_owned();
    let command = format!(
        "'{}' --socket '{socket}' list",
        env!("CARGO_BIN_EXE_ally-ctl")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 0);
    assert!(stdout.contains("\x1b[32mrunning\x1b[0m"), "{stdout:?}");
    assert!(stdout.contains("\x1b[31mfailed "), "{stdout:?}");
    assert!(stdout.contains("\x1b[1mAPP"), "{stdout:?}");

    // The same through a pipe: no escape at all.
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(apps(now_ms())))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["list"]), 0);
    assert!(!stdout.contains('\x1b'), "{stdout:?}");
}

#[test]
fn status_prints_the_detail() {
    let now = now_ms();
    let web = apps(now).swap_remove(0);
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(vec![web]))]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["status", "web"]), 0);
    assert_eq!(stderr, "");
    assert_eq!(
        stdout,
        "\
app         web
state       running
restarts    1
main        instance 3
reload      waiting for instance 4
last error  -
instances   2

instance    2
state       draining
pid         4100
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
uptime      5m12s
listeners   2
tasks       17
cpu         1.2s
ram         12.3M
version     1.4.2
commit      0123abcd4567
text        warm
deadline    -
"
    );
    assert_eq!(
        master.request(),
        Some(ControlRequest::Status { app: "web".into() })
    );
}

#[test]
fn status_of_a_stopped_app() {
    let mut idle = apps(now_ms()).swap_remove(1);
    idle.state = AppState::Stopped;
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(vec![idle]))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["status", "idle"]), 0);
    assert!(
        stdout.starts_with("app         idle\nstate       stopped\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nlast error  instance 1 exited with status 1\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("\ninstances   0\n"), "{stdout}");
}

#[test]
fn status_of_another_app_is_a_protocol_error() {
    let idle = apps(now_ms()).swap_remove(1);
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(vec![idle]))]);
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
fn logs_prints_the_last_lines() {
    let lines = [
        "2024-05-01T10:00:00.000Z web#3 stdout| listening on :8080",
        "2024-05-01T10:00:01.000Z web#3 stderr| slow request: 2.1s",
    ];
    let master = FakeMaster::start(vec![log_lines(&lines)]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["logs", "web", "-n", "2"]), 0);
    assert_eq!(stdout, format!("{}\n{}\n", lines[0], lines[1]));
    assert_eq!(stderr, "");
    assert_eq!(
        master.request(),
        Some(ControlRequest::Logs {
            app: "web".into(),
            lines: 2,
            follow: false,
        })
    );
}

#[test]
fn logs_asks_for_20_lines_by_default() {
    let master = FakeMaster::start(vec![log_lines(&[])]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["logs", "web"]), 0);
    assert_eq!(stdout, "");
    assert_eq!(
        master.request(),
        Some(ControlRequest::Logs {
            app: "web".into(),
            lines: 20,
            follow: false,
        })
    );
}

#[test]
fn logs_follow_prints_lines_as_they_come_then_exits_3_when_the_master_goes() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let (go, wait) = std::sync::mpsc::channel();
    let master = FakeMaster::start(vec![
        log_lines(&["old 1", "old 2"]),
        Step::Wait(wait),
        log_lines(&["new 3"]),
        log_lines(&["new 4"]),
        Step::Close,
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ally-ctl"))
        .args(["logs", "web", "-f"])
        .env("ALLY_RUNTIME_DIR", master.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    for _ in 0..2 {
        stdout.read_line(&mut first).unwrap();
    }
    assert_eq!(first, "old 1\nold 2\n");
    // The lines came while ally-ctl still waits for more.
    assert!(child.try_wait().unwrap().is_none(), "ally-ctl exited early");
    go.send(()).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "new 3\nnew 4\n");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("closed the connection"), "{stderr}");
    assert_eq!(
        master.request(),
        Some(ControlRequest::Logs {
            app: "web".into(),
            lines: 20,
            follow: true,
        })
    );
}

#[test]
fn reread_prints_the_summary() {
    let summary = "config reread: added cron; removed old; changed web (applies at its next start)";
    let master = FakeMaster::start(vec![done(summary)]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["reread"]), 0);
    assert_eq!(stdout, format!("{summary}\n"));
    assert_eq!(master.request(), Some(ControlRequest::Reread));
}

#[test]
fn reread_of_an_invalid_config_exits_1_with_the_place() {
    let message = "/etc/ally/ally.toml:12:9: unknown field `comand`; nothing changed";
    let master = FakeMaster::start(vec![error(ErrorCode::InvalidConfig, message)]);
    let (stdout, stderr) = expect_code(&ctl(master.dir(), &["reread"]), 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!("ally-ctl: cannot reread the config: {message}\n")
    );
}

#[test]
fn reread_timeout_exits_5() {
    let master = FakeMaster::start(vec![Step::Hang]);
    let (_, stderr) = expect_code(&ctl(master.dir(), &["reread", "--timeout", "0.2"]), 5);
    assert!(stderr.contains("timed out after 200ms"), "{stderr}");
}

#[test]
fn reopen_prints_the_answer() {
    let master = FakeMaster::start(vec![done("reopened 3 log files")]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["reopen"]), 0);
    assert_eq!(stdout, "reopened 3 log files\n");
    assert_eq!(master.request(), Some(ControlRequest::Reopen));
}

#[test]
fn a_reply_of_the_wrong_kind_exits_6() {
    let master = FakeMaster::start(vec![log_lines(&["x"])]);
    let (_, stderr) = expect_code(&ctl(master.dir(), &["stop", "web"]), 6);
    assert!(stderr.contains("expected Done"), "{stderr}");
}

#[test]
fn help_lists_every_command_and_exit_code() {
    let empty = TempDir::new();
    let (stdout, _) = expect_code(&ctl(empty.path(), &["--help"]), 0);
    for command in [
        "list", "status", "reload", "start", "stop", "restart", "kill", "logs", "reread", "reopen",
        "version",
    ] {
        assert!(
            stdout.contains(&format!("\n  {command} ")),
            "{command}: {stdout}"
        );
    }
    for code in 1..=6 {
        assert!(stdout.contains(&format!("\n  {code} ")), "{code}: {stdout}");
    }
}
