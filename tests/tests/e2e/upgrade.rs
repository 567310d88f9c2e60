//! `ally-ctl upgrade`: the master re-executes its binary from disk in
//! place (same pid) and keeps every socket, instance, connection and all
//! of its state; a new binary that cannot take over leaves the old master
//! serving.
//!
//! Each test runs a copy of the master from its own directory and replaces
//! that file by rename before each upgrade, as a package manager does.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ally_tests::bins::bins;
use ally_tests::fixture::{ANY_PORT, listening_addr};
use ally_tests::harness::{AppConfig, TestDir, config_toml};
use ally_tests::load::Load;
use ally_tests::proc::{alive, signal, wait_until};
use ally_tests::script::{Spawned, write_script};
use ally_tests::service::Service;
use ally_tests::state_suite::token;
use ally_tests::upgrading::setup::{
    Setup, WAIT, handover_version_of, state_probe as probe, version_of,
};
use ally_tests::upgrading::{OTHER_VERSION, Variant, install, install_text, variant};
use rustix::process::Signal;

/// Upgrades in the load test, alternating between two builds.
const UPGRADES: usize = 10;

/// Clients of the load.
const CONNECTIONS: usize = 32;

/// Generous: a debug build on a busy two-core machine.
const TIMEOUT: &str = "10s";

/// The lock the `locks` app holds and waits for.
const LOCK: &str = "upgrade-lock";

/// A failed upgrade: what it is, how the binary is replaced, the cause
/// `upgrade --wait` must name.
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);

/// The apps of the load test: the demo, a probe that wrote a cache entry
/// and an atomic, and a probe holding a lock (it ignores its stop signal,
/// so it drains for an hour once a waiter replaces it).
fn state_apps(dir: &TestDir, t: &str) -> (Vec<AppConfig>, Service, Service) {
    let web = Service::new(dir.path(), "web", &bins().demo, &ANY_PORT);
    let kv = Service::new(dir.path(), "kv", &probe(), &["--write", t]);
    let locks = Service::new(dir.path(), "locks", &probe(), &["--hold-lock", LOCK]);
    let apps = vec![
        AppConfig::new("web", web.path())
            .ready_timeout(TIMEOUT)
            .stop_timeout(TIMEOUT),
        AppConfig::new("kv", kv.path())
            .ready_timeout(TIMEOUT)
            .stop_timeout(TIMEOUT),
        AppConfig::new("locks", locks.path())
            .ready_timeout(TIMEOUT)
            .stop_timeout("1h"),
    ];
    drop(web);
    (apps, kv, locks)
}

/// Sets its flag when dropped, also while a panic unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn ten_upgrades_under_keep_alive_load_lose_nothing_and_keep_every_pid_and_state() {
    let other = variant(Variant::Other);
    let t = token();
    let mut services = None;
    let setup = Setup::start("upgrade_load", |dir| {
        let (apps, kv, locks) = state_apps(dir, &t);
        services = Some((kv, locks));
        apps
    });
    let (kv, locks) = services.unwrap();
    let master = &setup.master;
    let original_version = version_of(&setup.original);
    assert_ne!(original_version, OTHER_VERSION);

    let web1 = master.wait_main("web", Some(1), WAIT);
    let addr = listening_addr(master, web1.id);
    setup.verdict("kv", 1, "wrote");
    setup.verdict("locks", 1, &format!("holding {LOCK}"));
    // A waiter queued behind the hold: instance 2 of `locks`, while the
    // holder drains.
    locks.set_flags(&["--wait-lock", LOCK]);
    master.reload_ok("locks");
    setup.verdict("locks", 2, &format!("queued for {LOCK}"));

    let load = Load::start(addr, CONNECTIONS, true);
    assert!(load.wait_for_ok(50, WAIT), "no load\n{}", master.log_tail());
    let stop = AtomicBool::new(false);
    let (lists, list_failures) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        // Set however this closure ends: a failed assertion below must
        // fail the test, not leave the scope waiting for the lister.
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let out = master.ctl(&["list"]);
                lists.fetch_add(1, Ordering::Relaxed);
                if out.code() != Some(0) {
                    eprintln!("list failed during the upgrades:\n{out}");
                    list_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let mut web_main = web1.id;
        for n in 0..UPGRADES {
            let (binary, expected) = if n % 2 == 0 {
                (&other, OTHER_VERSION.to_owned())
            } else {
                (&setup.original, original_version.clone())
            };
            // One web instance at a time, so the pids compare.
            assert!(wait_until(WAIT, || master.instances("web").len() == 1));
            let before = setup.pids();
            let reload = n == UPGRADES / 2;
            if reload {
                // A reload started just before the upgrade completes after it.
                let out = master.ctl(&["reload", "web"]);
                master.assert_exit(&out, 0);
            }
            install(binary, &setup.binary, 0o755);
            let out = setup.upgrade();
            master.assert_exit(&out, 0);
            master.assert_output(
                &out,
                out.stdout.contains(&format!("-> {expected}")),
                "the new version",
            );
            assert_eq!(setup.running_version(), expected, "after upgrade {n}");
            setup.assert_same_process_resumed();
            if reload {
                web_main = master.wait_main("web", Some(web_main + 1), WAIT).id;
            }
            let after = setup.pids();
            for (key, pid) in &before {
                let gone_by_reload = reload && key.0 == "web";
                if !gone_by_reload {
                    assert_eq!(
                        after.get(key),
                        Some(pid),
                        "instance {key:?} lost or changed its pid across upgrade {n}\n{}",
                        master.log_tail()
                    );
                }
            }
        }
        assert_eq!(web_main, web1.id + 1, "the reload did not complete");
    });
    let so_far = load.ok();
    assert!(load.wait_for_ok(so_far + 50, WAIT));
    let stats = load.stop();
    eprintln!(
        "{stats}\n{} list(s) during the upgrades",
        lists.load(Ordering::Relaxed)
    );
    assert_eq!(
        stats.failures(),
        0,
        "requests or connects failed across the upgrades\n{stats}\n{}",
        master.log_tail()
    );
    assert_eq!(list_failures.load(Ordering::Relaxed), 0, "list failed");
    assert!(lists.load(Ordering::Relaxed) > 0);

    // The hold survived every upgrade (the waiter was not let in), and the
    // queued wait did: killing the holder grants it.
    assert!(
        !master.log().contains("[locks#2] state-probe: granted"),
        "the waiter got the lock while it was held\n{}",
        master.log_tail()
    );
    let holder = setup.pids()[&("locks".to_owned(), 1)];
    signal(u32::try_from(holder).unwrap(), Signal::KILL).unwrap();
    setup.verdict("locks", 2, &format!("granted {LOCK}"));
    // The cache entry and the atomic of kv#1 are there for its successor.
    kv.set_flags(&["--expect", &t]);
    master.reload_ok("kv");
    setup.verdict("kv", 2, "expect ok");
}

#[test]
fn an_upgrade_that_cannot_take_over_leaves_the_old_master_serving_with_its_state() {
    let refusing = variant(Variant::Refusing);
    let failing = variant(Variant::FailingRestore);
    let t = token();
    let mut kv_service = None;
    let setup = Setup::start("upgrade_refused", |dir| {
        let web = Service::new(dir.path(), "web", &bins().demo, &ANY_PORT);
        let kv = Service::new(dir.path(), "kv", &probe(), &["--write", &t]);
        let apps = vec![
            AppConfig::new("web", web.path()).ready_timeout(TIMEOUT),
            AppConfig::new("kv", kv.path()).ready_timeout(TIMEOUT),
        ];
        drop(web);
        kv_service = Some(kv);
        apps
    });
    let kv = kv_service.unwrap();
    let master = &setup.master;
    let version = version_of(&setup.original);
    let web1 = master.wait_main("web", Some(1), WAIT);
    let addr = listening_addr(master, web1.id);
    setup.verdict("kv", 1, "wrote");
    let load = Load::start(addr, CONNECTIONS, true);
    assert!(load.wait_for_ok(50, WAIT));
    let before = setup.pids();

    let exits = "#!/bin/sh\nexit 0\n";
    let refused_cause = format!(
        "handover state version {} is not this master's (999, which reads 3 and 4 too)",
        handover_version_of(&setup.original)
    );
    let cases: [Case<'_>; 4] = [
        (
            "a program that exits at once",
            Box::new(|| install_text(exits, &setup.binary, 0o755)),
            "exited with status 0 and said nothing",
        ),
        (
            "a file that is not executable",
            Box::new(|| install(&setup.original, &setup.binary, 0o644)),
            "Permission denied",
        ),
        (
            "a build that refuses the state's version",
            Box::new(|| install(&refusing, &setup.binary, 0o755)),
            &refused_cause,
        ),
        (
            "a build that fails to restore after the exec",
            Box::new(|| install(&failing, &setup.binary, 0o755)),
            "could not take over",
        ),
    ];
    for (what, put, cause) in &cases {
        put();
        let out = setup.upgrade();
        master.assert_exit(&out, 1);
        master.assert_output(
            &out,
            out.stderr.contains(cause),
            &format!("{what}: the cause"),
        );
        master.assert_output(
            &out,
            out.stderr
                .contains(&format!("ally-master {version} serves on")),
            &format!("{what}: who serves on"),
        );
        master.assert_output(
            &out,
            out.stderr.matches("upgrade failed").count() == 1,
            &format!("{what}: said once that the upgrade failed"),
        );
        assert_eq!(setup.running_version(), version, "after {what}");
        assert!(alive(master.pid()));
        assert_eq!(setup.pids(), before, "instances changed after {what}");
    }
    // The way back ran: the same process went to the new image and back.
    setup.assert_same_process_resumed();
    let stats = load.stop();
    assert_eq!(stats.failures(), 0, "{stats}\n{}", master.log_tail());
    kv.set_flags(&["--expect", &t]);
    master.reload_ok("kv");
    setup.verdict("kv", 2, "expect ok");
}

#[test]
fn a_log_follower_keeps_following_and_the_running_config_is_carried_not_reread() {
    let mut ticker = None;
    let setup = Setup::start("upgrade_follow", |dir| {
        let script = write_script(
            dir.path(),
            "ticker",
            "i=0\nwhile true; do i=$((i+1)); echo \"tick $i\"; sleep 0.05; done\n",
        );
        ticker = Some(script.clone());
        vec![AppConfig::new("ticker", &script).line("ready = \"immediate\"")]
    });
    let master = &setup.master;
    master.wait_main("ticker", Some(1), WAIT);
    let mut cmd = Command::new(&bins().ctl);
    cmd.args(["--socket"])
        .arg(master.socket())
        .args(["logs", "ticker", "-f", "-n", "0"]);
    let mut follower = Spawned::with_stdout_lines(cmd);
    let tick = |line: Option<String>| -> u64 {
        let line = line.unwrap_or_else(|| panic!("no tick line\n{}", master.log_tail()));
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let first = tick(follower.wait_line("tick ", WAIT).0);

    // Edited on disk: an app added. The upgrade must not read it.
    let extra = write_script(setup.dir.path(), "extra", "exec sleep 1000\n");
    let config = setup.dir.path().join("ally.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&config_toml(&[
        AppConfig::new("extra", &extra).line("ready = \"immediate\"")
    ]));
    std::fs::write(&config, text).unwrap();

    install(&variant(Variant::Other), &setup.binary, 0o755);
    let out = setup.upgrade();
    master.assert_exit(&out, 0);
    let (line, _) = follower.wait_line("tick ", WAIT);
    let mut last = tick(line);
    // Lines written after the upgrade still reach the follower.
    while last < first + 40 {
        last = tick(follower.wait_line("tick ", WAIT).0);
    }
    assert!(follower.running(), "the follower ended");
    master.wait_for_log("upgraded in place", WAIT);

    let names: Vec<String> = master.list_json()["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["ticker"], "the upgrade read the edited config");
    let out = master.ctl(&["reread"]);
    master.assert_exit(&out, 0);
    master.assert_output(
        &out,
        out.stdout.contains("added [extra]"),
        "reread adds extra",
    );
    let _ = ticker;
}
