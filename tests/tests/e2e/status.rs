//! `ally-ctl status APP` in full: every listener with its origin and its
//! holders, and the config drift of the main instance — after an edit and
//! a reread, across an in-place upgrade of the master, and gone once a
//! reload has started an instance with the new settings.

use serde_json::Value;

use ally_tests::bins::bins;
use ally_tests::fixture::{ANY_PORT, START_TIMEOUT, free_port, listening_addr};
use ally_tests::harness::{AppConfig, Master, config_toml};
use ally_tests::service::Service;
use ally_tests::upgrading::setup::Setup;

/// The app: the demo on a port of its own asking (the library's
/// listener), and a `listen` socket the config declares.
fn web(service: &Service, port: u16, stop_timeout: &str) -> AppConfig {
    AppConfig::new("web", service.path())
        .ready_timeout("10s")
        .stop_timeout(stop_timeout)
        .line("family = \"payments\"")
        .line(&format!("listen = [\"http=tcp://127.0.0.1:{port}\"]"))
}

/// `status web --json`.
fn status(master: &Master) -> Value {
    let out = master.ctl_expect(&["status", "web", "--json"], 0);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json printed invalid JSON: {e}\n{out}"))
}

#[test]
fn status_shows_listeners_and_holders_and_the_drift_a_reread_makes_until_a_reload() {
    let port = free_port();
    let mut service = None;
    let setup = Setup::start("status_drift", |dir| {
        let s = Service::new(dir.path(), "service", &bins().demo, &ANY_PORT);
        let apps = vec![web(&s, port, "10s")];
        service = Some(s);
        apps
    });
    let service = service.expect("the service");
    let master = &setup.master;
    let first = master.wait_main("web", Some(1), START_TIMEOUT);
    let addr = listening_addr(master, first.id);

    let doc = status(master);
    let listeners = doc["listeners"].as_array().cloned().unwrap_or_default();
    let find = |origin: &str| {
        listeners
            .iter()
            .find(|l| l["origin"] == origin)
            .unwrap_or_else(|| panic!("no {origin} listener in {doc}"))
            .clone()
    };
    let declared = find("config");
    assert_eq!(declared["network"], "tcp", "{doc}");
    assert_eq!(declared["address"], format!("127.0.0.1:{port}"), "{doc}");
    assert_eq!(declared["name"], "http", "{doc}");
    assert_eq!(declared["holders"], serde_json::json!([1]), "{doc}");
    let asked = find("library");
    assert_eq!(asked["address"], addr.to_string(), "{doc}");
    assert_eq!(asked["holders"], serde_json::json!([1]), "{doc}");
    assert_eq!(listeners.len(), 2, "{doc}");
    assert_eq!(
        doc["drift"],
        serde_json::json!([]),
        "nothing changed yet: {doc}"
    );
    assert_eq!(doc["settings"]["stop_timeout"], "\"10s\"", "{doc}");
    assert_eq!(doc["crashes"], 0, "{doc}");
    assert_eq!(doc["family"], "payments", "{doc}");

    // The text form says the same, without colour when not on a terminal.
    let text = master.ctl_expect(&["status", "web"], 0);
    master.assert_output(
        &text,
        text.stdout
            .contains(&format!("\nlisteners   tcp 127.0.0.1:{port}"))
            && text.stdout.contains(&format!("tcp {addr}"))
            && text.stdout.contains("\ndrift       none\n")
            && text.stdout.contains("\nfamily      payments\n")
            && !text.stdout.contains('\x1b'),
        "status lists both listeners and no drift, in plain text",
    );

    // An edit and a reread: the running instance keeps what it started
    // with, and status says what differs.
    let config = setup.dir.path().join("ally.toml");
    std::fs::write(&config, config_toml(&[web(&service, port, "7s")])).unwrap();
    master.ctl_expect(&["reread"], 0);
    let drift = serde_json::json!([{
        "setting": "stop_timeout",
        "running": "\"10s\"",
        "configured": "\"7s\"",
    }]);
    let doc = status(master);
    assert_eq!(doc["drift"], drift, "{doc}");
    let text = master.ctl_expect(&["status", "web"], 0);
    master.assert_output(
        &text,
        text.stdout
            .contains("\ndrift       stop_timeout \"10s\" -> \"7s\"\n            (these apply at its next start or reload)\n"),
        "status shows the drift",
    );

    // The in-place upgrade carries each instance's start config.
    let out = setup.upgrade();
    master.assert_exit(&out, 0);
    assert_eq!(status(master)["drift"], drift, "after the upgrade");

    // A reload starts an instance with the new settings: no drift.
    master.reload_ok("web");
    let doc = status(master);
    assert_eq!(doc["main"], 2, "{doc}");
    assert_eq!(
        doc["drift"],
        serde_json::json!([]),
        "after the reload: {doc}"
    );
    assert_eq!(doc["settings"]["stop_timeout"], "\"7s\"", "{doc}");
}

#[test]
fn status_counts_the_crashes_in_a_row_and_the_back_off_they_started() {
    let demo = ally_tests::fixture::Demo::start("status_crashes");
    let master = &demo.master;
    let doc = master.ctl_expect(&["status", "web", "--json"], 0);
    let before: Value = serde_json::from_str(&doc.stdout).unwrap();
    assert_eq!(before["crashes"], 0, "{before}");
    assert_eq!(before["backoff_ms"], Value::Null, "{before}");
    ally_tests::proc::signal(demo.first.pid, rustix::process::Signal::KILL).unwrap();
    master.wait_main("web", Some(demo.first.id + 1), START_TIMEOUT);
    let after = status(master);
    assert_eq!(after["crashes"], 1, "{after}");
    // The default policy's first delay.
    assert_eq!(after["backoff_ms"], 500, "{after}");
    assert_eq!(after["restarts"], 1, "{after}");
    let text = master.ctl_expect(&["status", "web"], 0);
    master.assert_output(
        &text,
        text.stdout
            .contains("\ncrashes     1 in a row (back-off 500ms; 10 make it failed)\n"),
        "status says how many crashes in a row and the back-off",
    );
}
