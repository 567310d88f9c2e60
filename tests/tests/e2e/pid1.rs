//! As PID 1 of a PID namespace (a container's init), the master reaps the
//! orphans reparented to it: none is left a zombie.

use std::process::Command;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::{describe, signal, wait_until};
use ally_tests::script::{NEVER_READY, sh_quote, write_script};
use rustix::process::Signal;

const UNSHARE: [&str; 5] = [
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    // Should the test die, the master hears it.
    "--kill-child=TERM",
];

/// Whether `unshare` exists and may create a PID namespace here.
fn unshare_works() -> bool {
    let mut cmd = Command::new(UNSHARE[0]);
    cmd.args(&UNSHARE[1..]).arg("true");
    match cmd.output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "skipped: `unshare --pid --fork --mount-proc true` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipped: cannot run unshare: {e}");
            false
        }
    }
}

/// The parent pid and state of `pid`, from `/proc/PID/stat`.
fn ppid_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((fields.next()?.parse().ok()?, state))
}

/// Every process whose parent is `parent`, with its state.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (ppid, state) = ppid_and_state(pid)?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// The pids of `pid` from the outermost namespace in, from its `NSpid`.
fn ns_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn as_pid_1_the_master_reaps_orphaned_grandchildren() {
    if !unshare_works() {
        return;
    }
    let dir = TestDir::new("pid1");
    let pid_file = dir.path().join("grandchild.pid");
    // The subshell exits at once, orphaning its `sleep`, which the kernel
    // hands to the namespace's init: the master.
    let body = format!(
        "( sleep 1 & echo $! > {file} )\n\
         echo 'orphan left behind' >&2\n\
         exec sleep 60\n",
        file = sh_quote(&pid_file.to_string_lossy())
    );
    let script = write_script(dir.path(), "orphaner", &body);
    let app = AppConfig::new("orphaner", &script).ready_timeout(NEVER_READY);
    // The app never gets ready, so there is no main instance to wait for:
    // wait for the master's log line instead.
    let mut master = Master::start_wrapped_until_log(
        bins(),
        &dir,
        &config_toml(&[app]),
        &UNSHARE,
        "ally-master: pid 1 serving 1 app(s)",
    );

    let mut inner = Vec::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            inner = children_of(master.pid());
            inner.len() == 1
        }),
        "unshare {} should have one child, the master: {inner:?}",
        master.pid()
    );
    let ally = inner[0].0;
    assert_eq!(
        ns_pids(ally).last(),
        Some(&1),
        "the master is not PID 1 of its namespace: {}",
        describe(ally)
    );

    master.wait_for_log("[orphaner#1] orphan left behind", Duration::from_secs(10));
    let ns_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("no pid in {}: {e}", pid_file.display()));
    // The orphan, seen from here: a child of the master whose innermost
    // pid is the one the script wrote.
    let mut orphan = None;
    wait_until(Duration::from_secs(5), || {
        orphan = children_of(ally)
            .into_iter()
            .map(|(pid, _)| pid)
            .find(|&pid| ns_pids(pid).last() == Some(&ns_pid));
        orphan.is_some()
    });
    let orphan = orphan.unwrap_or_else(|| {
        panic!(
            "the orphan (pid {ns_pid} in the namespace) was not reparented to the master {ally}\n{}",
            master.log_tail()
        )
    });

    // It exits after a second; the master must reap it.
    let reaped = wait_until(Duration::from_secs(10), || {
        ppid_and_state(orphan).is_none_or(|(ppid, _)| ppid != ally)
    });
    assert!(
        reaped,
        "the orphan {orphan} was not reaped by the master: {}\n{}",
        describe(orphan),
        master.log_tail()
    );
    let zombies: Vec<u32> = children_of(ally)
        .into_iter()
        .filter(|&(_, state)| state == 'Z')
        .map(|(pid, _)| pid)
        .collect();
    assert!(
        zombies.is_empty(),
        "zombies under the master: {zombies:?}\n{}",
        master.log_tail()
    );
    // The app is unaffected: its instance runs (its pid in the namespace
    // is the one the master logged; the master's own threads take pids
    // there too).
    let started = master.wait_for_log("orphaner#1: started, pid ", Duration::from_secs(5));
    let instance: u32 = started
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {started:?}"));
    assert!(
        children_of(ally)
            .iter()
            .any(|&(pid, state)| state != 'Z' && ns_pids(pid).last() == Some(&instance)),
        "the instance is gone
{}",
        master.log_tail()
    );

    // unshare does not pass SIGTERM on; the master gets it directly, and
    // unshare exits with its status.
    signal(ally, Signal::TERM).unwrap();
    let status = master.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}\n{}", master.log_tail());
}

/// Regression guard for control connections from outside the master's PID
/// namespace (a socket shared with the host): the kernel reports the peer's
/// pid as 0 there; the master once dropped such connections (`ally-ctl`
/// exited 3, "Connection reset by peer"). Control clients are checked by
/// uid, so they must get through.
#[test]
fn ctl_from_outside_the_pid_namespace_reaches_the_master() {
    if !unshare_works() {
        return;
    }
    let dir = TestDir::new("pid1_ctl");
    let script = write_script(dir.path(), "idle", "exec sleep 60\n");
    let app = AppConfig::new("idle", &script).ready_timeout(NEVER_READY);
    let mut master = Master::start_wrapped_until_log(
        bins(),
        &dir,
        &config_toml(&[app]),
        &UNSHARE,
        "ally-master: pid 1 serving 1 app(s)",
    );
    let out = master.ctl(&["list", "--json"]);
    let inner: Vec<u32> = children_of(master.pid()).iter().map(|c| c.0).collect();
    for &pid in &inner {
        let _ = signal(pid, Signal::TERM);
    }
    master.terminate(Duration::from_secs(15));
    assert_eq!(out.code(), Some(0), "{out}");
}
