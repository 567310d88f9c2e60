//! Findings of the attack review of the channel, control-limit and notify
//! work: each test shows one way an instance (or a stall) still stalls,
//! grows or misleads the master. They fail on the code they were written
//! against; each says what it expects instead.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ally_proto::{ControlRequest, ControlResponse, Hello, HelloReply, Role, frame};
use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::signal;
use ally_tests::script::write_script;
use ally_tests::vitals::rss_kib;
use rustix::process::Signal;

/// How long the master may take to answer `list` while an instance
/// misbehaves: generous for a debug build on a busy machine, far below a
/// stall.
const ANSWER: Duration = Duration::from_secs(3);

/// How long `list` took on a fresh control connection, or `None` if no
/// answer came within `timeout`.
fn list_time(socket: &Path, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    frame::write_to(&stream, &Hello::new(Role::Control)).ok()?;
    match frame::read_from::<_, HelloReply>(&stream).ok()? {
        HelloReply::Welcome { .. } => {}
        HelloReply::Refused(f) => panic!("refused: {f}"),
    }
    frame::write_to(&stream, &ControlRequest::List).ok()?;
    let _: ControlResponse = frame::read_from(&stream).ok()?;
    Some(start.elapsed())
}

/// An app that writes empty lines as fast as it can (`yes ''`; any chatty
/// program with short lines does the same) keeps the master inside
/// `Instance::read_output`, which reads a pipe until `EAGAIN` with no
/// per-turn budget and splits lines with a `Vec::drain` from the front
/// (quadratic in the lines per read). The loop never comes back: no
/// control request is answered, and the lines read pile up in a local
/// `Vec` that is never written out (~100 MB/s of RSS here).
///
/// Expected: the pipe is read with a per-turn budget like every other
/// descriptor; `list` is answered and RSS stays small.
#[test]
fn an_app_writing_empty_lines_flat_out_neither_stalls_nor_grows_the_master() {
    let dir = TestDir::new("attack_chatty");
    let script = write_script(dir.path(), "chatty", "sleep 1\nexec yes ''\n");
    let app = AppConfig::new("chatty", &script).line("ready = \"immediate\"");
    // Not `start_with`: its first `list` would wait a minute for a master
    // that grows by gigabytes meanwhile.
    let master = Master::start_wrapped_until_log(
        bins(),
        &dir,
        &config_toml(&[app]),
        &[],
        "chatty#1: ready, now main",
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_kib(master.pid());
    let answered = list_time(master.socket(), ANSWER);
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(master.pid());
    if answered.is_none() || after > 200 * 1024 {
        // The master cannot act on SIGTERM in this state: stop it before
        // it eats the machine.
        let _ = signal(master.pid(), Signal::KILL);
    }
    assert!(
        answered.is_some(),
        "the master did not answer `list` within {ANSWER:?} while an app wrote empty lines \
         (RSS {before} KiB, then {after} KiB)"
    );
    assert!(
        after < 200 * 1024,
        "the master grew to {after} KiB RSS reading an app's output"
    );
}

/// The `lock_waits.py` fixture (a raw-protocol instance).
fn lock_waits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lock_waits.py")
}

/// An instance may queue any number of lock waits (nothing bounds them per
/// connection, per instance or per app), and closing the connection that
/// carries them withdraws them one by one, each with a
/// `VecDeque::retain` over the whole queue (`Locker::withdraw`, from
/// `SharedState::conn_closed`): quadratic. 30 000 waits (270 KB sent)
/// stall the master for about 12 s in a debug build; ten times as many,
/// for hours. Every turn with the waits queued is also linear in them
/// (`SharedState::on_timer` and `next_deadline` scan every wait).
///
/// Expected: waits are bounded (a clear `LimitExceeded`, like every other
/// shared-state limit), and withdrawing a connection's waits costs linear
/// time; `list` is answered within [`ANSWER`] throughout.
#[test]
fn closing_a_connection_with_many_lock_waits_does_not_stall_the_master() {
    let dir = TestDir::new("attack_lock_waits");
    let go = dir.path().join("go");
    let app = AppConfig::new("waits", &lock_waits())
        .line(&format!(
            "env = {{ WAITS = \"30000\", GO_FILE = \"{}\" }}",
            go.display()
        ))
        .ready_timeout("20s");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    // The fixture says how many the master queued: at most its cap per
    // instance, the rest refused.
    let line = master.wait_for_log("lock_waits: queued", Duration::from_secs(120));
    let queued: usize = line
        .split("queued ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        queued <= ally_proto::state::MAX_WAITS_PER_OWNER,
        "{queued} lock waits were queued for one instance\n{}",
        master.log_tail()
    );
    assert!(
        list_time(master.socket(), ANSWER).is_some(),
        "the master did not answer `list` with the waits queued\n{}",
        master.log_tail()
    );
    std::fs::write(&go, "go").expect("write the go file");
    // The fixture polls for the file every 50 ms. (Its "closed" line is
    // no clock: the master logs it only once it reads the fixture's
    // stderr again, after the stall.)
    std::thread::sleep(Duration::from_millis(500));
    let answered = list_time(master.socket(), ANSWER);
    master.wait_for_log("lock_waits: closed", Duration::from_secs(300));
    assert!(
        answered.is_some(),
        "the master did not answer `list` within {ANSWER:?} after a connection with 30000 \
         lock waits closed\n{}",
        master.log_tail()
    );
}

/// A new instance that says Ready within its `ready_timeout` while the
/// master is stopped (`SIGSTOP`, a frozen cgroup, or a loop stalled as
/// above) is killed as "not ready" when the master resumes: each turn
/// applies timers (`on_timers`) before it reads what arrived, so the
/// deadline is judged before the Ready waiting in the socket is seen. The
/// same order closes connections whose frame had fully arrived in the
/// kernel (`close_unfinished_frames`) and control clients whose hello had.
///
/// Expected: what arrived before a deadline counts (read before applying
/// timers, or judge deadlines after reading); the reload succeeds.
#[test]
fn a_ready_sent_in_time_while_the_master_was_stopped_counts() {
    let dir = TestDir::new("attack_stopped_ready");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/slow_ready.py");
    let app = AppConfig::new("slow", &script)
        .ready_timeout("3s")
        .stop_timeout("5s");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    master.wait_main("slow", Some(1), Duration::from_secs(20));
    let socket = master.socket().to_owned();
    let ctl = std::thread::spawn({
        let master_ctl = bins().ctl.clone();
        move || {
            std::process::Command::new(master_ctl)
                .arg("--socket")
                .arg(&socket)
                .args(["reload", "slow", "--wait"])
                .output()
                .expect("run ally-ctl")
        }
    });
    // Stopped once instance 2's hello is answered (an instance cannot say
    // Ready before that): its Ready then waits in the socket.
    master.wait_for_log(
        "[slow#2] slow_ready: hello answered",
        Duration::from_secs(10),
    );
    signal(master.pid(), Signal::STOP).expect("SIGSTOP the master");
    // Instance 2 sends Ready about 1 s after its start, while the master
    // is stopped; the master resumes after its ready deadline (3 s).
    std::thread::sleep(Duration::from_secs(5));
    signal(master.pid(), Signal::CONT).expect("SIGCONT the master");
    let out = ctl.join().expect("the ally-ctl thread");
    assert!(
        out.status.success(),
        "the reload failed though instance 2 said Ready 1 s after its start: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        master.log_tail()
    );
}

/// The first number after `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> u32 {
    line.split(prefix)
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {line:?}"))
}

/// DESIGN.md ("The master is never the reason for downtime"): orphaned
/// instances drain — by channel EOF, "or their stop signal as
/// parent-death signal for apps without the library". No parent-death
/// signal is set (`sys::prepare_child` does setsid and setrlimit only), so
/// an app that does not link the library (here `sleep`, with a `listen`
/// socket) keeps running after the master is SIGKILLed, holding the port:
/// a master started again then cannot bind it and exits 1, taking every
/// other app of its config down with it.
///
/// Expected: the orphan gets its stop signal when the master dies (a
/// `PR_SET_PDEATHSIG` set in the child after the uid change, which clears
/// it, and checked against a parent already gone) and exits.
#[test]
fn an_app_without_the_library_does_not_outlive_a_killed_master() {
    let dir = TestDir::new("attack_orphan");
    let port = ally_tests::fixture::free_port();
    let script = write_script(dir.path(), "legacy", "exec sleep 600\n");
    let app = AppConfig::new("legacy", &script)
        .line(&format!("listen = [\"tcp://127.0.0.1:{port}\"]"))
        .line("ready = \"immediate\"");
    let reaper = ally_tests::bins::Layout::of_current_exe()
        .profile_dir()
        .join("subreaper");
    let reaper = reaper.to_str().expect("a UTF-8 path");
    let master = Master::start_wrapped(bins(), &dir, &config_toml(&[app]), &[reaper]);
    let serving = master.wait_for_log("ally-master: pid ", Duration::from_secs(5));
    let master_pid = number_after(&serving, "ally-master: pid ");
    let started = master.wait_for_log("legacy#1: started, pid ", Duration::from_secs(10));
    let orphan = number_after(&started, "started, pid ");
    signal(master_pid, Signal::KILL).expect("SIGKILL the master");
    master.wait_for_log(
        &format!("subreaper: pid {master_pid} was killed by signal 9"),
        Duration::from_secs(5),
    );
    let gone = ally_tests::proc::wait_gone(orphan, Duration::from_secs(5));
    assert!(
        gone,
        "instance pid {orphan} (no library) still runs 5 s after its master was killed, \
         holding 127.0.0.1:{port}\n{}",
        master.log_tail()
    );
}

/// An instance's `Report` (and so `ally-ctl list` and `status`) carries
/// its free text unbounded, up to what one request frame holds. One
/// instance reporting 1 MiB of text makes the master's `Apps` answer too
/// large for a frame: `list`, `list --json` and `status APP` then fail for
/// the operator ("the answer cannot be sent") for as long as it runs,
/// hiding every other app too. (`STATUS=` on the notify socket is cut at
/// 4 KiB; the library's own report has no such cap.)
///
/// Expected: report fields are bounded (cut or refused), so `list` keeps
/// working whatever an instance reports.
#[test]
fn one_instance_reporting_a_huge_text_does_not_break_list_for_every_app() {
    let dir = TestDir::new("attack_big_report");
    let big = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/big_report.py");
    let quiet = write_script(dir.path(), "quiet", "exec sleep 600\n");
    let apps = [
        AppConfig::new("big", &big),
        AppConfig::new("quiet", &quiet).line("ready = \"immediate\""),
    ];
    let master = Master::start_with(bins(), &dir, &config_toml(&apps));
    master.wait_for_log("big_report: reported", Duration::from_secs(20));
    let out = master.ctl(&["list"]);
    assert!(
        out.status.success(),
        "`ally-ctl list` fails once one instance reported a large text: {}",
        out.stderr
    );
}

/// `reread` (or SIGHUP: logrotate's `systemctl reload`) during a graceful
/// shutdown starts the apps it adds: `Master::reread` does not know the
/// master is stopping and `App::new` + `begin` run as usual, so the new
/// app is not shutting down. The master's loop waits for every app to be
/// stopped *and shutting down*, so it never exits: not when the old apps
/// are gone, not at a second SIGTERM (which kills the new app's instance
/// but leaves the master running), only at SIGKILL.
///
/// Expected: a reread during shutdown is refused (`ShuttingDown`) or adds
/// apps stopped; the master exits once the apps it was stopping are gone.
#[test]
fn a_reread_during_shutdown_does_not_keep_the_master_running() {
    let dir = TestDir::new("attack_shutdown_reread");
    let slow = write_script(
        dir.path(),
        "slow_stop",
        "trap 'sleep 3; exit 0' TERM\nwhile :; do sleep 0.2; done\n",
    );
    let added = write_script(dir.path(), "added", "exec sleep 600\n");
    let a = AppConfig::new("a", &slow)
        .line("ready = \"immediate\"")
        .stop_timeout("20s");
    let b = AppConfig::new("b", &added).line("ready = \"immediate\"");
    let master = Master::start_with(bins(), &dir, &config_toml(std::slice::from_ref(&a)));
    master.wait_main("a", Some(1), Duration::from_secs(20));
    signal(master.pid(), Signal::TERM).expect("SIGTERM the master");
    master.wait_for_log("shutting down", Duration::from_secs(5));
    std::fs::write(dir.path().join("ally.toml"), config_toml(&[a, b])).expect("edit ally.toml");
    let out = master.ctl(&["reread"]);
    eprintln!("reread during shutdown: {} {}", out.stdout, out.stderr);
    let exited = ally_tests::proc::wait_gone(master.pid(), Duration::from_secs(20));
    assert!(
        exited,
        "the master still runs 20 s after SIGTERM (its only app drains in 3 s) because a \
         reread during the shutdown added an app\n{}",
        master.log_tail()
    );
}

/// An app removed by `reread` and put back by another `reread` while its
/// instances still drain is silently dropped: the second reread finds the
/// retired app by name, sees the same config and does nothing ("added []");
/// the app is forgotten once its last instance exits, though the config
/// declares it (`Master::reread`, the `Some(app) if app.config == new`
/// arm never un-retires it; a changed config marks it "changed" but
/// retired all the same).
///
/// Expected: the app is in service again after the second reread.
#[test]
fn an_app_put_back_while_its_removal_drains_is_not_forgotten() {
    let dir = TestDir::new("attack_readd");
    let slow = write_script(
        dir.path(),
        "slow_stop",
        "trap 'sleep 3; exit 0' TERM\nwhile :; do sleep 0.2; done\n",
    );
    let other = write_script(dir.path(), "other", "exec sleep 600\n");
    let a = AppConfig::new("a", &slow)
        .line("ready = \"immediate\"")
        .stop_timeout("20s");
    let b = AppConfig::new("b", &other).line("ready = \"immediate\"");
    let both = config_toml(&[a, b.clone()]);
    let master = Master::start_with(bins(), &dir, &both);
    master.wait_main("a", Some(1), Duration::from_secs(20));
    let config = dir.path().join("ally.toml");
    std::fs::write(&config, config_toml(&[b])).expect("remove a");
    master.ctl_expect(&["reread"], 0);
    std::fs::write(&config, &both).expect("put a back");
    let out = master.ctl_expect(&["reread"], 0);
    eprintln!("second reread: {}", out.stdout);
    // a#1 has drained (3 s) by now.
    std::thread::sleep(Duration::from_secs(6));
    let listing = master.list_json();
    let serving = listing["apps"].as_array().is_some_and(|apps| {
        apps.iter()
            .any(|app| app["name"] == "a" && !app["main"].is_null())
    });
    assert!(
        serving,
        "app a is declared again but was forgotten: {listing}\n{}",
        master.log_tail()
    );
}

/// Nothing bounds how many listeners one instance (or app) may have the
/// master bind: each distinct address (an abstract `@name` costs nothing
/// to make up; so do ports of 127.0.0.1) is one more descriptor in the
/// master, held as long as the instance lives. One instance can so fill
/// the master's descriptor table (20 000 here, reached in seconds):
/// afterwards every app's reload and crash restart fails ("cannot start
/// instance ...: Too many open files"), no instance gets a new connection,
/// and accepting control connections pauses.
///
/// Expected: a per-instance (or per-app) listener cap with a clear
/// `LimitExceeded`, well below the master's descriptor limit; this test
/// asks for 5000 and expects to be refused before the end.
#[test]
fn one_instance_cannot_make_the_master_bind_unbounded_listeners() {
    let dir = TestDir::new("attack_listens");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/many_listens.py");
    let app = AppConfig::new("many", &fixture).line("env = { LISTENS = \"5000\" }");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let line = master.wait_for_log("many_listens: got", Duration::from_secs(60));
    let fds = ally_tests::vitals::open_fds(master.pid());
    assert!(
        !line.contains("got 5000 of 5000"),
        "one instance had the master bind 5000 listeners (the master holds {fds} descriptors): \
         {line}"
    );
}

/// `CacheItems` (and `CacheKeys`) build the whole answer — a copy of every
/// entry of the namespace — and `frame::encode` serializes all of it
/// before it finds the answer too large for a frame. With the default
/// `max_cache_bytes` (64 MiB) an instance's namespace of 16 MB costs the
/// master ~32 MB of copying per request, and it handles 64 requests per
/// connection per turn (`REQUESTS_PER_TURN` counts requests, not their
/// cost): an instance that keeps asking leaves the loop seconds per turn
/// (a debug build: tens of seconds), so no one else is served.
///
/// Expected: the cost of one request is bounded by the frame it can
/// answer with (stop collecting at `MAX_FRAME_LEN`, or refuse a namespace
/// too large to list); `list` stays answered within [`ANSWER`].
#[test]
fn an_instance_listing_a_large_cache_namespace_does_not_stall_the_master() {
    let dir = TestDir::new("attack_cache_items");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cache_items.py");
    let app = AppConfig::new("items", &fixture)
        .line("env = { ENTRIES = \"16\", SECONDS = \"30\" }")
        .ready_timeout("30s");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    master.wait_for_log("cache_items: asking", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let answered = list_time(master.socket(), Duration::from_secs(10));
    assert!(
        answered.is_some_and(|t| t < ANSWER),
        "`list` took {answered:?} (None: no answer within 10 s) while an instance asked for \
         the items of a 16 MB cache namespace\n{}",
        master.log_tail()
    );
}

/// SIGKILL of the master while an instance writes output: the instance's
/// stdout and stderr are pipes whose only reader was the master, so its
/// next write fails with `EPIPE` and `println!` panics — before (or
/// without) the channel watcher pointing them at `/dev/null`
/// (`channel::quiet_orphaned_output` runs once, on the watcher thread,
/// after the channel's EOF, and only redirects a pipe already reporting
/// `POLLERR`: a race the writer wins almost every time). Seen here: 4 of
/// 5 runs of a busy printer (`state-probe --print-loop`, as `user =`)
/// died with status 101 instead of draining.
///
/// Expected: an instance whose master died drains and exits 0 whatever it
/// prints (DESIGN.md: "its output no longer able to kill it").
#[test]
fn an_instance_printing_when_its_master_is_killed_drains_instead_of_dying_of_epipe() {
    let probe = ally_tests::bins::Layout::of_current_exe()
        .profile_dir()
        .join("state-probe");
    let reaper = ally_tests::bins::Layout::of_current_exe()
        .profile_dir()
        .join("subreaper");
    let reaper = reaper.to_str().expect("a UTF-8 path");
    for run in 1..=3 {
        let dir = TestDir::new(&format!("attack_epipe_{run}"));
        let script = write_script(
            dir.path(),
            "printer",
            &format!("exec '{}' --print-loop\n", probe.display()),
        );
        let app = AppConfig::new("printer", &script)
            .ready_timeout("20s")
            .stop_timeout("10s");
        let master = Master::start_wrapped(bins(), &dir, &config_toml(&[app]), &[reaper]);
        let serving = master.wait_for_log("ally-master: pid ", Duration::from_secs(5));
        let master_pid = number_after(&serving, "ally-master: pid ");
        master.wait_for_log("printer#1: ready", Duration::from_secs(20));
        let instance = master.wait_for_log("printer#1: started, pid ", Duration::from_secs(1));
        let instance = number_after(&instance, "started, pid ");
        std::thread::sleep(Duration::from_millis(300));
        signal(master_pid, Signal::KILL).expect("SIGKILL the master");
        let ended = master.wait_for_log(
            &format!("subreaper: pid {instance} "),
            Duration::from_secs(15),
        );
        assert!(
            ended.contains("exited with status 0"),
            "run {run}: the instance did not drain after its master died: {ended}"
        );
    }
}
