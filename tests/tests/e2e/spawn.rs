//! Starting instances through the launcher: a program that cannot be
//! executed fails its start with the errno named — in `status`, in
//! `reload --wait` and in the log — while the master goes on serving.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::listening_addr;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::load::get_once;
use ally_tests::proc::wait_until;
use ally_tests::service::Service;

#[test]
fn a_program_that_cannot_be_executed_fails_its_start_with_the_errno() {
    let dir = TestDir::new("spawn_exec_errors");
    let missing = dir.path().join("no-such-program");
    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let service = Service::new(
        dir.path(),
        "service",
        &bins().demo,
        &["--addr", "127.0.0.1:0"],
    );
    let once = |app: AppConfig| {
        app.ready_timeout("10s")
            .line("restart = { enabled = false }")
    };
    let apps = [
        once(AppConfig::new("missing", &missing)),
        once(AppConfig::new("noexec", &not_executable)),
        AppConfig::new("web", service.path()).ready_timeout("10s"),
    ];
    let master = Master::start_with(bins(), &dir, &config_toml(&apps));
    let web = master.wait_main("web", Some(1), Duration::from_secs(15));
    for (app, errno) in [
        ("missing", "No such file or directory (os error 2)"),
        ("noexec", "Permission denied (os error 13)"),
    ] {
        let mut last = serde_json::Value::Null;
        let failed = wait_until(Duration::from_secs(15), || {
            last = master.app(app);
            last["state"] == "failed"
        });
        assert!(failed, "{app} did not fail: {last}\n{}", master.log_tail());
        let why = last["last_error"].as_str().unwrap_or_default();
        assert!(
            why.contains("cannot execute") && why.contains(errno),
            "{app}: last_error should name the errno: {why}\n{}",
            master.log_tail()
        );
        let status = master.ctl(&["status", app]);
        master.assert_output(
            &status,
            status.stdout.contains(errno),
            "status names the errno",
        );
        let reload = master.ctl(&["reload", app, "--wait", "--timeout", "20"]);
        assert_ne!(reload.code(), Some(0), "{reload}");
        master.assert_output(
            &reload,
            reload.stderr.contains(errno),
            "reload --wait fails with the errno",
        );
    }
    // Meanwhile the master went on: a reload of the app that works succeeds
    // and its new instance answers.
    master.reload_ok("web");
    let main = master.wait_main("web", Some(web.id + 1), Duration::from_secs(15));
    let addr = listening_addr(&master, main.id);
    assert_eq!(get_once(addr, Duration::from_secs(5)), Ok(main.id));
}
