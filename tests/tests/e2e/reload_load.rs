//! Zero failed requests across many reloads, with and without keep-alive.

use std::time::Duration;

use ally_tests::fixture::{APP, Demo};
use ally_tests::load::Load;

const CONNECTIONS: usize = 32;
const RELOADS: u64 = 20;

/// Runs `RELOADS` sequential `reload --wait` under a load and asserts that
/// not one request or connect failed.
fn reloads_under_load_lose_nothing(test: &str, keep_alive: bool) {
    let demo = Demo::start(test);
    let master = &demo.master;
    let load = Load::start(demo.addr, CONNECTIONS, keep_alive);
    assert!(
        load.wait_for_ok(100, Duration::from_secs(20)),
        "the demo did not answer the load\n{}",
        master.log_tail()
    );
    for n in 1..=RELOADS {
        master.reload_ok(APP);
        let main = master.main_of(APP);
        assert_eq!(
            main.map(|m| m.id),
            Some(demo.first.id + n),
            "reload {n} did not leave its new instance main\n{}",
            master.log_tail()
        );
    }
    // Let the newest instance take its share before stopping.
    let so_far = load.ok();
    assert!(load.wait_for_ok(so_far + 100, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    let fail = |what: &str| panic!("{what}\n{stats}\n{}", master.log_tail());
    if stats.failed_requests != 0 || stats.failed_connects != 0 {
        fail("requests failed across reloads");
    }
    if stats.ok == 0 {
        fail("no request succeeded");
    }
    if stats.instances_seen.len() < 2 {
        fail("every response came from one instance: the reloads did not take traffic");
    }
    // Every drained instance exits; only the newest one is left.
    let last = demo.first.id + RELOADS;
    assert!(
        ally_tests::proc::wait_until(Duration::from_secs(15), || {
            master.instances(APP).iter().all(|i| i["id"] == last)
        }),
        "old instances did not finish draining: {:?}\n{}",
        master.instances(APP),
        master.log_tail()
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
