//! Families, bulk commands and one view across masters: two real masters
//! share one runtime directory, and `ally-ctl` without `--socket` acts on
//! apps by name, by `--family` or `all`, finding each app's master.
//!
//! Master `alpha` runs `web` (family `payments`) and `worker` (family
//! `ops`); master `beta` runs `api` (family `payments`). Both run `dup`,
//! which a name alone cannot choose between.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use ally_tests::bins::bins;
use ally_tests::cmd::{CmdOutput, run};
use ally_tests::fixture::{ANY_PORT, DEFAULT_TIMEOUT, START_TIMEOUT, listening_addr_of};
use ally_tests::harness::{AppConfig, CTL_TIMEOUT, MainInstance, Master, TestDir, config_toml};
use ally_tests::load::Load;
use ally_tests::service::Service;

/// The two masters, their apps' scripts, and the shared runtime directory.
/// Fields drop in order: masters first, then scripts, then directories.
struct Host {
    alpha: Master,
    beta: Master,
    web: Service,
    worker: Service,
    _api: Service,
    run_dir: TestDir,
    _dirs: [TestDir; 2],
}

/// How long web's slow version takes to start.
const SLOW_START: Duration = Duration::from_millis(1500);

/// An app running `service`, in `family`.
fn app(name: &str, service: &Service, family: &str) -> AppConfig {
    AppConfig::new(name, service.path())
        .ready_timeout(DEFAULT_TIMEOUT)
        .stop_timeout(DEFAULT_TIMEOUT)
        .stop_signal("SIGTERM")
        .line(&format!("family = \"{family}\""))
}

/// An app that only sleeps, ready at once: cheap, for the ambiguous name.
fn dup(dir: &Path) -> AppConfig {
    let script = dir.join("dup.sh");
    ally_tests::executable::install_text("#!/bin/sh\nexec sleep 600\n", &script, 0o755);
    AppConfig::new("dup", &script)
        .stop_timeout("5s")
        .line("ready = \"immediate\"")
}

impl Host {
    fn start(test: &str) -> Host {
        let run_dir = TestDir::new(&format!("{test}-run"));
        let a = TestDir::new(&format!("{test}-a"));
        let b = TestDir::new(&format!("{test}-b"));
        let web = Service::new(a.path(), "web", &bins().demo, &ANY_PORT);
        let worker = Service::new(a.path(), "worker", &bins().demo, &ANY_PORT);
        let api = Service::new(b.path(), "api", &bins().demo, &ANY_PORT);
        let alpha = Master::start_in(
            bins(),
            &a,
            "alpha",
            run_dir.path(),
            &config_toml(&[
                app("web", &web, "payments"),
                app("worker", &worker, "ops"),
                dup(a.path()),
            ]),
        );
        let beta = Master::start_in(
            bins(),
            &b,
            "beta",
            run_dir.path(),
            &config_toml(&[app("api", &api, "payments"), dup(b.path())]),
        );
        for (master, name) in [(&alpha, "web"), (&alpha, "worker"), (&beta, "api")] {
            master.wait_main(name, Some(1), START_TIMEOUT);
        }
        Host {
            alpha,
            beta,
            web,
            worker,
            _api: api,
            run_dir,
            _dirs: [a, b],
        }
    }

    /// `ally-ctl ARGS...` with no `--socket`, finding the masters in the
    /// shared runtime directory.
    fn ctl(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(&bins().ctl);
        cmd.args(args)
            .env(ally_proto::paths::RUNTIME_DIR_VAR, self.run_dir.path())
            .env_remove("XDG_RUNTIME_DIR");
        for var in ally_proto::env::ALL {
            cmd.env_remove(var);
        }
        run(&mut cmd, CTL_TIMEOUT)
    }

    /// [`ctl`](Self::ctl), asserted to exit with `code`.
    fn expect(&self, args: &[&str], code: i32) -> CmdOutput {
        let out = self.ctl(args);
        if out.code() != Some(code) {
            panic!(
                "expected exit code {code}\n{out}\n{}\n{}",
                self.alpha.log_tail(),
                self.beta.log_tail()
            );
        }
        out
    }

    fn main(&self, master: &Master, app: &str) -> MainInstance {
        master
            .main_of(app)
            .unwrap_or_else(|| panic!("{app} has no main instance\n{}", master.log_tail()))
    }
}

#[test]
fn reload_family_reloads_exactly_that_family_one_by_one_under_load() {
    let host = Host::start("fam_reload");
    // By app: worker's first instance says `instance 1` too.
    let web_addr = listening_addr_of(&host.alpha, "web", 1);
    let api_addr = listening_addr_of(&host.beta, "api", 1);
    let worker_before = host.main(&host.alpha, "worker");
    let web_load = Load::start(web_addr, 8, true);
    let api_load = Load::start(api_addr, 8, true);
    for load in [&web_load, &api_load] {
        assert!(load.wait_for_ok(50, Duration::from_secs(20)), "no load");
    }

    // web's next instance takes 1.5 s to start: were api reloaded beside
    // it rather than after it, its new instance would start within that.
    host.web.set_flags_slow(&ANY_PORT, SLOW_START);
    let out = host.expect(&["reload", "--family", "payments"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "web: instance 2 is main",
            "api: instance 2 is main",
            "2 reloaded"
        ],
        "{out}"
    );
    assert_eq!(host.main(&host.alpha, "web").id, 2);
    assert_eq!(host.main(&host.beta, "api").id, 2);
    assert_eq!(
        host.main(&host.alpha, "worker"),
        worker_before,
        "an app of another family was reloaded"
    );
    // One by one: api's new instance started after web's slow one was up.
    let started = |master: &Master, app: &str| {
        master.instances(app).iter().find(|i| i["id"] == 2).unwrap()["started_unix_ms"]
            .as_u64()
            .unwrap()
    };
    let (web2, api2) = (started(&host.alpha, "web"), started(&host.beta, "api"));
    let slow = u64::try_from(SLOW_START.as_millis()).unwrap();
    assert!(
        api2 >= web2 + slow,
        "api#2 started at {api2}, less than {slow} ms after web#2 at {web2}: not one by one"
    );

    for (name, load) in [("web", web_load), ("api", api_load)] {
        let stats = load.stop();
        eprintln!("{name}: {stats}");
        assert_eq!(
            (stats.failed_requests, stats.failed_connects),
            (0, 0),
            "{name} lost requests during the family reload\n{stats}"
        );
        assert!(
            stats.instances_seen.len() >= 2,
            "{name}: the load saw no reload"
        );
    }
}

#[test]
fn a_bulk_reload_stops_at_a_broken_app_and_keep_going_goes_on() {
    let host = Host::start("fam_broken");
    // worker's next instance exits at once: its reload fails.
    host.worker
        .set_flags(&["--addr", "127.0.0.1:0", "--exit-at-start"]);

    // all: alpha's apps in config order (web, worker, dup), then beta's.
    let out = host.expect(&["reload", "all"], 1);
    assert_eq!(
        out.stdout.lines().next(),
        Some("web: instance 2 is main"),
        "{out}"
    );
    assert!(
        out.stderr.contains("reload of worker failed"),
        "the failure names the app\n{out}"
    );
    for not_run in ["dup: not run", "api: not run"] {
        assert!(out.stderr.contains(not_run), "{not_run}\n{out}");
    }
    assert!(
        out.stderr
            .trim_end()
            .ends_with("ally-ctl: 1 reloaded, 1 failed, 3 not run"),
        "summary\n{out}"
    );
    assert_eq!(host.main(&host.beta, "api").id, 1, "api was reloaded");
    assert_eq!(
        host.main(&host.alpha, "worker").id,
        1,
        "worker's old instance serves"
    );

    let out = host.expect(&["reload", "all", "--keep-going"], 1);
    assert!(
        out.stderr
            .trim_end()
            .ends_with("ally-ctl: 4 reloaded, 1 failed"),
        "summary\n{out}"
    );
    assert!(out.stdout.contains("api: instance 2 is main"), "{out}");
    assert_eq!(host.main(&host.alpha, "web").id, 3);
    assert_eq!(host.main(&host.beta, "api").id, 2);

    // Fixed, the same command succeeds, exit 0, two at a time.
    host.worker.set_flags(&ANY_PORT);
    let out = host.expect(&["reload", "--family", "payments", "--parallel", "2"], 0);
    assert_eq!(out.stdout.lines().last(), Some("2 reloaded"), "{out}");
}

/// The apps of `list --json`: (name, master, family).
fn listed(out: &CmdOutput) -> Vec<(String, String, Value)> {
    let json: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("list --json printed invalid JSON: {e}\n{out}"));
    json["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["master"].as_str().unwrap().to_owned(),
                a["family"].clone(),
            )
        })
        .collect()
}

#[test]
fn one_view_across_masters_finds_each_app_and_refuses_to_guess() {
    let host = Host::start("fam_view");
    let all = |out: &CmdOutput| {
        let got = listed(out);
        let want = [
            ("web", "alpha", Value::from("payments")),
            ("worker", "alpha", Value::from("ops")),
            ("dup", "alpha", Value::Null),
            ("api", "beta", Value::from("payments")),
            ("dup", "beta", Value::Null),
        ];
        let want: Vec<(String, String, Value)> = want
            .into_iter()
            .map(|(n, m, f)| (n.to_owned(), m.to_owned(), f))
            .collect();
        assert_eq!(got, want, "{out}");
    };
    let out = host.expect(&["list", "--json"], 0);
    all(&out);
    let table = host.expect(&["list"], 0);
    assert!(
        table.stdout.starts_with("APP     FAMILY    MASTER  STATE"),
        "{table}"
    );
    let family = host.expect(&["list", "--family", "payments", "--json"], 0);
    let names: Vec<String> = listed(&family).into_iter().map(|(n, ..)| n).collect();
    assert_eq!(names, ["web", "api"], "{family}");

    // status finds the master that runs the app.
    let out = host.expect(&["status", "api"], 0);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("app") && first.ends_with(" api"), "{out}");
    let out = host.expect(&["stop", "worker"], 0);
    assert_eq!(out.stdout, "worker: stopped\n", "{out}");
    assert!(host.alpha.app("worker")["state"] == "stopped");

    // A name both masters run: refused, both named, nothing done.
    let out = host.expect(&["restart", "dup"], 4);
    for part in ["alpha (", "beta (", "--socket"] {
        assert!(out.stderr.contains(part), "{part}\n{out}");
    }
    let out = host.ctl(&[
        "--socket",
        host.beta.socket().to_str().unwrap(),
        "status",
        "dup",
    ]);
    assert_eq!(out.code(), Some(0), "{out}");

    // A stale socket: reported once, the rest still shown, exit 0.
    drop(std::os::unix::net::UnixListener::bind(host.run_dir.path().join("gone.sock")).unwrap());
    let out = host.expect(&["list", "--json"], 0);
    assert_eq!(out.stderr.matches("gone.sock").count(), 1, "{out}");
    let got = listed(&out);
    assert_eq!(got.len(), 5, "{out}");
    // An app command is not hidden by it either.
    host.expect(&["start", "worker"], 0);
    let out = host.expect(&["status", "--family", "payments"], 0);
    let apps: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("app "))
        .collect();
    assert_eq!(apps.len(), 2, "{out}");
    assert!(
        apps[0].ends_with(" web") && apps[1].ends_with(" api"),
        "{out}"
    );
    all(&host.expect(&["list", "--json"], 0));

    // A socket that accepts and never answers, as a stuck master: reported
    // once after its time, the others shown, exit 5 (timed out).
    let stuck =
        std::os::unix::net::UnixListener::bind(host.run_dir.path().join("stuck.sock")).unwrap();
    let out = host.expect(&["list", "--json"], 5);
    assert_eq!(out.stderr.matches("stuck.sock").count(), 1, "{out}");
    assert_eq!(listed(&out).len(), 5, "{out}");
    // A command on an app another master runs still finds it.
    host.expect(&["status", "web"], 0);
    drop(stuck);
    std::fs::remove_file(host.run_dir.path().join("stuck.sock")).unwrap();

    // The logs of apps of two masters, merged, each line naming its app.
    let out = host.expect(&["logs", "web", "api", "-n", "5"], 0);
    assert!(
        out.stdout.contains(" web#1 ") && out.stdout.contains(" api#1 "),
        "{out}"
    );

    // Followed: the new instances' lines of both come on one stream. Once
    // the past lines are out, both logs are followed: what the reloads
    // write can only come as it is written.
    let follow = Follow::start(
        host.run_dir.path(),
        &["logs", "-f", "-n", "1000", "web", "api"],
    );
    assert!(
        follow.wait_for(" api#1 ", Duration::from_secs(20)),
        "no past lines from logs -f:\n{}",
        follow.seen()
    );
    host.expect(&["reload", "web", "api"], 0);
    for want in [" web#2 ", " api#2 "] {
        assert!(
            follow.wait_for(want, Duration::from_secs(20)),
            "no line with {want:?} from logs -f:\n{}",
            follow.seen()
        );
    }
}

#[test]
fn families_survive_an_upgrade_and_an_older_ctl_is_refused_by_version() {
    use ally_proto::{ErrorCode, Hello, HelloReply, MAGIC, PROTOCOL_VERSION, Role, frame};
    use ally_tests::upgrading::setup::Setup;

    let setup = Setup::start("fam_upgrade", |dir| {
        let mut web = dup(dir.path());
        web.name = "web".into();
        vec![web.line("family = \"payments\"")]
    });
    let family = |setup: &Setup| setup.master.app("web")["family"].clone();
    assert_eq!(family(&setup), "payments");
    let out = setup.upgrade();
    setup.master.assert_exit(&out, 0);
    assert_eq!(family(&setup), "payments", "the upgrade lost the family");

    // What an ally-ctl of the protocol before `family` sends first.
    let stream = std::os::unix::net::UnixStream::connect(setup.master.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let old = Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION - 1,
        role: Role::Control,
    };
    frame::write_to(&stream, &old).unwrap();
    match frame::read_from::<_, HelloReply>(&stream).unwrap() {
        HelloReply::Refused(f) => {
            assert_eq!(f.code, ErrorCode::VersionMismatch, "{f:?}");
            let both = format!(
                "speaks protocol {PROTOCOL_VERSION}, the client speaks {}",
                PROTOCOL_VERSION - 1
            );
            assert!(f.message.contains(&both), "{f:?}");
        }
        other => panic!("an older client was welcomed: {other:?}"),
    }
}

/// A running `ally-ctl ARGS...` whose output lines are collected; killed
/// on drop.
struct Follow {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Follow {
    fn start(run_dir: &Path, args: &[&str]) -> Follow {
        use std::io::BufRead;

        let mut child = Command::new(&bins().ctl)
            .args(args)
            .env(ally_proto::paths::RUNTIME_DIR_VAR, run_dir)
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        Follow { child, lines }
    }

    fn wait_for(&self, text: &str, timeout: Duration) -> bool {
        ally_tests::proc::wait_until(timeout, || {
            self.lines.lock().unwrap().iter().any(|l| l.contains(text))
        })
    }

    fn seen(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
