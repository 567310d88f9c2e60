//! Soak: a thousand reloads in a row leave the master exactly as they found
//! it — the same open fds, the same memory give or take the allocator, no
//! zombie child.

use std::path::Path;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::fixture::{APP, Demo};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::vitals::Vitals;

/// Reloads before the first reading: buffers that grow to a fixed size
/// (the recent-output ring, allocator pools) have grown by then.
const WARM_UP: u64 = 20;

/// Reloads between the two readings.
const RELOADS: u64 = 1000;

/// Most the master's `VmRSS` may grow across [`RELOADS`].
const RSS_SLACK_KIB: u64 = 1024;

/// `reload APP --wait`, asserted to exit 0. (Not `Master::reload_ok`,
/// whose slow-reload watch polls, which would cap the rate measured here.)
fn reload(master: &Master, app: &str, n: u64) {
    let out = master.ctl(&["reload", app, "--wait", "--timeout", "30"]);
    if out.code() != Some(0) {
        panic!("reload {n} of {app} failed\n{out}\n{}", master.log_tail());
    }
}

/// Waits until `app` has just one instance, its main one, with id `id`.
fn wait_only_main(master: &Master, app: &str, id: u64) {
    let mut listed = Vec::new();
    let ok = wait_until(Duration::from_secs(15), || {
        listed = master.instances(app);
        listed.len() == 1 && listed[0]["id"] == id && listed[0]["state"] == "main"
    });
    assert!(
        ok,
        "{app} should have only its main instance {id}: {listed:?}\n{}",
        master.log_tail()
    );
}

/// Runs the warm-up, reads the master's vitals, runs [`RELOADS`] reloads,
/// reads them again, and asserts nothing leaked.
fn soak(master: &Master, app: &str, first_id: u64, what: &str) {
    for n in 1..=WARM_UP {
        reload(master, app, n);
    }
    wait_only_main(master, app, first_id + WARM_UP);
    let before = Vitals::settled(master.pid(), Duration::from_secs(5));

    let started = Instant::now();
    for n in 1..=RELOADS {
        reload(master, app, WARM_UP + n);
    }
    let took = started.elapsed();
    let last = first_id + WARM_UP + RELOADS;
    wait_only_main(master, app, last);
    let after = Vitals::settled(master.pid(), Duration::from_secs(5));

    eprintln!(
        "soak ({what}): {RELOADS} reloads in {took:.1?}, {:.1} reloads/s\n  \
         before: {before}\n  after:  {after}",
        RELOADS as f64 / took.as_secs_f64()
    );
    let leaked = |what: &str| {
        panic!(
            "{what} across {RELOADS} reloads\n  before: {before}\n  after:  {after}\n{}",
            master.log_tail()
        )
    };
    if after.fds != before.fds {
        leaked("the master's open fds changed");
    }
    if after.rss_kib > before.rss_kib + RSS_SLACK_KIB {
        leaked("the master's VmRSS grew by more than 1 MiB");
    }
    if !after.zombies.is_empty() || !before.zombies.is_empty() {
        leaked("the master has zombie children");
    }
}

#[test]
fn a_thousand_reloads_of_the_demo_leak_no_fd_memory_or_zombie() {
    let demo = Demo::start("soak_demo");
    soak(
        &demo.master,
        APP,
        demo.first.id,
        "the demo, ready from the library",
    );
}

#[test]
fn a_thousand_reloads_of_a_socket_activated_app_leak_no_fd_memory_or_zombie() {
    const SLEEPER: &str = "sleeper";
    let dir = TestDir::new("soak_sleeper");
    // The least a service can be: it holds its LISTEN_FDS socket and sleeps;
    // SIGTERM ends it at once.
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sleep(1) in /bin or /usr/bin");
    let mut app = AppConfig::new(SLEEPER, Path::new(sleep))
        .stop_timeout("10s")
        .line("listen = [\"tcp://127.0.0.1:0\"]")
        .line("ready = \"immediate\"");
    app.command.push("3600".into());
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let first = master.wait_main(SLEEPER, Some(1), Duration::from_secs(15));
    soak(
        &master,
        SLEEPER,
        first.id,
        "sleep(1) with a LISTEN_FDS socket, ready = immediate",
    );
}
