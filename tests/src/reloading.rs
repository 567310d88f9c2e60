//! The check every zero-downtime test makes: reload an app again and again
//! under a load, and count every failed request.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::Master;
use crate::load::{Load, LoadStats};
use crate::proc::wait_until;

/// Requests that must succeed before the reloads start, and again after
/// them (so the newest instance took traffic).
const WARM_UP: u64 = 50;

/// The master's default `max_draining`.
const MAX_DRAINING: usize = 4;

/// The longest wait for a draining instance to exit before the next reload.
const DRAIN_WAIT: Duration = Duration::from_secs(20);

/// Runs `reloads` sequential `reload --wait` of `app` (whose main instance
/// is `first_id`) under `connections` clients on `addr`, keep-alive or not,
/// each once fewer than `max_draining` old instances drain, and asserts: each reload leaves its new instance main; not one request
/// or connect failed; more than one instance answered; every old instance
/// finished draining. Returns the load's figures.
///
/// # Panics
///
/// On any of those, with the figures and the tail of the master's log.
pub fn assert_reloads_lose_nothing(
    master: &Master,
    app: &str,
    addr: SocketAddr,
    first_id: u64,
    reloads: u64,
    connections: usize,
    keep_alive: bool,
) -> LoadStats {
    let load = Load::start(addr, connections, keep_alive);
    assert!(
        load.wait_for_ok(WARM_UP, Duration::from_secs(20)),
        "{app} did not answer the load\n{}",
        master.log_tail()
    );
    for n in 1..=reloads {
        // Overlapping drains, but never past the master's `max_draining`
        // (4 by default), whose kill no drain survives: on a loaded machine
        // back-to-back reloads can outrun the drains.
        let main = first_id + n - 1;
        assert!(
            wait_until(DRAIN_WAIT, || master
                .instances(app)
                .iter()
                .filter(|i| i["id"] != main)
                .count()
                < MAX_DRAINING),
            "old instances did not drain for reload {n}: {:?}\n{}",
            master.instances(app),
            master.log_tail()
        );
        master.reload_ok(app);
        let main = master.main_of(app).map(|m| m.id);
        assert_eq!(
            main,
            Some(first_id + n),
            "reload {n} did not leave its new instance main\n{}",
            master.log_tail()
        );
    }
    let so_far = load.ok();
    assert!(load.wait_for_ok(so_far + WARM_UP, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    let fail = |what: &str| panic!("{what}\n{stats}\n{}", master.log_tail());
    if stats.failed_requests != 0 || stats.failed_connects != 0 {
        fail("requests or connects failed across reloads");
    }
    if stats.ok == 0 {
        fail("no request succeeded");
    }
    if stats.instances_seen.len() < 2 {
        fail("every response came from one instance: the reloads took no traffic");
    }
    let last = first_id + reloads;
    assert!(
        wait_until(Duration::from_secs(15), || {
            master.instances(app).iter().all(|i| i["id"] == last)
        }),
        "old instances did not finish draining: {:?}\n{}",
        master.instances(app),
        master.log_tail()
    );
    stats
}
