//! A master killed outright (SIGKILL: what an OOM kill or a bug does)
//! loses no connection: under a systemd with a file descriptor store (the
//! `fake-systemd` stand-in) the master started again gets its very sockets
//! back, while the orphaned instances drain and exit 0; without one, the
//! orphans still drain and exit 0 with nobody reading their output, and a
//! master started again while one still holds its address waits for it.

use std::net::SocketAddr;
use std::time::Duration;

use ally_tests::bins::{Layout, bins};
use ally_tests::fixture::{APP, free_port, listening_addr, socket_activated_app};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::load::{Load, LoadStats};
use ally_tests::proc::{listen_inodes, signal, socket_inodes, wait_until};
use ally_tests::script::write_script;
use ally_tests::service::Service;
use rustix::process::Signal;

fn stand_in() -> String {
    let path = Layout::of_current_exe().profile_dir().join("fake-systemd");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// The pid in the first log line `<prefix>PID ...`.
fn pid_after(master: &Master, prefix: &str) -> u32 {
    let line = master.wait_for_log(prefix, Duration::from_secs(20));
    line.split(prefix)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid after {prefix:?} in {line:?}"))
}

/// SIGKILLs the master started first by the stand-in while `loads` run;
/// returns the pid of the new master's main instance of [`APP`] once it
/// serves (and the old one, `old`, has exited 0), with the loads' stats.
fn kill_the_master_under_load(
    master: &Master,
    old: u32,
    loads: Vec<Load>,
) -> (u32, Vec<LoadStats>) {
    for load in &loads {
        assert!(
            load.wait_for_ok(200, Duration::from_secs(20)),
            "no load got through\n{}",
            master.log_tail()
        );
    }
    let first = pid_after(master, "fake-systemd: start 1: pid ");
    signal(first, Signal::KILL).expect("SIGKILL the master");
    master.wait_for_log(
        &format!("fake-systemd: pid {first} was killed by signal 9"),
        Duration::from_secs(10),
    );
    let second = pid_after(master, "fake-systemd: start 2: pid ");
    master.wait_for_log(
        &format!("ally-master: pid {second} serving"),
        Duration::from_secs(20),
    );
    // In-flight requests on the orphan finish; it exits 0.
    master.wait_for_log(
        &format!("fake-systemd: pid {old} exited with status 0"),
        Duration::from_secs(20),
    );
    let mut new = 0;
    assert!(
        wait_until(Duration::from_secs(20), || {
            new = master.wait_main(APP, Some(1), Duration::from_secs(20)).pid;
            new != old
        }),
        "no new main instance\n{}",
        master.log_tail()
    );
    for load in &loads {
        let before = load.ok();
        assert!(
            load.wait_for_ok(before + 200, Duration::from_secs(20)),
            "the new instance serves nothing"
        );
    }
    (new, loads.into_iter().map(Load::stop).collect())
}

fn assert_lost_nothing(master: &Master, stats: &[LoadStats]) {
    for s in stats {
        assert_eq!(
            (s.failed_connects, s.failed_requests),
            (0, 0),
            "{s}\n{}",
            master.log_tail()
        );
    }
    let state = master.app(APP)["state"].clone();
    assert_eq!(state, "running", "{}", master.log_tail());
}

/// The demo, on a port-0 socket it asks for through the library, under
/// `Connection: close` and keep-alive load: the master's SIGKILL refuses
/// no connect and fails no request, and the new instance accepts on the
/// very socket (same inode, same port) the store kept; stopping the app
/// then takes it out of the store.
#[test]
fn sigkill_of_the_master_under_the_fd_store_loses_no_connection() {
    let dir = TestDir::new("fd_store_demo");
    let service = Service::new(
        dir.path(),
        "service",
        &bins().demo,
        &["--addr", "127.0.0.1:0"],
    );
    let app = AppConfig::new(APP, service.path())
        .ready_timeout("10s")
        .stop_timeout("10s");
    let stand_in = stand_in();
    let master = Master::start_wrapped(bins(), &dir, &config_toml(&[app]), &[&stand_in, "--"]);
    let old = master.wait_main(APP, Some(1), Duration::from_secs(15));
    let addr = listening_addr(&master, old.id);
    master.wait_for_log(
        "fake-systemd: stored ally1/lib/web/tcp/-/-/127.0.0.1%3A0",
        Duration::from_secs(10),
    );
    let inodes = listen_inodes(addr.port());
    assert_eq!(inodes.len(), 1, "{inodes:?}");
    let loads = vec![Load::start(addr, 8, false), Load::start(addr, 8, true)];
    let (new, stats) = kill_the_master_under_load(&master, old.pid, loads);
    master.wait_for_log("adopted tcp 127.0.0.1:", Duration::from_secs(5));
    assert_lost_nothing(&master, &stats);
    assert!(
        socket_inodes(new).contains(&inodes[0]),
        "the new instance does not hold socket {}\n{}",
        inodes[0],
        master.log_tail()
    );
    assert_eq!(
        listen_inodes(addr.port()),
        inodes,
        "another socket listens on the port"
    );
    // Closed for real (the app stopped): out of the store too.
    master.ctl_expect(&["stop", APP], 0);
    master.wait_for_log(
        "fake-systemd: removed ally1/lib/web/tcp/-/-/127.0.0.1%3A0 (1 descriptor(s))",
        Duration::from_secs(10),
    );
}

/// An in-place upgrade carries the parked sockets as they are: the new
/// image sends the store nothing (no second `FDSTORE=1`, no removal), and
/// a crash after it still finds them there.
#[test]
fn an_upgrade_leaves_the_store_as_it_is() {
    let dir = TestDir::new("fd_store_upgrade");
    let service = Service::new(
        dir.path(),
        "service",
        &bins().demo,
        &["--addr", "127.0.0.1:0"],
    );
    let app = AppConfig::new(APP, service.path())
        .ready_timeout("10s")
        .stop_timeout("10s");
    let stand_in = stand_in();
    let master = Master::start_wrapped(bins(), &dir, &config_toml(&[app]), &[&stand_in, "--"]);
    let old = master.wait_main(APP, Some(1), Duration::from_secs(15));
    master.wait_for_log("fake-systemd: stored ", Duration::from_secs(10));
    let upgrade = master.ctl(&["upgrade", "--wait", "--timeout", "60"]);
    master.assert_exit(&upgrade, 0);
    let addr = listening_addr(&master, old.id);
    let loads = vec![Load::start(addr, 4, false)];
    let (_, stats) = kill_the_master_under_load(&master, old.pid, loads);
    assert_lost_nothing(&master, &stats);
    let log = master.log();
    let sent = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    // A socket sent again is refused as one the store holds: counted too.
    let parks = sent("fake-systemd: stored ") + sent("the store holds this one already");
    assert_eq!(
        (parks, sent("fake-systemd: removed ")),
        (1, 0),
        "the store was told more than the first bind\n{}",
        master.log_tail()
    );
}

/// The same for a program that does not link ally: the Python server of
/// the fixtures, given its socket through `listen =` as `LISTEN_FDS`. It
/// drains on its death signal, writes its last line to stderr after the
/// master is gone (into a pipe only it still holds: the line is lost, but
/// the write succeeds), and exits 0.
#[test]
fn sigkill_of_the_master_loses_no_connection_of_a_socket_activated_program() {
    let dir = TestDir::new("fd_store_activated");
    let port = free_port();
    let app = socket_activated_app(APP, port);
    let stand_in = stand_in();
    let master = Master::start_wrapped(bins(), &dir, &config_toml(&[app]), &[&stand_in, "--"]);
    let old = master.wait_main(APP, Some(1), Duration::from_secs(20));
    master.wait_for_log(
        "fake-systemd: stored ally1/cfg/web/tcp/",
        Duration::from_secs(10),
    );
    let inodes = listen_inodes(port);
    assert_eq!(inodes.len(), 1, "{inodes:?}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (new, stats) =
        kill_the_master_under_load(&master, old.pid, vec![Load::start(addr, 8, false)]);
    assert_lost_nothing(&master, &stats);
    assert!(
        socket_inodes(new).contains(&inodes[0]),
        "{}",
        master.log_tail()
    );
    assert_eq!(listen_inodes(port), inodes);
}

/// Without a store: a program that does not link ally keeps its `listen`
/// socket for a while as it drains, writing to stderr after the master
/// died. It exits 0 (no EPIPE, no SIGPIPE), and a master started again
/// at once waits for the address and then serves.
#[test]
fn without_a_store_the_orphan_exits_0_and_a_master_started_again_waits_for_its_port() {
    let dir = TestDir::new("fd_store_none");
    let port = free_port();
    let script = write_script(
        dir.path(),
        "holder",
        "trap 'echo draining >&2; echo draining; sleep 1; echo done >&2; exit 0' TERM\n\
         echo holding fd 3 >&2\n\
         while :; do sleep 0.1; done\n",
    );
    let app = AppConfig::new(APP, &script)
        .ready_timeout("10s")
        .stop_timeout("5s")
        .line(&format!("listen = [\"tcp://127.0.0.1:{port}\"]"))
        .line("ready = \"immediate\"");
    let config = config_toml(&[app]);
    let reaper = Layout::of_current_exe().profile_dir().join("subreaper");
    let reaper = reaper.to_str().expect("a UTF-8 path");
    let mut first = Master::start_wrapped(bins(), &dir, &config, &[reaper]);
    let orphan = first.wait_main(APP, Some(1), Duration::from_secs(15));
    // Main at its start (`ready = "immediate"`), but the script runs, its
    // trap set, only once it says so: a master killed before then takes
    // the instance's start with it (its launcher exits 127).
    first.wait_for_log("[web#1] holding fd 3", Duration::from_secs(15));
    let master_pid = pid_after(&first, "ally-master: pid ");
    signal(master_pid, Signal::KILL).expect("SIGKILL the master");
    first.wait_for_log(
        &format!("subreaper: pid {master_pid} was killed by signal 9"),
        Duration::from_secs(5),
    );
    // Started while the orphan still listens on the port (from a directory
    // of its own, so that the two masters' logs stay apart).
    let again = TestDir::new("fd_store_none_again");
    let second = Master::start_with(bins(), &again, &config);
    second.wait_for_log(
        "may still be draining there: trying again",
        Duration::from_secs(10),
    );
    first.wait_for_log(
        &format!("subreaper: pid {} exited with status 0", orphan.pid),
        Duration::from_secs(15),
    );
    second.wait_for_log("is free again; bound it", Duration::from_secs(10));
    let main = second.wait_main(APP, Some(1), Duration::from_secs(15));
    assert!(
        socket_inodes(main.pid).contains(&listen_inodes(port)[0]),
        "{}",
        second.log_tail()
    );
    first.terminate(Duration::from_secs(5));
}

/// A master waiting at start for an address another process still
/// listens on (the retry above, here for up to 32 s) handles SIGTERM at
/// once: it exits 0 within a second instead of when the retry ends.
#[test]
fn sigterm_during_the_startup_retry_stops_the_master_at_once() {
    let dir = TestDir::new("fd_store_retry_term");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let port = holder.local_addr().expect("its address").port();
    let script = write_script(dir.path(), "idle", "exec sleep 1000\n");
    let app = AppConfig::new(APP, &script)
        .stop_timeout("30s")
        .line(&format!("listen = [\"tcp://127.0.0.1:{port}\"]"))
        .line("ready = \"immediate\"");
    let mut master = Master::start_wrapped_until_log(
        bins(),
        &dir,
        &config_toml(&[app]),
        &[],
        "may still be draining there: trying again",
    );
    let asked = std::time::Instant::now();
    let status = master.terminate(Duration::from_secs(5));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{}", master.log_tail());
    // The line proves the retry was cut short: a master that waited out
    // its grace would have failed the bind instead.
    master.wait_for_log("stopped by a signal while", Duration::from_secs(2));
    eprintln!("SIGTERM during the bind retry ended the master in {took:?}");
    drop(holder);
}
