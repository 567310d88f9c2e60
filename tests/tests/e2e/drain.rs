//! An old instance that ignores the stop signal is killed at its deadline.

use std::time::{Duration, Instant};

use ally_tests::fixture::{ANY_PORT, APP, Demo};
use ally_tests::proc::{POLL, alive};

#[test]
fn old_instance_ignoring_the_stop_signal_is_killed_after_stop_timeout() {
    let demo = Demo::start_with(
        "ignores_stop",
        &[ANY_PORT[0], ANY_PORT[1], "--ignore-stop"],
        |app| app.stop_timeout("1s"),
    );
    let master = &demo.master;
    demo.set_flags(&ANY_PORT);
    let started = Instant::now();
    master.reload_ok(APP);

    let old = master
        .instances(APP)
        .into_iter()
        .find(|i| i["id"] == demo.first.id);
    if let Some(old) = &old {
        assert!(
            old["state"] == "draining" || old["state"] == "killed",
            "the old instance should be draining: {old}"
        );
        assert!(
            old["deadline_unix_ms"].is_u64(),
            "a draining instance shows its deadline: {old}"
        );
    }

    // Watch it die, noting whether the listing ever calls it killed.
    let mut listed_killed = false;
    let deadline = Instant::now() + Duration::from_secs(8);
    while alive(demo.first.pid) && Instant::now() < deadline {
        listed_killed |= master
            .instances(APP)
            .iter()
            .any(|i| i["id"] == demo.first.id && i["state"] == "killed");
        std::thread::sleep(POLL);
    }
    let gone_after = started.elapsed();
    assert!(
        !alive(demo.first.pid),
        "the old instance ignoring SIGTERM is still alive {gone_after:?} after the reload\n{}",
        master.log_tail()
    );
    assert!(
        gone_after >= Duration::from_millis(900),
        "the old instance died after {gone_after:?}, before its 1s stop timeout: \
         it did not ignore the stop signal, so this test proves nothing\n{}",
        master.log_tail()
    );
    let log = master.log().to_lowercase();
    let logged_kill = log
        .lines()
        .map(ally_tests::clock::unstamped)
        .filter(|l| !l.starts_with('['))
        .any(|l| l.contains("kill") || l.contains("signal 9"));
    assert!(
        listed_killed || logged_kill,
        "neither the listing nor the master's log says the instance was killed\n{}",
        master.log_tail()
    );
    assert_eq!(master.main_of(APP).map(|m| m.id), Some(demo.first.id + 1));
}
