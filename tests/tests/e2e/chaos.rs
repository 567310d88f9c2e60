//! Chaos: processes killed at the worst moment, and control clients that
//! hoard connections or never read. The master reaps what dies, keeps the
//! main instance serving, and stays answerable and bounded.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ally_proto::{ControlRequest, Hello, HelloReply, Role, frame};
use ally_tests::control::list_answers;
use ally_tests::fixture::{ANY_PORT, APP, Demo, listening_addr};
use ally_tests::harness::Master;
use ally_tests::load::{Load, get_once};
use ally_tests::proc::{alive, signal, socket_inodes, wait_gone, wait_until};
use ally_tests::vitals::{Vitals, open_fds, rss_kib, zombie_children};
use rustix::process::Signal;

/// Longest an `ally-ctl list` may take while the master is under attack:
/// a master the attack blocks does not answer while it lasts, so this
/// tells that from a busy machine (the slowest is printed).
const LIST_LATENCY: Duration = Duration::from_secs(3);

/// Pause between two `ally-ctl list` runs while a client floods the master.
const LIST_PACE: Duration = Duration::from_millis(100);

/// The master's hello timeout (`ally-master/src/limits.rs`).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Asserts the master has no zombie child.
fn assert_no_zombie(master: &Master) {
    let zombies = zombie_children(master.pid());
    assert!(
        zombies.is_empty(),
        "the master left zombie children {zombies:?}\n{}",
        master.log_tail()
    );
}

#[test]
fn sigkill_of_the_new_instance_mid_reload_fails_the_reload_and_keeps_the_old_main() {
    // A long ready timeout: the kill, not the timeout, must end the reload.
    let demo = Demo::start_with("kill_new", &ANY_PORT, |app| app.ready_timeout("60s"));
    let master = &demo.master;
    let load = Load::start(demo.addr, 8, true);
    assert!(load.wait_for_ok(50, Duration::from_secs(20)));

    demo.set_flags(&[ANY_PORT[0], ANY_PORT[1], "--never-ready"]);
    let new_id = demo.first.id + 1;
    let (out, killed) = std::thread::scope(|s| {
        let reload = s.spawn(|| master.ctl(&["reload", APP, "--wait", "--timeout", "60"]));
        let mut starting = None;
        wait_until(Duration::from_secs(20), || {
            starting = master
                .instances(APP)
                .iter()
                .find(|i| i["state"] == "starting")
                .and_then(|i| u32::try_from(i["pid"].as_u64()?).ok());
            starting.is_some() || reload.is_finished()
        });
        if let Some(pid) = starting {
            // Well into its start: it got its socket from the master.
            listening_addr(master, new_id);
            signal(pid, Signal::KILL).expect("SIGKILL the starting instance");
        }
        (reload.join().expect("reload thread"), starting)
    });
    let killed = killed.unwrap_or_else(|| {
        panic!(
            "never saw the new instance listed as starting\n{out}\n{}",
            master.log_tail()
        )
    });
    master.assert_exit(&out, 1);
    master.assert_output(
        &out,
        out.stderr.contains("SIGKILL") && out.stderr.contains(&format!("instance {new_id}")),
        "the failed reload should name the instance and the SIGKILL",
    );
    master.assert_output(
        &out,
        out.elapsed < Duration::from_secs(30),
        "the reload ended by the kill, long before the ready timeout",
    );
    assert!(wait_gone(killed, Duration::from_secs(5)));
    assert!(
        wait_until(Duration::from_secs(5), || master.instances(APP).len() == 1),
        "the killed instance is still listed: {:?}",
        master.instances(APP)
    );
    assert_eq!(master.main_of(APP), Some(demo.first), "the old main stays");
    assert_no_zombie(master);
    let before = load.ok();
    assert!(load.wait_for_ok(before + 50, Duration::from_secs(20)));

    // The next reload, of a version that gets ready, succeeds.
    demo.set_flags(&ANY_PORT);
    master.reload_ok(APP);
    let main = master.wait_main(APP, Some(new_id + 1), Duration::from_secs(5));
    assert!(wait_gone(demo.first.pid, Duration::from_secs(15)));
    let before = load.ok();
    assert!(load.wait_for_ok(before + 50, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    assert_eq!(stats.failures(), 0, "{stats}\n{}", master.log_tail());
    assert!(
        !stats.instances_seen.contains_key(&new_id),
        "the killed instance answered requests: {stats}"
    );
    assert!(
        stats.instances_seen.contains_key(&main.id),
        "the new main took no traffic: {stats}"
    );
}

#[test]
fn sigkill_of_a_draining_instance_is_reaped_and_the_new_main_is_unaffected() {
    // Every request to the first instance takes 20 s: it drains slowly.
    let demo = Demo::start_with(
        "kill_draining",
        &[ANY_PORT[0], ANY_PORT[1], "--delay-ms", "20000"],
        |app| app.stop_timeout("60s"),
    );
    let master = &demo.master;
    let old = demo.first;

    // Three requests in flight at the first instance.
    const IN_FLIGHT: usize = 3;
    let sockets_before = socket_inodes(old.pid).len();
    let addr = demo.addr;
    let in_flight: Vec<_> = (0..IN_FLIGHT)
        .map(|_| std::thread::spawn(move || get_once(addr, Duration::from_secs(40))))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || socket_inodes(old.pid).len()
            >= sockets_before + IN_FLIGHT),
        "the first instance did not accept the requests\n{}",
        master.log_tail()
    );

    demo.set_flags(&ANY_PORT);
    master.reload_ok(APP);
    let main = master.wait_main(APP, Some(old.id + 1), Duration::from_secs(5));
    master.wait_for_log(
        &format!(
            "instance {} pid {} stopping: draining {IN_FLIGHT} connections",
            old.id, old.pid
        ),
        Duration::from_secs(10),
    );
    let listed = master.instances(APP);
    assert!(
        listed
            .iter()
            .any(|i| i["id"] == old.id && i["state"] == "draining"),
        "the old instance should be draining: {listed:?}"
    );

    // The old instance no longer accepts: all of this load goes to the new main.
    let load = Load::start(demo.addr, 8, true);
    assert!(load.wait_for_ok(50, Duration::from_secs(20)));
    signal(old.pid, Signal::KILL).expect("SIGKILL the draining instance");
    assert!(
        wait_until(Duration::from_secs(5), || !master
            .instances(APP)
            .iter()
            .any(|i| i["id"] == old.id)),
        "the killed instance is still listed: {:?}\n{}",
        master.instances(APP),
        master.log_tail()
    );
    master.wait_for_log(
        &format!("{APP}#{}: was killed by SIGKILL", old.id),
        Duration::from_secs(5),
    );
    assert!(!alive(old.pid));
    assert!(
        !Path::new(&format!("/proc/{}", old.pid)).exists(),
        "the killed instance {} was not reaped",
        old.pid
    );
    assert_no_zombie(master);
    for (n, request) in in_flight.into_iter().enumerate() {
        let result = request.join().expect("request thread");
        assert!(
            result.is_err(),
            "in-flight request {n} was answered by an instance killed mid-request: {result:?}"
        );
    }

    let before = load.ok();
    assert!(load.wait_for_ok(before + 100, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    assert_eq!(stats.failures(), 0, "{stats}\n{}", master.log_tail());
    assert_eq!(
        stats.instances_seen.keys().collect::<Vec<_>>(),
        [&main.id],
        "only the new main may have answered"
    );
    assert_eq!(
        master.main_of(APP),
        Some(main),
        "the new main is unaffected"
    );
    assert_eq!(master.instances(APP).len(), 1);
}

/// Raises this process's soft limit on open files to its hard limit; `None`
/// (and a message) when the hard limit is below `need`.
fn raise_nofile(need: u64) -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < need {
        eprintln!("skipped: the hard limit on open files is {hard}, below {need}");
        return None;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE to the hard limit");
    Some(hard)
}

/// Opens `n` connections to the control socket that say nothing.
fn idle_connections(socket: &Path, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|i| {
            UnixStream::connect(socket)
                .unwrap_or_else(|e| panic!("idle connection {i} to the control socket: {e}"))
        })
        .collect()
}

/// Waits until the master's fd count is back within `slack` of `baseline`.
fn fds_back_to(master: &Master, baseline: usize, slack: usize, timeout: Duration) -> usize {
    let mut now = 0;
    let back = wait_until(timeout, || {
        now = open_fds(master.pid());
        now <= baseline + slack
    });
    assert!(
        back,
        "the master holds {now} fds {timeout:?} later, its baseline is {baseline}\n{}",
        master.log_tail()
    );
    now
}

#[test]
fn a_thousand_idle_control_connections_neither_block_the_master_nor_leak_fds() {
    const IDLE: usize = 1000;
    const SLACK: usize = 3;
    if raise_nofile(1100).is_none() {
        return;
    }
    let demo = Demo::start("idle_flood");
    let master = &demo.master;
    let baseline = Vitals::settled(master.pid(), Duration::from_secs(5)).fds;

    // Round 1: the hello timeout closes them.
    let opened = Instant::now();
    let mut idle = idle_connections(master.socket(), IDLE);
    let mut peak = 0;
    assert!(
        wait_until(HELLO_TIMEOUT, || {
            peak = open_fds(master.pid());
            peak >= baseline + IDLE
        }),
        "the master accepted only {} of {IDLE} connections in {:?} (baseline {baseline} fds)\n{}",
        peak.saturating_sub(baseline),
        opened.elapsed(),
        master.log_tail()
    );
    let accepted_in = opened.elapsed();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        slowest = slowest.max(list_answers(
            master,
            LIST_LATENCY,
            &format!("with {IDLE} idle connections open"),
        ));
    }
    master.reload_ok(APP);
    let new = master.wait_main(APP, Some(demo.first.id + 1), Duration::from_secs(5));
    assert!(wait_gone(demo.first.pid, Duration::from_secs(15)));
    // The master closes every one of them for saying nothing.
    let deadline = opened + HELLO_TIMEOUT + Duration::from_secs(10);
    for (i, s) in idle.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut byte = [0u8; 1];
        // A timed read reports `EINTR` for any signal, even an ignored
        // `SIGCHLD` from a child another test spawned.
        let read = loop {
            match s.read(&mut byte) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match read {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!(
                "idle connection {i} was not closed by the master ({other:?}) {:?} after it \
                 was opened\n{}",
                opened.elapsed(),
                master.log_tail()
            ),
        }
    }
    let closed_after = opened.elapsed();
    let after_timeout = fds_back_to(master, baseline, SLACK, Duration::from_secs(5));
    // The log reaches master.log through a pipe and a thread: poll it.
    // The first timeout is logged in full, the rest are counted in the
    // summary lines that follow (one each interval), not one line each.
    let mut timeouts = 0;
    let logged = wait_until(Duration::from_secs(15), || {
        timeouts = hello_timeouts_logged(&master.log());
        timeouts >= IDLE
    });
    assert!(
        logged,
        "the log counts {timeouts} hello timeouts, expected {IDLE}\n{}",
        master.log_tail()
    );
    let lines = master.log().matches("no hello").count();
    assert!(lines <= 3, "{IDLE} hello timeouts took {lines} log lines");
    drop(idle);

    // Round 2: the client closes them itself, long before the hello timeout.
    let opened = Instant::now();
    let idle = idle_connections(master.socket(), IDLE);
    assert!(
        wait_until(HELLO_TIMEOUT, || open_fds(master.pid()) >= baseline + IDLE),
        "the master did not accept {IDLE} connections again\n{}",
        master.log_tail()
    );
    slowest = slowest.max(list_answers(
        master,
        LIST_LATENCY,
        "with the second round open",
    ));
    drop(idle);
    let closed = Instant::now();
    let after_close = fds_back_to(master, baseline, SLACK, HELLO_TIMEOUT);
    let freed_in = closed.elapsed();
    assert!(
        opened.elapsed() < HELLO_TIMEOUT,
        "the fds were freed {:?} after the connections opened: the hello timeout may have \
         freed them, not the close; the test proves nothing",
        opened.elapsed()
    );
    slowest = slowest.max(list_answers(master, LIST_LATENCY, "after the flood"));
    eprintln!(
        "idle flood: baseline {baseline} fds, {peak} with {IDLE} open (accepted in \
         {accepted_in:?}); closed by the hello timeout after {closed_after:?}, then \
         {after_timeout} fds; closed by the client: {after_close} fds after {freed_in:?}; \
         slowest list {slowest:?}"
    );
    assert_eq!(master.main_of(APP), Some(new));
}

#[test]
fn a_control_client_that_never_reads_is_cut_off_and_the_master_stays_small() {
    const MAX_RSS_KIB: u64 = 64 << 10;
    let demo = Demo::start("slow_reader");
    let master = &demo.master;
    let rss_before = rss_kib(master.pid());

    let stream = UnixStream::connect(master.socket()).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Each write waits at most 1 s, so the writer looks at the clock.
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    frame::write_to(&stream, &Hello::new(Role::Control)).unwrap();
    let reply: HelloReply = frame::read_from(&stream).expect("hello reply");
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");

    // 64 KiB of pipelined `List` requests per write; the replies are never
    // read. A write that finds the socket full waits for the master to
    // read on (a debug master under load takes tens of seconds to queue
    // the replies it is cut off at); the bound is for a master that never
    // cuts it.
    let one = frame::encode(&ControlRequest::List).unwrap();
    let chunk: Vec<u8> = one.repeat((64 << 10) / one.len());
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut sent = 0usize;
        let mut stream = stream;
        let error = loop {
            if started.elapsed() > Duration::from_secs(90) {
                break None;
            }
            let at = sent % chunk.len();
            match stream.write(&chunk[at..]) {
                Ok(n) => sent += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => break Some(e),
            }
        };
        (sent / one.len(), error, started.elapsed())
    });

    let mut lists = 0;
    let mut slowest = Duration::ZERO;
    let mut max_rss = rss_before;
    while !writer.is_finished() || lists < 3 {
        max_rss = max_rss.max(rss_kib(master.pid()));
        slowest = slowest.max(list_answers(
            master,
            LIST_LATENCY,
            "while a client floods it with requests",
        ));
        lists += 1;
        max_rss = max_rss.max(rss_kib(master.pid()));
        assert!(
            max_rss < MAX_RSS_KIB,
            "the master's VmRSS reached {max_rss} KiB\n{}",
            master.log_tail()
        );
        // Pacing, not a wait: leaves the master the cores to do its work.
        std::thread::sleep(LIST_PACE);
    }
    let (requests, error, cut_after) = writer.join().expect("writer thread");
    let error = error.unwrap_or_else(|| {
        panic!(
            "the master still took requests from a client that reads nothing after \
             {cut_after:?} ({requests} requests)\n{}",
            master.log_tail()
        )
    });
    assert!(
        matches!(
            error.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "the flood ended with {error}, not with the master closing the connection\n{}",
        master.log_tail()
    );
    master.wait_for_log("it does not read its replies", Duration::from_secs(5));
    slowest = slowest.max(list_answers(master, LIST_LATENCY, "after the flood"));
    let rss_after = rss_kib(master.pid());
    eprintln!(
        "slow reader: cut off after {requests} requests in {cut_after:?}; {lists} lists meanwhile, \
         slowest {slowest:?}; master VmRSS {rss_before} KiB before, max {max_rss} KiB, \
         {rss_after} KiB after"
    );
    assert!(rss_after < MAX_RSS_KIB);
    assert_eq!(master.main_of(APP), Some(demo.first));
}

/// How many hello timeouts `log` accounts for: each line naming one, plus
/// the counts in the summaries (`... N closed with no hello in time`).
fn hello_timeouts_logged(log: &str) -> usize {
    let named = log.matches("no hello within").count();
    let counted: usize = log
        .split(" closed with no hello in time")
        .filter_map(|before| before.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    named + counted
}
