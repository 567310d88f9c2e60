//! `user` and `group`: a root master runs instances as the configured
//! user; a master that is not root refuses to, and says why.

use std::process::Command;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::script::{NEVER_READY, write_script};
use ally_tests::users::{USER, is_root, passwd_ids, test_user};

/// The gid of `group`, from `/etc/group`.
fn group_id(group: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == group).then(|| f[2].parse().ok())?
        })
}

/// The `Uid:` or `Gid:` values (real, effective, saved, filesystem) of
/// `pid`.
fn ids_of(pid: u32, key: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_root_master_runs_instances_as_the_configured_user_and_group() {
    if !is_root() {
        eprintln!("skipped: switching users needs a root master, and this runs as non-root");
        return;
    }
    let Some((uid, gid)) = test_user() else {
        return;
    };
    let other_group = ["nogroup", "nobody", "daemon"]
        .into_iter()
        .find_map(|g| group_id(g).filter(|&id| id != gid).map(|id| (g, id)));
    let dir = TestDir::new("users_root");
    let script = write_script(dir.path(), "idle", "echo up >&2\nexec sleep 60\n");
    let mut apps = vec![
        AppConfig::new("as_user", &script)
            .ready_timeout(NEVER_READY)
            .line(&format!("user = \"{USER}\"")),
    ];
    if let Some((group, _)) = other_group {
        apps.push(
            AppConfig::new("as_group", &script)
                .ready_timeout(NEVER_READY)
                .line(&format!("user = \"{USER}\""))
                .line(&format!("group = \"{group}\"")),
        );
    }
    let master = Master::start_with(bins(), &dir, &config_toml(&apps));
    let mut expected = vec![("as_user", gid)];
    expected.extend(other_group.map(|(_, id)| ("as_group", id)));
    for (app, gid) in expected {
        master.wait_for_log(&format!("[{app}#1] up"), Duration::from_secs(10));
        let pid = master
            .pid_of(app, 1)
            .unwrap_or_else(|| panic!("{app}#1 is not listed\n{}", master.log_tail()));
        assert_eq!(ids_of(pid, "Uid:"), [uid; 4], "{app}: uid of pid {pid}");
        assert_eq!(ids_of(pid, "Gid:"), [gid; 4], "{app}: gid of pid {pid}");
        assert_ne!(ids_of(pid, "Uid:"), [0; 4]);
    }
}

#[test]
fn a_master_that_is_not_root_refuses_another_user_and_says_why() {
    if !is_root() {
        // The master then runs as us, unprivileged already: ask for root.
        eprintln!("running the master as the current user");
    }
    let setpriv_ok = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let Some((nobody, nogroup)) = passwd_ids("nobody") else {
        eprintln!("skipped: no user `nobody` to run the master as");
        return;
    };
    if is_root() && !setpriv_ok {
        eprintln!("skipped: running as root, and no setpriv to run the master as nobody");
        return;
    }
    let dir = TestDir::new("users_nonroot");
    // The master, as nobody, creates its runtime directory in here.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let script = write_script(dir.path(), "idle", "echo up >&2\nexec sleep 60\n");
    let app = AppConfig::new("other", &script)
        .ready_timeout(NEVER_READY)
        .line("user = \"root\"")
        .line("restart = { enabled = false }");
    let reuid = format!("--reuid={nobody}");
    let regid = format!("--regid={nogroup}");
    let wrapper: Vec<&str> = if is_root() {
        vec!["setpriv", &reuid, &regid, "--clear-groups"]
    } else {
        Vec::new()
    };
    let master = Master::start_as(bins(), &dir, &config_toml(&[app]), &wrapper);
    let mut last = serde_json::Value::Null;
    let failed = wait_until(Duration::from_secs(10), || {
        last = master.app("other");
        last["state"] == "failed"
    });
    assert!(
        failed,
        "the app should fail to start: {last}\n{}",
        master.log_tail()
    );
    let why = last["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("cannot run as user root") && why.contains("only root can switch users"),
        "last_error should say why: {last}\n{}",
        master.log_tail()
    );
    assert!(
        !master.log().contains("[other#1] up"),
        "the instance ran after all\n{}",
        master.log_tail()
    );
    let out = master.ctl_expect(&["start", "other"], 1);
    master.assert_output(
        &out,
        out.stderr.contains("only root can switch users"),
        "start fails with the reason",
    );
}
