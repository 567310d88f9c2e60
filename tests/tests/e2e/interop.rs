//! A server that knows nothing of ally — only systemd's socket activation
//! (LISTEN_FDS) and readiness (NOTIFY_SOCKET) — gets zero-downtime reloads.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::socket_activated_app;
use ally_tests::harness::{Master, TestDir, config_toml};
use ally_tests::reloading::assert_reloads_lose_nothing;

const APP: &str = "activated";
const RELOADS: u64 = 10;

/// A port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    probe.local_addr().expect("probe address").port()
}

#[test]
fn socket_activated_server_is_reloaded_under_load_without_a_failed_connect() {
    let dir = TestDir::new("socket_activated");
    let port = free_port();
    let app = socket_activated_app(APP, port);
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let first = master.wait_main(APP, Some(1), Duration::from_secs(20));
    // It saw the socket-activation variables as systemd sets them.
    master.wait_for_log("got 1 socket(s) named 'http'", Duration::from_secs(10));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_reloads_lose_nothing(&master, APP, addr, first.id, RELOADS, 16, false);
    // Readiness came from READY=1: STATUS= from the same datagram shows.
    let status = &master.instances(APP)[0]["text"];
    assert_eq!(status, "serving", "{}", master.log_tail());
}
