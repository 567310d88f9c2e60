//! list, reload, version, and the exit codes every command shares.

use super::*;

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
        dropped_lines: 0,
        family: None,
        last_error: None,
        instances: vec![],
    });
    let master = FakeMaster::start(vec![Step::Reply(ControlResponse::Apps(apps))]);
    let (stdout, _) = expect_code(&ctl(master.dir(), &["list", "--json"]), 0);
    assert_eq!(
        stdout,
        r#"{"apps":[{"name":"web","master":"fake","family":null,"state":"running","restarts":1,"main":3,"reloading":4,"queued_reloads":0,"last_error":null,"dropped_lines":0,"instances":[{"id":2,"pid":4100,"state":"draining","started_unix_ms":992620000,"deadline_unix_ms":1000020000,"listeners":1,"tasks":0,"version":"1.4.1","commit":"89abcdef0123","text":null,"cpu_ms":61000,"rss_bytes":8500000,"uid":4000000000},{"id":3,"pid":4242,"state":"main","started_unix_ms":999688000,"deadline_unix_ms":null,"listeners":2,"tasks":17,"version":"1.4.2","commit":"0123abcd4567","text":"warm","cpu_ms":1234,"rss_bytes":12900000,"uid":4000000000}]},{"name":"idle","master":"fake","family":null,"state":"failed","restarts":5,"main":null,"reloading":null,"queued_reloads":0,"last_error":"instance 1 exited with status 1","dropped_lines":0,"instances":[]},{"name":"cron","master":"fake","family":null,"state":"backoff","backoff_until_unix_ms":1000003000,"restarts":2,"main":null,"reloading":null,"queued_reloads":0,"last_error":null,"dropped_lines":0,"instances":[]}]}
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
        format!("ally-ctl {} (protocol 4)\n", env!("CARGO_PKG_VERSION"))
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
