//! Reloads asked while one is in progress are queued and coalesce into one
//! reload that starts after them.

use std::time::Duration;

use ally_tests::fixture::{ANY_PORT, APP, Demo};
use ally_tests::proc::wait_until;

const T: Duration = Duration::from_secs(10);

#[test]
fn reloads_asked_during_a_reload_coalesce_into_one() {
    let demo = Demo::start("queued_reloads");
    let master = &demo.master;
    // Each new version takes 3 s to start: the reload stays in progress.
    demo.service
        .set_flags_slow(&ANY_PORT, Duration::from_secs(3));
    let reload = || master.ctl(&["reload", APP, "--wait", "--timeout", "60"]);
    let first_new = demo.first.id + 1;
    let outs = std::thread::scope(|s| {
        let first = s.spawn(reload);
        let mut app = serde_json::Value::Null;
        assert!(
            wait_until(T, || {
                app = master.app(APP);
                app["reloading"] == first_new
            }),
            "the first reload never showed as in progress: {app}\n{}",
            master.log_tail()
        );
        let queued: Vec<_> = (0..2).map(|_| s.spawn(reload)).collect();
        assert!(
            wait_until(T, || {
                app = master.app(APP);
                app["queued_reloads"] == 2
            }),
            "the two reloads asked during the first are not listed as queued: {app}\n{}",
            master.log_tail()
        );
        assert_eq!(
            app["reloading"], first_new,
            "the first reload ended before the others were queued; the test \
             proves nothing (the machine is too slow for its 3 s window)"
        );
        std::iter::once(first)
            .chain(queued)
            .map(|h| h.join().expect("reload thread"))
            .collect::<Vec<_>>()
    });
    for out in &outs {
        master.assert_exit(out, 0);
    }
    // One reload for the first request, exactly one more for the two
    // queued ones.
    let main = master.wait_main(APP, Some(first_new + 1), T);
    assert_eq!(main.id, first_new + 1, "queued reloads were not coalesced");
    assert!(
        wait_until(T, || master.instances(APP).len() == 1),
        "old instances did not exit: {:?}",
        master.instances(APP)
    );
    assert_eq!(master.main_of(APP), Some(main));
}
