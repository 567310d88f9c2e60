//! Who may talk to the master, tested with a real second uid: the control
//! socket's mode, the uid check on hello, the group grant, instance
//! connections from processes the master did not start, the isolation of
//! one app's state from another's, the runtime directory, and ally-ctl's
//! check of whom it talks to.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use ally_tests::bins::{Layout, bins};
use ally_tests::cmd::run;
use ally_tests::harness::{AppConfig, CTL_TIMEOUT, Master, TestDir, config_toml};
use ally_tests::script::{Spawned, write_script};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `setpriv` options that run a command as `nobody` with no groups, or
/// `None` (with a printed reason) when that is not possible here.
pub fn as_nobody(extra_groups: Option<u32>) -> Option<Vec<String>> {
    if !is_root() {
        eprintln!("skipped: switching to a second uid needs root");
        return None;
    }
    let works = Command::new("setpriv").arg("--version").output();
    if !works.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no setpriv (util-linux) to run as another uid");
        return None;
    }
    let groups = extra_groups.map_or_else(
        || "--clear-groups".to_owned(),
        |gid| format!("--groups={gid}"),
    );
    Some(vec![
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        groups,
    ])
}

/// An idle app, so the master has something to run.
fn idle_app(dir: &TestDir) -> AppConfig {
    let script = write_script(dir.path(), "idle", "exec sleep 60\n");
    AppConfig::new("idle", &script).ready_timeout("1h")
}

#[test]
fn control_socket_is_0600_and_another_uid_is_refused() {
    let dir = TestDir::new("trust_uid");
    let master = Master::start_with(bins(), &dir, &config_toml(&[idle_app(&dir)]));
    let mode = std::fs::metadata(master.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket must be 0600");

    let Some(nobody) = as_nobody(None) else {
        return;
    };
    let nobody: Vec<&str> = nobody.iter().map(String::as_str).collect();
    // The directory is private to root: let nobody reach the socket path.
    for d in [dir.path(), master.socket().parent().unwrap()] {
        std::fs::set_permissions(d, PermissionsExt::from_mode(0o755)).unwrap();
    }
    // The file mode refuses it first: the kernel says EACCES.
    let out = master.ctl_as(&nobody, &["list"]);
    master.assert_exit(&out, 3);
    assert!(out.stderr.contains("ermission denied"), "{out}");
    // Past the file mode, the master's own uid check refuses it too.
    std::fs::set_permissions(master.socket(), PermissionsExt::from_mode(0o666)).unwrap();
    let out = master.ctl_as(&nobody, &["list"]);
    master.assert_exit(&out, 4);
    assert!(out.stderr.contains("may not control this master"), "{out}");
    // Root and the master's own user still get in.
    master.assert_exit(&master.ctl(&["list"]), 0);
}

#[test]
fn a_granted_group_may_control_the_master_and_no_one_else() {
    let Some(_) = as_nobody(None) else { return };
    let group = "ally-e2e-ops";
    if Command::new("getent")
        .args(["group", group])
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        let added = Command::new("groupadd").args(["--system", group]).status();
        if !added.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot create group {group}");
            return;
        }
    }
    let gid: u32 = String::from_utf8_lossy(
        &Command::new("getent")
            .args(["group", group])
            .output()
            .unwrap()
            .stdout,
    )
    .split(':')
    .nth(2)
    .and_then(|g| g.parse().ok())
    .expect("the group's gid");
    let dir = TestDir::new("trust_group");
    let config = format!(
        "[master]\ngroup = \"{group}\"\n\n{}",
        config_toml(&[idle_app(&dir)])
    );
    let master = Master::start_with(bins(), &dir, &config);
    let meta = std::fs::metadata(master.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid, "the socket belongs to the granted group");
    // The runtime directory the master made lets the group in, no one else.
    let run = std::fs::metadata(master.socket().parent().unwrap()).unwrap();
    assert_eq!(run.permissions().mode() & 0o7777, 0o750);
    assert_eq!(run.gid(), gid, "the runtime directory belongs to the group");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let member = as_nobody(Some(gid)).unwrap();
    let member: Vec<&str> = member.iter().map(String::as_str).collect();
    let out = master.ctl_as(&member, &["list"]);
    master.assert_exit(&out, 0);
    assert!(out.stdout.contains("idle"), "{out}");
    let stranger = as_nobody(None).unwrap();
    let stranger: Vec<&str> = stranger.iter().map(String::as_str).collect();
    let out = master.ctl_as(&stranger, &["list"]);
    master.assert_exit(&out, 3);
}

#[test]
fn one_app_cannot_read_another_apps_state() {
    let dir = TestDir::new("trust_isolation");
    let probe = Layout::of_current_exe().profile_dir().join("state-probe");
    // AppConfig takes one program: give the probe its arguments by script.
    let token = format!("iso{}", std::process::id());
    let write = write_script(
        dir.path(),
        "write",
        &format!("exec '{}' --write {token}\n", probe.display()),
    );
    let read = write_script(
        dir.path(),
        "read",
        &format!("exec '{}' --expect {token}\n", probe.display()),
    );
    let writer = AppConfig::new("writer", &write).ready_timeout("10s");
    let reader = AppConfig::new("reader", &read)
        .ready_timeout("10s")
        .line("restart = { enabled = false }");
    let master = Master::start_with(bins(), &dir, &config_toml(&[writer]));
    master.wait_main("writer", Some(1), Duration::from_secs(20));
    // Add the reader next to it: same names, another app.
    let config = config_toml(&[
        AppConfig::new("writer", &write).ready_timeout("10s"),
        reader,
    ]);
    std::fs::write(dir.path().join("ally.toml"), config).unwrap();
    master.assert_exit(&master.ctl(&["reread"]), 0);
    let line = master.wait_for_log("[reader#1] state-probe:", Duration::from_secs(20));
    assert!(
        line.contains("FAILED"),
        "the reader saw the writer's values: {line}\n{}",
        master.log_tail()
    );
}

#[test]
fn a_runtime_directory_others_may_write_to_is_refused() {
    let dir = TestDir::new("trust_rundir");
    let config = config_toml(&[idle_app(&dir)]);
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let refused = |mode: u32, why: &str| {
        std::fs::set_permissions(&run, PermissionsExt::from_mode(mode)).unwrap();
        let out = Master::run_to_exit(bins(), &dir, &config, &[], None);
        assert_eq!(out.code(), Some(1), "mode {mode:o}: {out}");
        let named = format!("refusing the runtime directory {}", run.display());
        assert!(out.stderr.contains(&named), "{out}");
        assert!(out.stderr.contains(&format!("mode {mode:04o}")), "{out}");
        assert!(out.stderr.contains(why), "{out}");
        assert!(
            !run.join("ally.sock").exists(),
            "a socket was bound in an unsafe directory"
        );
    };
    refused(0o1777, "anyone may write to it");
    refused(0o777, "anyone may write to it");
    refused(0o770, "its group may write to it");
    if is_root() {
        std::os::unix::fs::chown(&run, Some(65534), None).unwrap();
        refused(0o700, "owned by neither root nor the master's user");
        std::os::unix::fs::chown(&run, Some(0), None).unwrap();
    }
    // A private directory of its own is taken, and left as it was.
    std::fs::set_permissions(&run, PermissionsExt::from_mode(0o700)).unwrap();
    let master = Master::start_with(bins(), &dir, &config);
    master.assert_exit(&master.ctl(&["list"]), 0);
    let mode = std::fs::metadata(&run).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o700);
}

#[test]
fn ally_ctl_refuses_a_master_served_by_another_uid() {
    let Some(nobody) = as_nobody(None) else {
        return;
    };
    let dir = TestDir::new("trust_fake_master");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let run_dir = dir.path().join("fake");
    std::fs::create_dir(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(65534), Some(65534)).unwrap();
    let socket = run_dir.join("web.sock");
    let mut cmd = Command::new(&nobody[0]);
    cmd.args(&nobody[1..])
        .arg(&bins().impostor)
        .arg("master")
        .arg(&socket);
    let fake = Spawned::with_stdout_lines(cmd);
    let (line, _) = fake.wait_line("listening", Duration::from_secs(10));
    assert!(line.is_some(), "the fake master did not start");
    let ctl = |wrapper: &[String], args: &[&str], runtime_dir: &std::path::Path| {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bins().ctl);
                cmd
            }
            None => Command::new(&bins().ctl),
        };
        cmd.args(args)
            .current_dir(dir.path())
            .env(ally_proto::paths::RUNTIME_DIR_VAR, runtime_dir);
        for var in ally_proto::env::ALL {
            cmd.env_remove(var);
        }
        run(&mut cmd, CTL_TIMEOUT)
    };
    // It answers like a master: its own user believes it.
    let path = socket.to_str().unwrap();
    let out = ctl(&nobody, &["--socket", path, "list"], &run_dir);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("impostor"), "{out}");
    // Root does not, by path (relative too, named in full) or found in
    // the runtime directory.
    let refusal = format!(
        "the socket at {path} is served by uid 65534, not root or you: refusing to trust it"
    );
    for args in [
        &["--socket", path, "list"][..],
        &["--socket", "fake/web.sock", "list"][..],
        &["list"][..],
    ] {
        let out = ctl(&[], args, &run_dir);
        assert_eq!(out.code(), Some(3), "{out}");
        assert!(out.stderr.contains(&refusal), "{out}");
        assert!(!out.stdout.contains("impostor"), "{out}");
    }
}
