//! A std service whose whole accept loop is `for s in listener.incoming()`
//! on an ally listener serves under ally-master, also while a second
//! instance shares its socket after a reload (each woken for connections
//! the other takes): not one failed request, and no `WouldBlock` ending
//! the loop.

use std::net::SocketAddr;
use std::time::Duration;

use ally_tests::bins::{Layout, bins};
use ally_tests::fixture::{START_TIMEOUT, free_port};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::load::Load;
use ally_tests::proc::alive;
use ally_tests::service::Service;

const APP: &str = "incoming";
const CONNECTIONS: usize = 8;
/// Requests each load must answer.
const REQUESTS: u64 = 300;

#[test]
fn a_plain_incoming_loop_serves_and_shares_the_socket_across_a_reload() {
    let program = Layout::of_current_exe()
        .profile_dir()
        .join("incoming-service");
    let dir = TestDir::new("incoming");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let service = Service::new(dir.path(), "service", &program, &[&addr.to_string()]);
    // The old instance serves on after the stop signal until this passes:
    // long enough for the second load (checked below), short enough that
    // the master's own shutdown ends it.
    let app = AppConfig::new(APP, service.path())
        .ready_timeout("10s")
        .stop_timeout("6s");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let first = master.wait_main(APP, Some(1), START_TIMEOUT);
    let check = |load: Load, what: &str| {
        let so_far = load.ok();
        assert!(
            load.wait_for_ok(so_far + REQUESTS, Duration::from_secs(30)),
            "{what}: the load was not answered\n{}",
            master.log_tail()
        );
        let stats = load.stop();
        eprintln!("{what}: {stats}");
        assert_eq!(
            stats.failures(),
            0,
            "{what}: failed requests\n{stats}\n{}",
            master.log_tail()
        );
        stats
    };

    let alone = check(Load::start(addr, CONNECTIONS, false), "one instance");
    assert_eq!(
        alone.instances_seen.keys().copied().collect::<Vec<_>>(),
        [first.id]
    );

    master.reload_ok(APP);
    let second = master.wait_main(APP, Some(first.id + 1), START_TIMEOUT);
    master.wait_for_log(
        &format!("incoming-service: pid {} got the stop signal", first.pid),
        Duration::from_secs(10),
    );
    let shared = check(Load::start(addr, CONNECTIONS, false), "two instances");
    assert!(
        alive(first.pid),
        "the old instance is gone: the second load did not run beside it\n{}",
        master.log_tail()
    );
    assert!(
        shared.instances_seen.contains_key(&second.id),
        "the new instance took no connection: {shared}"
    );
    let log = master.log();
    assert!(
        !log.contains("incoming() failed"),
        "an incoming() loop ended:\n{}",
        master.log_tail()
    );
    eprintln!(
        "with both instances accepting: {:?} responses per instance",
        shared.instances_seen
    );
}
