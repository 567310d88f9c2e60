//! Runs the real `ally-ctl` binary against a fake master and checks what it
//! prints and how it exits.

mod apps;
mod basics;
mod logs;
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
            dropped_lines: 0,
            family: None,
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
                    uid: Some(4_000_000_000),
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
                    uid: Some(4_000_000_000),
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
            dropped_lines: 0,
            family: None,
            last_error: Some("instance 1 exited with status 1".into()),
            instances: vec![],
        },
    ]
}
