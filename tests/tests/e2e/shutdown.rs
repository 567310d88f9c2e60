//! SIGTERM to the master stops every instance, then the master exits 0.

use std::time::Duration;

use ally_tests::fixture::{ANY_PORT, APP, Demo};
use ally_tests::load::Load;
use ally_tests::proc::{alive, pids_with_env};

/// Every pid listed for the app.
fn instance_pids(demo: &Demo) -> Vec<u32> {
    demo.master
        .instances(APP)
        .iter()
        .filter_map(|i| u32::try_from(i["pid"].as_u64()?).ok())
        .collect()
}

fn assert_everything_gone(demo: &Demo, pids: &[u32]) {
    for &pid in pids {
        assert!(!alive(pid), "instance {pid} outlived the master");
    }
    let left = pids_with_env(&demo.dir.env_marker());
    assert!(
        left.is_empty(),
        "processes of the test outlived the master: {left:?}"
    );
}

#[test]
fn sigterm_stops_every_instance_and_the_master_exits_0() {
    let mut demo = Demo::start("sigterm");
    // Two live instances: the main one and one draining keep-alive clients.
    let load = Load::start(demo.addr, 4, true);
    assert!(load.wait_for_ok(20, Duration::from_secs(20)));
    demo.master.reload_ok(APP);
    let pids = instance_pids(&demo);
    drop(load);
    assert!(!pids.is_empty());
    let status = demo.master.terminate(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "master exit status {status}\n{}",
        demo.master.log_tail()
    );
    assert_everything_gone(&demo, &pids);
}

#[test]
fn sigterm_kills_instances_that_ignore_the_stop_signal_and_exits_0() {
    let mut demo = Demo::start_with(
        "sigterm_ignored",
        &[ANY_PORT[0], ANY_PORT[1], "--ignore-stop"],
        |app| app.stop_timeout("1s"),
    );
    let pids = instance_pids(&demo);
    let started = std::time::Instant::now();
    let status = demo.master.terminate(Duration::from_secs(15));
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "master exit status {status}\n{}",
        demo.master.log_tail()
    );
    assert!(
        took >= Duration::from_millis(900),
        "the master exited after {took:?}, before the 1s stop timeout of an instance \
         that ignores SIGTERM\n{}",
        demo.master.log_tail()
    );
    assert_everything_gone(&demo, &pids);
}
