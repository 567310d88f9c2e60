//! Runs the real `ally-ctl` binary against a fake master and checks what it
//! prints and how it exits.

mod master;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ally_proto::{
    AppStatus, ControlRequest, ControlResponse, ErrorCode, Failure, HelloReply, InstanceState,
    InstanceStatus,
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

/// Two apps: `web` mid-reload with a draining and a main instance, `idle`
/// with none and a last error.
fn apps(now: u64) -> Vec<AppStatus> {
    vec![
        AppStatus {
            name: "web".into(),
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
                },
                InstanceStatus {
                    id: 3,
                    pid: 4242,
                    state: InstanceState::Main,
                    started_unix_ms: now - 312_000,
                    listeners: 2,
                    deadline_unix_ms: None,
                },
            ],
        },
        AppStatus {
            name: "idle".into(),
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
APP   INSTANCE  STATE                PID   UPTIME  LISTENERS
web   2         draining (20s left)  4100  2h03m   1
web   3*        main                 4242  5m12s   2
      reload in progress: waiting for instance 4
idle  -         down                 -     -       -
      last error: instance 1 exited with status 1
"
    );
    assert_eq!(master.request(), Some(ControlRequest::List));
}

#[test]
fn list_json_is_pinned() {
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(apps(
        1_000_000_000,
    )))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["list", "--json"]), 0);
    assert_eq!(
        stdout,
        r#"{"apps":[{"name":"web","main":3,"reloading":4,"queued_reloads":0,"last_error":null,"instances":[{"id":2,"pid":4100,"state":"draining","started_unix_ms":992620000,"deadline_unix_ms":1000020000,"listeners":1},{"id":3,"pid":4242,"state":"main","started_unix_ms":999688000,"deadline_unix_ms":null,"listeners":2}]},{"name":"idle","main":null,"reloading":null,"queued_reloads":0,"last_error":"instance 1 exited with status 1","instances":[]}]}
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
        format!("ally-ctl {} (protocol 1)\n", env!("CARGO_PKG_VERSION"))
    );
}
