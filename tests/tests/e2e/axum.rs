//! The axum example (`ally::axum::serve`) under ally-master: zero failed
//! requests across reloads, with and without keep-alive; and the same
//! service written without the ally drain (`axum-naive`) failing requests
//! under the same load, which shows the load sees what the drain prevents.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::{DEFAULT_TIMEOUT, START_TIMEOUT, free_port};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::load::Load;
use ally_tests::reloading::assert_reloads_lose_nothing;
use ally_tests::service::Service;

const APP: &str = "axum";
const CONNECTIONS: usize = 32;
const RELOADS: u64 = 20;

/// The axum example, built with the demo from the examples of package
/// `ally` (with its `axum` feature, which this package enables).
fn axum_example() -> std::path::PathBuf {
    let path = bins().demo.with_file_name("axum");
    assert!(
        path.is_file(),
        "{} was not built with the other examples",
        path.display()
    );
    path
}

/// A master running `service` (logging `{log}: instance N pid P listening
/// on ADDR`) as app [`APP`] on a free port, once its first instance is up.
fn start(dir: &TestDir, service: &Path, log: &str) -> (Master, SocketAddr, u64) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let service = Service::new(
        dir.path(),
        "service",
        service,
        &["--addr", &addr.to_string()],
    );
    let app = AppConfig::new(APP, service.path())
        .ready_timeout(DEFAULT_TIMEOUT)
        .stop_timeout(DEFAULT_TIMEOUT)
        .stop_signal("SIGTERM");
    let master = Master::start_with(bins(), dir, &config_toml(&[app]));
    let first = master.wait_main(APP, Some(1), START_TIMEOUT);
    master.wait_for_log(
        &format!(
            "{log}: instance {} pid {} listening on {addr}",
            first.id, first.pid
        ),
        Duration::from_secs(10),
    );
    (master, addr, first.id)
}

fn reloads_under_load_lose_nothing(test: &str, keep_alive: bool) {
    let dir = TestDir::new(test);
    let (master, addr, first) = start(&dir, &axum_example(), "axum");
    assert_reloads_lose_nothing(&master, APP, addr, first, RELOADS, CONNECTIONS, keep_alive);
}

#[test]
fn axum_reloads_under_keep_alive_load_fail_no_request() {
    reloads_under_load_lose_nothing("axum_keep_alive_load", true);
}

#[test]
fn axum_reloads_under_connection_close_load_fail_no_request() {
    reloads_under_load_lose_nothing("axum_close_load", false);
}

/// The same reloads and load against `axum-naive` fail requests: the
/// check above can see what `ally::axum::serve` prevents.
#[test]
fn naive_axum_reloads_under_keep_alive_load_fail_requests() {
    let dir = TestDir::new("axum_naive_keep_alive_load");
    let naive = Path::new(env!("CARGO_BIN_EXE_axum-naive"));
    let (master, addr, first) = start(&dir, naive, "axum-naive");
    let load = Load::start(addr, CONNECTIONS, true);
    assert!(
        load.wait_for_ok(50, Duration::from_secs(20)),
        "axum-naive did not answer the load\n{}",
        master.log_tail()
    );
    for n in 1..=RELOADS {
        master.reload_ok(APP);
        assert_eq!(master.main_of(APP).map(|m| m.id), Some(first + n));
    }
    let stats = load.stop();
    eprintln!("axum-naive: {stats}");
    assert!(
        stats.failed_requests + stats.failed_connects > 0,
        "the naive service failed no request: the load cannot see a bad drain\n{stats}"
    );
}
