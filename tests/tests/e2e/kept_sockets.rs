//! Listeners live as long as their app: a socket the library asked for
//! stays open through its holder's crash, `ally-ctl kill` and `restart`,
//! so connections wait in its accept queue for the next instance instead
//! of being refused, and port 0 keeps its port. It is closed once the app
//! is stopped or removed, or a new version serves without it.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use ally_tests::bins::{Layout, bins};
use ally_tests::fixture::{ANY_PORT, APP, Demo, free_port, listening_addr};
use ally_tests::harness::{AppConfig, MainInstance, Master, TestDir, config_toml};
use ally_tests::load::{Load, LoadStats, get_once};
use ally_tests::proc::{listen_inodes, signal, socket_inodes, wait_until};
use ally_tests::script::write_script;
use ally_tests::service::Service;
use ally_tests::users::{USER, is_root, test_user};
use rustix::process::Signal;

/// Clients of the `Connection: close` load: each makes a new connection
/// per request, so every gap in listening would show as a refused connect.
const CONNECTIONS: usize = 16;

/// How many times the main instance is ended under the load.
const ROUNDS: u64 = 3;

/// Requests answered before the first round and after each.
const WARM_UP: u64 = 50;

/// Longest wait for a condition: a debug build restarting after a back-off
/// of up to 2 s on a busy machine.
const T: Duration = Duration::from_secs(30);

/// How a round ends the app's main instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// SIGKILL from outside: a crash.
    Sigkill,
    /// `ally-ctl kill APP`: SIGTERM to every instance, which drains.
    CtlKill,
    /// `ally-ctl restart APP`.
    Restart,
}

impl Ending {
    fn end(self, master: &Master, main: MainInstance) {
        match self {
            Ending::Sigkill => signal(main.pid, Signal::KILL).expect("SIGKILL the main instance"),
            Ending::CtlKill => drop(master.ctl_expect(&["kill", APP], 0)),
            Ending::Restart => drop(master.ctl_expect(&["restart", APP, "--timeout", "30"], 0)),
        }
    }
}

/// What one round saw of the instance that came next.
#[derive(Debug)]
struct Round {
    next: MainInstance,
    addr: SocketAddr,
    holds_the_socket: bool,
    served: bool,
}

/// Ends the demo's main instance [`ROUNDS`] times with `ending` under a
/// `Connection: close` load on its port-0 listener, and asserts: not one
/// connect failed; each next instance got the same address and holds the
/// same kernel socket, and the load got answers from it; the port still
/// has that one socket. Returns the load's figures.
fn lives_through(test: &str, ending: Ending) -> LoadStats {
    let demo = Demo::start(test);
    let master = &demo.master;
    let port = demo.addr.port();
    let inodes = listen_inodes(port);
    assert_eq!(inodes.len(), 1, "one socket listens on {port}: {inodes:?}");
    let inode = inodes[0];
    let load = Load::start(demo.addr, CONNECTIONS, false);
    assert!(
        load.wait_for_ok(WARM_UP, T),
        "the demo did not answer the load\n{}",
        master.log_tail()
    );
    let mut main = demo.first;
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        ending.end(master, main);
        let next = master.wait_main(APP, Some(main.id + 1), T);
        let addr = listening_addr(master, next.id);
        let holds_the_socket = socket_inodes(next.pid).contains(&inode);
        let before = load.ok();
        let served = load.wait_for_ok(before + WARM_UP, T);
        rounds.push(Round {
            next,
            addr,
            holds_the_socket,
            served,
        });
        if !served {
            break;
        }
        main = next;
    }
    let stats = load.stop();
    eprintln!("{ending:?} x{ROUNDS}: {stats}");
    let log = master.log_tail();
    assert_eq!(
        stats.failed_connects, 0,
        "{ending:?}: connects failed while the app had no instance\n{stats}\n{log}"
    );
    for round in &rounds {
        assert_eq!(round.addr, demo.addr, "{ending:?}: {round:?}\n{log}");
        assert!(round.holds_the_socket, "{ending:?}: {round:?}\n{log}");
        assert!(
            round.served,
            "{ending:?}: no answers after {round:?}\n{stats}\n{log}"
        );
        assert!(
            stats.instances_seen.contains_key(&round.next.id),
            "{ending:?}: instance {} answered nothing\n{stats}",
            round.next.id
        );
    }
    assert_eq!(
        listen_inodes(port),
        [inode],
        "{ending:?}: still the one socket"
    );
    stats
}

#[test]
fn sigkill_of_the_only_instance_refuses_no_connection() {
    let stats = lives_through("kept_sigkill", Ending::Sigkill);
    // Only the requests the killed instance had accepted can fail.
    let most = ROUNDS * CONNECTIONS as u64;
    assert!(
        stats.failed_requests <= most,
        "more requests failed than the killed instances had in flight ({most})\n{stats}"
    );
}

#[test]
fn ctl_kill_of_the_only_instance_fails_nothing() {
    let stats = lives_through("kept_ctl_kill", Ending::CtlKill);
    assert_eq!(stats.failures(), 0, "{stats}");
}

#[test]
fn restart_fails_nothing() {
    let stats = lives_through("kept_restart", Ending::Restart);
    assert_eq!(stats.failures(), 0, "{stats}");
}

/// SIGKILLs `main` and waits until the app waits out its back-off.
fn crash(master: &Master, main: MainInstance) {
    signal(main.pid, Signal::KILL).expect("SIGKILL the main instance");
    let mut app = serde_json::Value::Null;
    let backing_off = wait_until(T, || {
        app = master.app(APP);
        app["state"] == "backoff"
    });
    assert!(backing_off, "not in back-off: {app}\n{}", master.log_tail());
}

/// Asserts that connecting to `addr` is refused, and that nothing listens
/// on its port.
fn assert_closed(master: &Master, addr: SocketAddr, when: &str) {
    let connect = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    assert!(
        connect
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{addr} still takes connections {when}: {connect:?}\n{}",
        master.log_tail()
    );
    assert_eq!(listen_inodes(addr.port()), Vec::<u64>::new(), "{when}");
}

#[test]
fn a_kept_socket_is_closed_by_stop() {
    let demo = Demo::start("kept_stop");
    let master = &demo.master;
    crash(master, demo.first);
    // Kept through the back-off: a connection waits in the queue.
    let waiting = TcpStream::connect_timeout(&demo.addr, Duration::from_secs(5));
    assert!(waiting.is_ok(), "{waiting:?}\n{}", master.log_tail());
    // Listed truthfully: the app has no instance, so none holds it.
    assert_eq!(master.instances(APP), Vec::<serde_json::Value>::new());
    master.ctl_expect(&["stop", APP], 0);
    assert_closed(master, demo.addr, "once `stop` returned");
    master.wait_for_log(
        &format!("{APP}: closed tcp 127.0.0.1:0 (bound at {}): no instance holds it, and the app is stopped", demo.addr),
        T,
    );
}

#[test]
fn stop_of_a_running_app_closes_its_socket_once_the_instance_exits() {
    let demo = Demo::start("kept_stop_running");
    let master = &demo.master;
    master.ctl_expect(&["stop", APP], 0);
    assert_closed(master, demo.addr, "once `stop` returned");
    // Started again, it binds anew.
    master.ctl_expect(&["start", APP, "--timeout", "30"], 0);
    let main = master.wait_main(APP, Some(demo.first.id + 1), T);
    let addr = listening_addr(master, main.id);
    assert_eq!(get_once(addr, T), Ok(main.id));
}

#[test]
fn a_kept_socket_is_closed_when_a_reread_removes_the_app() {
    let dir = TestDir::new("kept_reread");
    let service = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
    let idle = write_script(dir.path(), "idle", "exec sleep 600\n");
    // A back-off longer than the test: no instance restarts to hold the
    // socket (and drain with it) when the reread comes, on a slow machine.
    let web = AppConfig::new(APP, service.path())
        .ready_timeout("10s")
        .stop_timeout("10s")
        .line("restart = { min_delay = \"1m\", max_delay = \"1m\" }");
    let spare = AppConfig::new("spare", &idle).line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[web, spare.clone()]));
    let first = master.wait_main(APP, Some(1), T);
    let addr = listening_addr(&master, first.id);
    crash(&master, first);
    assert_eq!(
        listen_inodes(addr.port()).len(),
        1,
        "kept through the back-off"
    );
    std::fs::write(dir.path().join("ally.toml"), config_toml(&[spare])).unwrap();
    let out = master.ctl_expect(&["reread"], 0);
    master.assert_output(&out, out.stdout.contains("removed [web]"), "web is removed");
    assert_closed(&master, addr, "once the reread removing its app returned");
}

#[test]
fn a_kept_socket_a_new_version_does_not_ask_for_is_closed_once_it_is_ready() {
    let demo = Demo::start("kept_new_version");
    let master = &demo.master;
    let new_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    demo.set_flags(&["--addr", &new_addr.to_string()]);
    crash(master, demo.first);
    assert_eq!(
        listen_inodes(demo.addr.port()).len(),
        1,
        "kept through the back-off"
    );
    let main = master.wait_main(APP, Some(demo.first.id + 1), T);
    assert_eq!(listening_addr(master, main.id), new_addr);
    // Clients of the old address are refused, rather than left hanging on
    // a socket nothing accepts on.
    assert_closed(master, demo.addr, "once a version not using it is main");
    assert_eq!(get_once(new_addr, T), Ok(main.id));
    // And the log says so, naming it and why.
    master.wait_for_log(
        &format!(
            "(bound at {}): no instance holds it, and the main instance serves without it",
            demo.addr
        ),
        T,
    );
}

/// The `listen-probe` binary, built with the others.
fn probe_bin() -> std::path::PathBuf {
    bins();
    Layout::of_current_exe().profile_dir().join("listen-probe")
}

#[test]
fn a_kept_unix_socket_keeps_its_file_until_stop_removes_it() {
    let dir = TestDir::new("kept_unix");
    let sockets = dir.path().join("sockets");
    std::fs::create_dir(&sockets).unwrap();
    // As the throwaway user when there is one: the file is then bound and
    // removed by the helper as that user.
    let user = if is_root() { test_user() } else { None };
    if let Some((uid, gid)) = user {
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&sockets, Some(uid), Some(gid)).unwrap();
    }
    let path = sockets.join("kept.sock");
    let request = format!("unix:{}", path.display());
    let service = Service::new(dir.path(), "probe", &probe_bin(), &[&request]);
    let mut app = AppConfig::new("probe", service.path()).ready_timeout("20s");
    if user.is_some() {
        app = app.line(&format!("user = \"{USER}\""));
    }
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let first = master.wait_main("probe", Some(1), T);
    let file = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| (m.ino(), m.uid()))
            .ok()
    };
    let bound = file(&path).expect("the socket file exists");
    let held = socket_inodes(first.pid);
    signal(first.pid, Signal::KILL).expect("SIGKILL the probe");
    let second = master.wait_main("probe", Some(2), T);
    assert_eq!(file(&path), Some(bound), "the file was never replaced");
    assert!(
        !held.is_disjoint(&socket_inodes(second.pid)),
        "the restarted probe did not get the same socket\n{}",
        master.log_tail()
    );
    master.ctl_expect(&["stop", "probe"], 0);
    assert!(
        wait_until(T, || !path.exists()),
        "the socket file outlived its socket\n{}",
        master.log_tail()
    );
}

#[test]
fn a_failed_app_closes_its_kept_socket_and_start_binds_it_again() {
    let demo = Demo::start_with("kept_failed", &["--addr", "127.0.0.1:0"], |app| {
        app.line("restart = { enabled = false }")
    });
    let master = &demo.master;
    signal(demo.first.pid, Signal::KILL).expect("SIGKILL the main instance");
    let mut app = serde_json::Value::Null;
    let failed = wait_until(T, || {
        app = master.app(APP);
        app["state"] == "failed"
    });
    assert!(failed, "not failed: {app}\n{}", master.log_tail());
    // No instance is coming: a client is refused, not left in a queue.
    assert_closed(master, demo.addr, "once the app failed");
    master.wait_for_log(
        &format!(
            "(bound at {}): no instance holds it, and the app is stopped, failed",
            demo.addr
        ),
        T,
    );
    master.ctl_expect(&["start", APP, "--timeout", "30"], 0);
    let main = master.wait_main(APP, Some(demo.first.id + 1), T);
    assert_eq!(get_once(listening_addr(master, main.id), T), Ok(main.id));
}
