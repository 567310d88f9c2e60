//! Each instance's own channel to the master: an app running as another
//! user reaches its master with no socket path or permission, keeps its
//! locks through a stalled master, refuses a fork's use of the library, and
//! drains and exits when the master dies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ally_tests::bins::{Layout, bins};
use ally_tests::fixture::{APP, Demo, free_port, listening_addr};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::{signal, wait_gone};
use ally_tests::reloading::assert_reloads_lose_nothing;
use ally_tests::script::write_script;
use ally_tests::service::Service;
use ally_tests::users::{USER, test_user};
use rustix::process::Signal;

/// The `state-probe` service with `args`, as a script for an app.
fn probe_app(dir: &TestDir, name: &str, args: &str) -> AppConfig {
    let probe = Layout::of_current_exe().profile_dir().join("state-probe");
    let script = write_script(
        dir.path(),
        name,
        &format!("exec '{}' {args}\n", probe.display()),
    );
    AppConfig::new(name, &script).ready_timeout("20s")
}

#[test]
fn an_app_of_another_user_serves_reloads_and_keeps_its_shared_state() {
    let Some((uid, _)) = test_user() else {
        return;
    };
    let demo = Demo::start_with("channel_user", &["--addr", "127.0.0.1:0"], |app| {
        app.line(&format!("user = \"{USER}\""))
    });
    let master = &demo.master;
    let status = master.ctl(&["status", APP]);
    master.assert_exit(&status, 0);
    master.assert_output(
        &status,
        status.stdout.contains(&format!("{USER} (uid {uid})")),
        "status names the user the instance runs as",
    );
    assert_eq!(
        master.instances(APP)[0]["uid"],
        uid,
        "{}",
        master.log_tail()
    );
    const RELOADS: u64 = 20;
    let stats = assert_reloads_lose_nothing(master, APP, demo.addr, 1, RELOADS, 16, true);
    assert_eq!(stats.failures(), 0);
    // Each instance counted its start in the master's shared state, under
    // a lock, and read the note its predecessor left.
    let last = 1 + RELOADS;
    let line = master.wait_for_log(
        &format!("demo: instance {last} pid "),
        Duration::from_secs(10),
    );
    assert!(line.contains("listening on"), "{line}");
    let start = master.wait_for_log(
        &format!(
            "is start {last} of its app (previous: instance {} pid",
            last - 1
        ),
        Duration::from_secs(10),
    );
    assert!(start.contains(&format!("instance {last}")), "{start}");
    assert_eq!(master.instances(APP).last().unwrap()["uid"], uid);
}

#[test]
fn the_control_socket_refuses_an_instance_hello() {
    use ally_proto::{Hello, HelloReply, Role, frame};
    let dir = TestDir::new("channel_control_hello");
    let master = Master::start_with(bins(), &dir, &config_toml(&[probe_app(&dir, "p", "")]));
    let mut stream = std::os::unix::net::UnixStream::connect(master.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    frame::write_to(&stream, &Hello::new(Role::Instance)).expect("send hello");
    match frame::read_from::<_, HelloReply>(&mut stream).expect("a reply") {
        HelloReply::Refused(failure) => {
            assert_eq!(failure.code, ally_proto::ErrorCode::NotPermitted);
            assert!(failure.message.contains("channel"), "{failure}");
        }
        HelloReply::Welcome { .. } => panic!("a stranger was welcomed as an instance"),
    }
}

#[test]
fn a_lock_is_held_through_a_stopped_master_past_the_request_timeout() {
    let dir = TestDir::new("channel_stall");
    let app = probe_app(&dir, "holder", "--hold-through-stall stall-lock")
        .line("request_timeout = \"300ms\"");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    master.wait_for_log("state-probe: holding stall-lock", Duration::from_secs(20));
    signal(master.pid(), Signal::STOP).expect("SIGSTOP the master");
    // Stopped for several request timeouts: the probe's requests time out.
    std::thread::sleep(Duration::from_millis(1500));
    signal(master.pid(), Signal::CONT).expect("SIGCONT the master");
    let timed_out = master.wait_for_log("timed out while the master", Duration::from_secs(20));
    assert!(timed_out.contains("request(s)"), "{timed_out}");
    let line = master.wait_for_log(
        "[holder#1] state-probe: stall-lock",
        Duration::from_secs(20),
    );
    assert!(
        line.contains("stall-lock was held through the stall and released"),
        "{line}\n{}",
        master.log_tail()
    );
}

#[test]
fn a_forked_child_is_refused_and_its_parent_goes_on() {
    let dir = TestDir::new("channel_fork");
    let master = Master::start_with(
        bins(),
        &dir,
        &config_toml(&[probe_app(&dir, "forker", "--fork")]),
    );
    let line = master.wait_for_log("[forker#1] state-probe:", Duration::from_secs(20));
    assert!(
        line.contains("a forked child was refused and the parent went on"),
        "{line}\n{}",
        master.log_tail()
    );
}

/// One request on `conn`; the response head, lowercased.
fn request(conn: &mut BufReader<TcpStream>) -> String {
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("read the response");
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("content length");
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("read the body");
    head
}

fn keep_alive(addr: SocketAddr) -> BufReader<TcpStream> {
    let conn = TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    BufReader::new(conn)
}

/// SIGKILL of the master: its instance sees the channel's end of file at
/// once, drains (the next request on a kept-alive connection is answered
/// with `Connection: close`), and exits 0; a master started again serves on
/// the same port. The master runs under `subreaper`, which the orphan is
/// reparented to, so the test sees its exit status.
#[test]
fn sigkill_of_the_master_makes_its_instances_drain_and_exit_0() {
    let dir = TestDir::new("channel_master_kill");
    let addr = format!("127.0.0.1:{}", free_port());
    let service = Service::new(dir.path(), "service", &bins().demo, &["--addr", &addr]);
    let app = AppConfig::new(APP, service.path())
        .ready_timeout("10s")
        .stop_timeout("10s");
    let config = config_toml(&[app]);
    let reaper = Layout::of_current_exe().profile_dir().join("subreaper");
    let reaper = reaper.to_str().expect("a UTF-8 path");
    let mut first = Master::start_wrapped(bins(), &dir, &config, &[reaper]);
    let orphan = first.wait_main(APP, Some(1), Duration::from_secs(15));
    let addr = listening_addr(&first, orphan.id);
    let serving = first.wait_for_log("ally-master: pid ", Duration::from_secs(5));
    let master_pid: u32 = serving
        .split("ally-master: pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {serving:?}"));
    let mut conn = keep_alive(addr);
    let head = request(&mut conn);
    assert!(!head.contains("connection: close"), "{head}");

    signal(master_pid, Signal::KILL).expect("SIGKILL the master");
    let killed = Instant::now();
    first.wait_for_log(
        &format!("subreaper: pid {master_pid} was killed by signal 9"),
        Duration::from_secs(5),
    );
    // Within 100 ms of the master's death the instance is draining.
    let noticed = killed + Duration::from_millis(100);
    std::thread::sleep(noticed.saturating_duration_since(Instant::now()));
    let head = request(&mut conn);
    assert!(
        head.contains("connection: close"),
        "100 ms after the master died the instance was not draining: {head}\n{}",
        first.log_tail()
    );
    drop(conn);
    first.wait_for_log(
        &format!("subreaper: pid {} exited with status 0", orphan.pid),
        Duration::from_secs(15),
    );
    assert!(wait_gone(orphan.pid, Duration::from_secs(5)));
    first.terminate(Duration::from_secs(5));

    // A master started again binds the port the orphan gave up and serves.
    let master = Master::start_with(bins(), &dir, &config);
    let main = master.wait_main(APP, Some(1), Duration::from_secs(15));
    assert_eq!(listening_addr(&master, main.id), addr);
    let head = request(&mut keep_alive(addr));
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

/// An instance that asks for every connection it can and pipelines large
/// answers on all of them without reading one: it gets the per-instance
/// limit, the master's memory stays bounded, and `ally-ctl` is served.
#[test]
fn a_greedy_instance_gets_its_connection_limit_and_bounded_buffers() {
    const MAX_RSS_KIB: u64 = 120 << 10;
    let dir = TestDir::new("channel_greedy");
    let greedy = Layout::of_current_exe()
        .profile_dir()
        .join("greedy-instance");
    let script = write_script(
        dir.path(),
        "greedy",
        &format!("exec '{}' 6\n", greedy.display()),
    );
    let app = AppConfig::new("greedy", &script).ready_timeout("1h");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let line = master.wait_for_log("greedy-instance: ", Duration::from_secs(20));
    assert!(
        line.contains("greedy-instance: 19 connections, then:")
            && line.contains("the most one instance may have"),
        "{line}\n{}",
        master.log_tail()
    );
    let mut max_rss = 0;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while !master.log().contains("greedy-instance: sent") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            master.log_tail()
        );
        max_rss = max_rss.max(ally_tests::vitals::rss_kib(master.pid()));
        let asked = Instant::now();
        master.assert_exit(&master.ctl(&["list"]), 0);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("greedy instance: master VmRSS at most {max_rss} KiB, slowest list {slowest:?}");
    assert!(
        max_rss < MAX_RSS_KIB,
        "the master's VmRSS reached {max_rss} KiB"
    );
    // A starvation bound, not a latency target: a master that answered a
    // 512 KiB value with a serde call per byte spent 8 to 16 s of a debug
    // build in one turn (every connection's answers), a list waiting.
    assert!(slowest < Duration::from_secs(5), "a list took {slowest:?}");
}
