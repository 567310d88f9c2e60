//! logs (with and without --follow), reread and reopen.

use super::*;

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
