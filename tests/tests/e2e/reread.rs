//! `ally-ctl reread` applies an edited config: new apps start, removed
//! apps stop and go, changed and untouched apps keep running as they are;
//! an invalid config changes nothing.

use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;

use ally_tests::bins::bins;
use ally_tests::fixture::{ANY_PORT, START_TIMEOUT};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::{alive, signal, wait_gone, wait_until};
use ally_tests::service::Service;

fn app(name: &str, script: &Path) -> AppConfig {
    AppConfig::new(name, script)
        .ready_timeout("10s")
        .stop_timeout("10s")
}

fn names(master: &Master) -> Vec<String> {
    master.list_json()["apps"]
        .as_array()
        .map(|apps| {
            apps.iter()
                .filter_map(|a| a["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn reread_adds_and_removes_apps_and_restarts_none() {
    let dir = TestDir::new("reread");
    let service = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
    let config = dir.path().join("ally.toml");
    let master = Master::start_with(
        bins(),
        &dir,
        &config_toml(&[app("a", service.path()), app("b", service.path())]),
    );
    let a = master.wait_main("a", Some(1), START_TIMEOUT);
    let b = master.wait_main("b", Some(1), START_TIMEOUT);

    // Add c, remove b, change a's stop_timeout.
    let edited = config_toml(&[
        app("a", service.path()).stop_timeout("7s"),
        app("c", service.path()),
    ]);
    std::fs::write(&config, &edited).unwrap();
    let out = master.ctl_expect(&["reread"], 0);
    master.assert_output(
        &out,
        out.stdout.contains("added [c]")
            && out.stdout.contains("removed [b]")
            && out.stdout.contains("changed [a]"),
        "reread's summary names what it added, removed and changed",
    );
    let c = master.wait_main("c", Some(1), START_TIMEOUT);
    assert!(alive(c.pid));
    assert!(
        wait_gone(b.pid, Duration::from_secs(10)),
        "b's instance still runs after b left the config\n{}",
        master.log_tail()
    );
    let mut listed = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            listed = names(&master);
            listed == ["a", "c"]
        }),
        "after the reread the master should list a and c, not {listed:?}\n{}",
        master.log_tail()
    );
    assert_eq!(
        master.main_of("a"),
        Some(a),
        "a changed setting must not restart a\n{}",
        master.log_tail()
    );
    assert_eq!(master.instances("a").len(), 1);

    // A second reread of the same file changes nothing.
    let out = master.ctl_expect(&["reread"], 0);
    master.assert_output(
        &out,
        out.stdout.contains("added [], removed [], changed []"),
        "nothing to do",
    );

    // An invalid edit: reread fails, names file:line:col, changes nothing.
    let bad_line = edited.lines().count() + 4;
    let invalid = format!("{edited}\n[[app]]\nname = \"d\"\nno_such_key = 1\ncommand = [\"x\"]\n");
    std::fs::write(&config, &invalid).unwrap();
    let out = master.ctl_expect(&["reread"], 1);
    let at = format!("{}:{bad_line}:1", config.display());
    master.assert_output(
        &out,
        out.stderr.contains(&at) && out.stderr.contains("no_such_key"),
        &format!("the error should point at {at}"),
    );
    assert_eq!(names(&master), ["a", "c"]);
    assert_eq!(master.main_of("a"), Some(a));
    assert_eq!(master.main_of("c"), Some(c));
    assert!(alive(a.pid) && alive(c.pid));
}

/// Regression: an app removed by a reread and added back by the next one
/// while its old instance still drains was reported as neither added nor
/// changed, and forgotten when that instance exited although it was in the
/// config. It is supervised again at once, with a new instance.
#[test]
fn an_app_added_back_while_it_drains_is_not_forgotten() {
    let dir = TestDir::new("reread_readd");
    let slow = Service::new(
        dir.path(),
        "slow",
        &bins().demo,
        &["--addr", "127.0.0.1:0", "--ignore-stop"],
    );
    let other = Service::new(dir.path(), "other", &bins().demo, &ANY_PORT);
    let config = dir.path().join("ally.toml");
    let with_app = config_toml(&[
        app("a", slow.path()).stop_timeout("3s"),
        app("b", other.path()),
    ]);
    let master = Master::start_with(bins(), &dir, &with_app);
    let first = master.wait_main("a", Some(1), START_TIMEOUT);
    std::fs::write(&config, config_toml(&[app("b", other.path())])).unwrap();
    let out = master.ctl(&["reread"]);
    master.assert_output(&out, out.stdout.contains("removed [a]"), "a is removed");
    std::fs::write(&config, &with_app).unwrap();
    let out = master.ctl(&["reread"]);
    master.assert_output(&out, out.stdout.contains("added [a]"), "a is added back");
    assert!(
        alive(first.pid),
        "the old instance should still be draining"
    );
    let second = master.wait_main("a", Some(first.id + 1), START_TIMEOUT);
    assert!(
        wait_gone(first.pid, Duration::from_secs(15)),
        "{}",
        master.log_tail()
    );
    // Still there, and still served by the new instance.
    assert_eq!(names(&master), ["a", "b"], "{}", master.log_tail());
    assert_eq!(master.main_of("a"), Some(second));
}

/// Regression: a reread while the master shut down started the apps it
/// added, which were never told to stop, so the master never exited.
#[test]
fn a_reread_during_shutdown_is_refused_and_the_master_still_exits() {
    let dir = TestDir::new("reread_shutdown");
    let slow = Service::new(
        dir.path(),
        "slow",
        &bins().demo,
        &["--addr", "127.0.0.1:0", "--ignore-stop"],
    );
    let other = Service::new(dir.path(), "other", &bins().demo, &ANY_PORT);
    let config = dir.path().join("ally.toml");
    let mut master = Master::start_with(
        bins(),
        &dir,
        &config_toml(&[app("a", slow.path()).stop_timeout("3s")]),
    );
    master.wait_main("a", Some(1), START_TIMEOUT);
    signal(master.pid(), Signal::TERM).unwrap();
    master.wait_for_log("shutting down", START_TIMEOUT);
    std::fs::write(
        &config,
        config_toml(&[
            app("a", slow.path()).stop_timeout("3s"),
            app("b", other.path()),
        ]),
    )
    .unwrap();
    let out = master.ctl(&["reread"]);
    master.assert_output(
        &out,
        !out.status.success() && out.stderr.contains("shutting down"),
        "the reread is refused",
    );
    // A second SIGTERM kills `a`; with nothing else to stop, the master
    // exits.
    let status = master.terminate(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", master.log_tail());
    assert!(
        !master.log().contains("b#1: started"),
        "{}",
        master.log_tail()
    );
}
