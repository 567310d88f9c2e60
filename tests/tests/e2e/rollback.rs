//! A new version that cannot start never takes traffic; the old main keeps
//! serving without a single failed request.

use std::time::Duration;

use ally_tests::fixture::{ANY_PORT, APP, Demo};
use ally_tests::load::Load;
use ally_tests::proc::{POLL, wait_gone};

#[test]
fn reload_to_a_version_that_exits_at_start_fails_and_keeps_the_old_main() {
    let demo = Demo::start("exits_at_start");
    let master = &demo.master;
    let load = Load::start(demo.addr, 8, true);
    assert!(load.wait_for_ok(50, Duration::from_secs(20)));

    demo.set_flags(&[ANY_PORT[0], ANY_PORT[1], "--exit-at-start"]);
    let out = master.ctl(&["reload", APP, "--wait", "--timeout", "30"]);
    master.assert_exit(&out, 1);
    master.assert_output(
        &out,
        out.stderr.contains("exited"),
        "the failure should say the new instance exited",
    );
    assert_eq!(
        master.main_of(APP),
        Some(demo.first),
        "the old main must stay main"
    );
    assert!(
        ally_tests::proc::wait_until(Duration::from_secs(5), || master.instances(APP).len() == 1),
        "the failed instance is still listed: {:?}",
        master.instances(APP)
    );
    assert!(
        !master.app(APP)["last_error"].is_null(),
        "list shows no last_error after a failed reload: {}",
        master.app(APP)
    );

    // The fixed version reloads fine, and the traffic never noticed.
    demo.set_flags(&ANY_PORT);
    master.reload_ok(APP);
    let main = master.wait_main(APP, Some(demo.first.id + 1), Duration::from_secs(5));
    assert!(wait_gone(demo.first.pid, Duration::from_secs(10)));
    let before = load.ok();
    assert!(load.wait_for_ok(before + 50, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    assert_eq!(stats.failures(), 0, "{stats}\n{}", master.log_tail());
    assert!(
        stats.instances_seen.contains_key(&main.id),
        "the new main took no traffic: {stats}"
    );
}

#[test]
fn reload_to_a_version_never_ready_times_out_and_kills_it() {
    let demo = Demo::start_with("never_ready", &ANY_PORT, |app| app.ready_timeout("1s"));
    let master = &demo.master;
    let load = Load::start(demo.addr, 8, true);
    assert!(load.wait_for_ok(50, Duration::from_secs(20)));

    demo.set_flags(&[ANY_PORT[0], ANY_PORT[1], "--never-ready"]);
    let (out, unready) = std::thread::scope(|s| {
        let reload = s.spawn(|| master.ctl(&["reload", APP, "--wait", "--timeout", "30"]));
        // Catch the unready instance while it is listed as starting.
        let mut unready = None;
        while unready.is_none() && !reload.is_finished() {
            unready = master
                .instances(APP)
                .iter()
                .find(|i| i["state"] == "starting")
                .and_then(|i| i["pid"].as_u64());
            std::thread::sleep(POLL);
        }
        (reload.join().expect("reload thread"), unready)
    });
    master.assert_exit(&out, 1);
    let stderr = out.stderr.to_lowercase();
    master.assert_output(
        &out,
        stderr.contains("ready") || stderr.contains("timeout") || stderr.contains("timed out"),
        "the failure should name readiness or a timeout",
    );
    master.assert_output(
        &out,
        out.elapsed >= Duration::from_millis(900),
        "the reload failed before the 1s ready timeout",
    );
    let unready = unready.unwrap_or_else(|| {
        panic!(
            "never saw the new instance listed as starting\n{}",
            master.log_tail()
        )
    });
    let unready = u32::try_from(unready).expect("pid fits u32");
    assert!(
        wait_gone(unready, Duration::from_secs(5)),
        "the unready instance {unready} is still running\n{}",
        master.log_tail()
    );
    assert_eq!(
        master.main_of(APP),
        Some(demo.first),
        "the old main must stay main"
    );
    let before = load.ok();
    assert!(load.wait_for_ok(before + 50, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    assert_eq!(stats.failures(), 0, "{stats}\n{}", master.log_tail());
    assert_eq!(
        stats.instances_seen.keys().collect::<Vec<_>>(),
        [&demo.first.id],
        "only the old main may have answered"
    );
}
