//! Crash restarts: the delay grows by `factor` up to `max_delay`; after
//! `max_failures` crashes in a row the app is `failed` and stays down until
//! `ally-ctl start`.

use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir};
use ally_tests::proc::{POLL, alive, wait_until};
use ally_tests::script::{sh_quote, stamped_lines, write_script};

const APP: &str = "crashy";

/// The delays the policy below gives, in order: 200ms × 2^n, at most 1s.
const EXPECTED_GAPS_MS: [u64; 4] = [200, 400, 800, 1000];

#[test]
fn crash_restarts_back_off_then_the_app_fails_until_started() {
    let dir = TestDir::new("backoff");
    let flag = dir.path().join("crash");
    std::fs::write(&flag, "").unwrap();
    let body = format!(
        "if [ -e {flag} ]; then echo 'crashing on purpose' >&2; exit 3; fi\n\
         exec {demo} --addr 127.0.0.1:0\n",
        flag = sh_quote(&flag.to_string_lossy()),
        demo = sh_quote(&bins().demo.to_string_lossy()),
    );
    let script = write_script(dir.path(), "crashy", &body);
    let app = AppConfig::new(APP, &script)
        .ready_timeout("10s")
        .stop_timeout("10s")
        .line("[app.restart]")
        .line("min_delay = \"200ms\"")
        .line("factor = 2")
        .line("max_delay = \"1s\"")
        .line("max_failures = 4");
    let master = Master::start(&dir, &[app]);

    // One first start and max_failures = 4 restarts, then `failed`.
    let mut last = serde_json::Value::Null;
    let failed = wait_until(Duration::from_secs(15), || {
        last = master.app(APP);
        last["state"] == "failed"
    });
    assert!(
        failed,
        "{APP} is not failed within 15s; last listing: {last}\n{}",
        master.log_tail()
    );
    let starts = stamped_lines(&master.log(), &format!("{APP}#"))
        .into_iter()
        .filter(|(_, l)| l.contains(": started, pid "))
        .collect::<Vec<_>>();
    assert_eq!(
        starts.len(),
        EXPECTED_GAPS_MS.len() + 1,
        "expected a first start and {} restarts: {starts:?}\n{}",
        EXPECTED_GAPS_MS.len(),
        master.log_tail()
    );
    // From the crash seen (the reap: "restarting in") to the next start:
    // the master's delay alone, not the script's own start and exit, which
    // a busy machine stretches.
    let crashes = stamped_lines(&master.log(), "no main instance; restarting in");
    assert_eq!(crashes.len(), EXPECTED_GAPS_MS.len(), "{crashes:?}");
    let gaps: Vec<u64> = crashes
        .iter()
        .zip(&starts[1..])
        .map(|(crash, start)| ((start.0 - crash.0) * 1000.0).round() as u64)
        .collect();
    eprintln!("gaps from crash to restart (ms): {gaps:?}, expected {EXPECTED_GAPS_MS:?}");
    for (gap, expected) in gaps.iter().zip(EXPECTED_GAPS_MS) {
        // The delay is a floor; the loop wakes a moment after it.
        assert!(
            *gap >= expected * 9 / 10 && *gap <= expected + 300,
            "gap {gap}ms, expected {expected}ms (-10%/+300ms); all gaps {gaps:?}\n{}",
            master.log_tail()
        );
    }
    assert!(
        last["instances"].as_array().is_some_and(Vec::is_empty),
        "a failed app has no instance: {last}"
    );
    let last_error = last["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("crashing on purpose"),
        "last_error should carry the stderr tail: {last}"
    );
    assert!(
        last["restarts"].as_u64() >= Some(4),
        "restarts should count the 4 crash restarts: {last}"
    );

    // Left alone: nothing starts for twice max_delay.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) + Duration::from_millis(200) {
        let app = master.app(APP);
        assert!(
            app["state"] == "failed" && app["instances"].as_array().is_some_and(Vec::is_empty),
            "a failed app started again by itself after {:?}: {app}\n{}",
            watch.elapsed(),
            master.log_tail()
        );
        std::thread::sleep(POLL * 5);
    }
    let count_starts = || {
        stamped_lines(&master.log(), &format!("{APP}#"))
            .iter()
            .filter(|(_, l)| l.contains(": started, pid "))
            .count()
    };
    assert_eq!(count_starts(), starts.len(), "{}", master.log_tail());

    // Still crashing: `start` tries once and fails with the reason.
    let out = master.ctl_expect(&["start", APP], 1);
    master.assert_output(
        &out,
        out.stderr.contains("cannot start crashy") && out.stderr.contains("crashing on purpose"),
        "the error should name the app and carry the instance's stderr",
    );
    assert!(count_starts() > starts.len(), "{}", master.log_tail());

    // Fixed: `start` brings it back.
    std::fs::remove_file(&flag).unwrap();
    let out = master.ctl_expect(&["start", APP, "--timeout", "15"], 0);
    let main = master
        .main_of(APP)
        .unwrap_or_else(|| panic!("no main instance after start\n{out}\n{}", master.log_tail()));
    assert!(alive(main.pid));
    assert_eq!(master.app(APP)["state"], "running");
}
