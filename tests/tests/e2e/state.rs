//! Shared state under a real master: the `state-probe` service runs the
//! same suite as simulate mode, state outlives instances, a killed holder's
//! lock goes to a waiter at once, limits hold, and hostile requests are
//! refused while the master keeps serving other apps.

use std::path::PathBuf;
use std::time::Duration;

use ally_tests::bins::{Layout, bins};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::{alive, signal, wait_until};
use ally_tests::service::Service;
use ally_tests::state_suite::{monotonic_ns, token};
use rustix::process::Signal;

/// The app every test runs the probe as.
const APP: &str = "state";

/// Generous: a debug build on a busy two-core machine.
const TIMEOUT: &str = "10s";

/// How long a probe may take to print its verdict.
const VERDICT: Duration = Duration::from_secs(120);

/// Longest time from SIGKILL of a lock holder to the waiter's grant.
const HANDOFF_BUDGET: Duration = Duration::from_millis(100);

/// The `state-probe` binary, built with the others.
fn probe() -> PathBuf {
    bins();
    let path = Layout::of_current_exe().profile_dir().join("state-probe");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// App `name` running the probe with `flags` through a swappable script.
fn probe_app(dir: &TestDir, name: &str, flags: &[&str]) -> (AppConfig, Service) {
    let service = Service::new(dir.path(), name, &probe(), flags);
    let app = AppConfig::new(name, service.path())
        .ready_timeout(TIMEOUT)
        .stop_timeout(TIMEOUT);
    (app, service)
}

/// Waits for instance `id` of `app` to print `state-probe: WHAT...` and
/// returns the line from `WHAT` on; fails the test as soon as that instance
/// prints `state-probe: FAILED`.
fn verdict(master: &Master, app: &str, id: u64, what: &str) -> String {
    let prefix = format!("[{app}#{id}] state-probe: ");
    let mut found = None;
    wait_until(VERDICT, || {
        let log = master.log();
        // Only whole lines: the last one may still be being written.
        let complete = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
        for line in complete.lines() {
            let Some(rest) = line.split_once(&prefix).map(|(_, rest)| rest) else {
                continue;
            };
            if rest.starts_with("FAILED") || rest.starts_with(what) {
                found = Some(rest.to_owned());
                return true;
            }
        }
        false
    });
    match found {
        Some(rest) if !rest.starts_with("FAILED") => rest,
        Some(failed) => panic!("{app}#{id}: {failed}\n{}", master.log_tail()),
        None => panic!(
            "{app}#{id} printed no \"state-probe: {what}\" within {VERDICT:?}\n{}",
            master.log_tail()
        ),
    }
}

#[test]
fn state_suite_passes_under_a_real_master() {
    let dir = TestDir::new("state_suite");
    let (app, _service) = probe_app(&dir, APP, &[]);
    let master = Master::start(&dir, &[app]);
    verdict(&master, APP, 1, "ok");
    master.wait_main(APP, Some(1), VERDICT);
}

#[test]
fn values_and_counters_outlive_the_instance_that_wrote_them() {
    let dir = TestDir::new("state_persists");
    let t = token();
    let (app, service) = probe_app(&dir, APP, &["--write", &t]);
    let master = Master::start(&dir, &[app]);
    verdict(&master, APP, 1, "wrote");
    master.wait_main(APP, Some(1), VERDICT);
    service.set_flags(&["--expect", &t]);
    master.reload_ok(APP);
    // Instance 2 read the value and the counter of instance 1, and saw
    // its entry with a time to live expire.
    verdict(&master, APP, 2, "expect ok");
}

#[test]
fn cache_entries_expire_at_their_ttl_under_the_master() {
    let dir = TestDir::new("state_ttl");
    let (app, _service) = probe_app(&dir, APP, &["--ttl"]);
    let master = Master::start(&dir, &[app]);
    let found = verdict(&master, APP, 1, "ttl ok");
    eprintln!("{found}");
}

#[test]
fn lock_of_a_killed_instance_goes_to_its_waiter_within_100ms() {
    let dir = TestDir::new("state_lock_kill");
    let lock = format!("held-{}", token());
    let (app, service) = probe_app(&dir, APP, &["--hold-lock", &lock]);
    let master = Master::start(&dir, &[app]);
    verdict(&master, APP, 1, "holding");
    let holder = master.wait_main(APP, Some(1), VERDICT);
    // Instance 2 is ready at once, so the reload completes and instance 1
    // is asked to stop, which it ignores, still holding the lock.
    service.set_flags(&["--wait-lock", &lock]);
    master.reload_ok(APP);
    verdict(&master, APP, 2, "queued");
    assert!(
        alive(holder.pid),
        "the holder died early\n{}",
        master.log_tail()
    );
    let killed_at = monotonic_ns();
    signal(holder.pid, Signal::KILL).expect("SIGKILL the holder");
    let granted = verdict(&master, APP, 2, "granted");
    let granted_at: u64 = granted
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no time in {granted:?}"));
    let handoff = Duration::from_nanos(granted_at.saturating_sub(killed_at));
    eprintln!("lock hand-off after SIGKILL of its holder: {handoff:?}");
    assert!(
        handoff < HANDOFF_BUDGET,
        "the waiter got the lock {handoff:?} after the holder's SIGKILL\n{}",
        master.log_tail()
    );
}

#[test]
fn cache_entry_limit_refuses_the_fourth_entry() {
    let dir = TestDir::new("state_limit");
    let (app, _service) = probe_app(&dir, APP, &["--limit"]);
    let config = format!("{}max_cache_entries = 3\n", app.to_toml());
    let master = Master::start_with(bins(), &dir, &config);
    verdict(&master, APP, 1, "limit ok");
}

#[test]
fn many_threads_adding_lose_no_update() {
    let dir = TestDir::new("state_adds");
    let (app, _service) = probe_app(&dir, APP, &["--adds", "8", "2000"]);
    let master = Master::start(&dir, &[app]);
    let found = verdict(&master, APP, 1, "adds ok: 16000");
    eprintln!("{found}");
}

#[test]
fn hostile_state_requests_are_refused_and_other_apps_are_served() {
    let dir = TestDir::new("state_hostile");
    let (evil, _evil_service) = probe_app(&dir, "evil", &["--hostile"]);
    let (good, _good_service) = probe_app(&dir, "good", &[]);
    let master = Master::start_with(bins(), &dir, &config_toml(&[evil, good]));
    verdict(&master, "evil", 1, "hostile round 1 ok");
    let evil_pid = master.wait_main("evil", Some(1), VERDICT).pid;
    verdict(&master, "good", 1, "ok");
    // While the storm goes on, the other app's instance runs the whole
    // suite again (it is ready only if the suite passed).
    master.reload_ok("good");
    verdict(&master, "good", 2, "ok");
    assert!(
        alive(master.pid()),
        "the master died\n{}",
        master.log_tail()
    );
    // Stop the storm: every request of every round was refused as it must.
    signal(evil_pid, Signal::TERM).expect("stop the hostile instance");
    let found = verdict(&master, "evil", 1, "hostile stopped");
    eprintln!("{found}");
    let rounds: u64 = found
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no round count in {found:?}"));
    assert!(rounds >= 2, "the storm stopped early: {found}");
    master.list_json();
}
