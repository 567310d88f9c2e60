//! The std example on `ally::http` (`ally-lib/examples/std_http.rs`, at
//! most 40 lines) under ally-master: zero failed requests across 20
//! reloads, with 32 keep-alive connections and with a new connection per
//! request.

use std::net::SocketAddr;
use std::time::Duration;

use ally_tests::bins::{Bins, bins};
use ally_tests::fixture::{DEFAULT_TIMEOUT, START_TIMEOUT, free_port};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::reloading::assert_reloads_lose_nothing;
use ally_tests::service::Service;

const APP: &str = "std";
const CONNECTIONS: usize = 32;
const RELOADS: u64 = 20;

/// The binaries, with the std example (built with the demo, from the
/// examples of package `ally`) as the service.
fn std_http_bins() -> Bins {
    let mut bins = bins().clone();
    bins.demo = bins.demo.with_file_name("std_http");
    assert!(
        bins.demo.is_file(),
        "{} was not built with the other examples",
        bins.demo.display()
    );
    bins
}

fn reloads_under_load_lose_nothing(test: &str, keep_alive: bool) {
    let bins = std_http_bins();
    let dir = TestDir::new(test);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let service = Service::new(
        dir.path(),
        "service",
        &bins.demo,
        &["--addr", &addr.to_string()],
    );
    let app = AppConfig::new(APP, service.path())
        .ready_timeout(DEFAULT_TIMEOUT)
        .stop_timeout(DEFAULT_TIMEOUT)
        .stop_signal("SIGTERM");
    let master = Master::start_with(&bins, &dir, &config_toml(&[app]));
    let first = master.wait_main(APP, Some(1), START_TIMEOUT);
    master.wait_for_log(
        &format!(
            "std_http: instance {} pid {} listening on {addr}",
            first.id, first.pid
        ),
        Duration::from_secs(10),
    );
    assert_reloads_lose_nothing(
        &master,
        APP,
        addr,
        first.id,
        RELOADS,
        CONNECTIONS,
        keep_alive,
    );
}

#[test]
fn std_http_reloads_under_keep_alive_load_fail_no_request() {
    reloads_under_load_lose_nothing("std_http_keep_alive_load", true);
}

#[test]
fn std_http_reloads_under_connection_close_load_fail_no_request() {
    reloads_under_load_lose_nothing("std_http_close_load", false);
}

/// The example stays at most 40 lines, and the README shows it whole.
#[test]
fn std_http_example_is_short_and_the_readme_shows_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(root.join("ally-lib/examples/std_http.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        example.lines().count() <= 40,
        "{} lines",
        example.lines().count()
    );
    assert!(
        readme.contains(&format!("```rust,no_run\n{example}```")),
        "README.md's std service example differs from ally-lib/examples/std_http.rs"
    );
}
