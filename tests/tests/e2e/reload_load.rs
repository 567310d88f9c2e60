//! Zero failed requests across many reloads, with and without keep-alive.

use ally_tests::fixture::{APP, Demo};
use ally_tests::reloading::assert_reloads_lose_nothing;

const CONNECTIONS: usize = 32;
const RELOADS: u64 = 20;

/// Runs `RELOADS` sequential `reload --wait` under a load and asserts that
/// not one request or connect failed.
fn reloads_under_load_lose_nothing(test: &str, keep_alive: bool) {
    let demo = Demo::start(test);
    let master = &demo.master;
    assert_reloads_lose_nothing(
        master,
        APP,
        demo.addr,
        demo.first.id,
        RELOADS,
        CONNECTIONS,
        keep_alive,
    );
}

#[test]
fn reloads_under_keep_alive_load_fail_no_request() {
    reloads_under_load_lose_nothing("keep_alive_load", true);
}

#[test]
fn reloads_under_connection_close_load_fail_no_request() {
    reloads_under_load_lose_nothing("close_load", false);
}
