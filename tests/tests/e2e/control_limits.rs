//! Fair limits on control connections: one uid holding its whole share
//! does not lock root out, a thousand half-sent frames neither grow the
//! master nor stay open, and a frame announced over the control limit is
//! refused at once.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use ally_proto::frame::{self, HEADER_LEN, MAX_CONTROL_FRAME_LEN};
use ally_proto::{ControlRequest, ControlResponse};
use ally_tests::bins::{Layout, bins};
use ally_tests::control::{closed_by, list_answers, welcomed};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::script::{Spawned, write_script};

/// The master's per-uid share of control connections
/// (`CONTROL_SHARE_PER_UID` in `ally-master/src/limits.rs`).
const SHARE: usize = 256;

/// Longest an `ally-ctl list` may take while the master is under attack.
const LIST_LATENCY: Duration = Duration::from_secs(1);

/// The group the master admits in these tests (shared with `trust.rs`).
const GROUP: &str = "ally-e2e-ops";

/// An idle app, so the master has something to run.
fn idle_app(dir: &TestDir) -> AppConfig {
    let script = write_script(dir.path(), "idle", "exec sleep 60\n");
    AppConfig::new("idle", &script).ready_timeout("1h")
}

/// The gid of [`GROUP`], created if need be; `None` (with a printed
/// reason) when a second uid cannot be used here.
fn admitted_group() -> Option<u32> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: switching to a second uid needs root");
        return None;
    }
    if !Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no setpriv (util-linux) to run as another uid");
        return None;
    }
    let gid = || {
        let out = Command::new("getent")
            .args(["group", GROUP])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse::<u32>().ok())
    };
    if gid().is_none() {
        // Another test may create it at the same time: look again after.
        let _ = Command::new("groupadd").args(["--system", GROUP]).status();
    }
    let found = gid();
    if found.is_none() {
        eprintln!("skipped: cannot create group {GROUP}");
    }
    found
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn rss_and_peak_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_uid_holding_its_whole_share_does_not_lock_out_root() {
    const EXTRA: usize = 200;
    let Some(gid) = admitted_group() else { return };
    let dir = TestDir::new("share_flood");
    let config = format!(
        "[master]\ngroup = \"{GROUP}\"\n\n{}",
        config_toml(&[idle_app(&dir)])
    );
    let master = Master::start_with(bins(), &dir, &config);
    for d in [dir.path(), master.socket().parent().unwrap()] {
        std::fs::set_permissions(d, PermissionsExt::from_mode(0o755)).unwrap();
    }
    let flood = Layout::of_current_exe().profile_dir().join("ctl-flood");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", &format!("--groups={gid}")])
        .arg(&flood)
        .arg(master.socket())
        .arg(EXTRA.to_string());
    let started = Instant::now();
    let flooder = Spawned::with_stdout_lines(cmd);
    let (done, lines) = flooder.wait_line("then refused", Duration::from_secs(60));
    let done = done.unwrap_or_else(|| {
        panic!(
            "ctl-flood did not finish within 60s; it printed {lines:?}\n{}",
            master.log_tail()
        )
    });
    let flood_took = started.elapsed();
    let held: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("held "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `held N` line in {lines:?}"));
    let why = lines
        .iter()
        .find_map(|l| l.strip_prefix("refused: "))
        .unwrap_or_default();
    assert_eq!(
        held,
        SHARE,
        "uid 65534 held {held} connections, not its share of {SHARE} (then: {why})\n{}",
        master.log_tail()
    );
    assert!(
        why.contains("LimitExceeded") && why.contains("holds its"),
        "the refusal does not say why: {why}"
    );
    assert_eq!(
        done,
        format!("then refused {EXTRA} of {EXTRA}"),
        "{}",
        master.log_tail()
    );

    // Root still gets in, promptly, again and again.
    let slowest = lists_answer(&master, 5, &format!("while uid 65534 holds {held}"));

    // The refusals are logged once, then summed up, not one line each.
    let summary = master.wait_for_log(
        &format!("{} refused over their uid's share", EXTRA),
        Duration::from_secs(15),
    );
    let lines = master.log().matches("refused connection from").count();
    assert_eq!(
        lines,
        1,
        "{} refusals logged {lines} lines\n{}",
        EXTRA + 1,
        master.log_tail()
    );
    eprintln!(
        "share flood: uid 65534 held {held} connections (flooded in {flood_took:?}), refused \
         {} more; slowest of 5 root `list`s {slowest:?}; log: {summary}",
        EXTRA + 1
    );
    drop(flooder);
}

#[test]
fn a_thousand_unfinished_frames_keep_the_master_small_and_are_closed_in_time() {
    const CONNS: usize = 1000;
    const SENT: usize = 60 << 10;
    // The input budget (16 MiB) plus 1 KiB per connection, over the
    // master's own few MiB; without a budget it would hold ~60 MiB here.
    const MAX_RSS_KIB: u64 = 40 << 10;
    const FRAME_TIMEOUT: Duration = Duration::from_secs(2);
    let dir = TestDir::new("partial_frames");
    let config = format!(
        "[master]\nframe_timeout = \"{}ms\"\n\n{}",
        FRAME_TIMEOUT.as_millis(),
        config_toml(&[idle_app(&dir)])
    );
    let master = Master::start_with(bins(), &dir, &config);
    let (rss_before, _) = rss_and_peak_kib(master.pid());
    let conns: Vec<UnixStream> = (0..CONNS).map(|_| welcomed(&master)).collect();

    // Each announces the largest control frame and sends most of it.
    let mut partial = (MAX_CONTROL_FRAME_LEN as u32).to_le_bytes().to_vec();
    partial.resize(HEADER_LEN + SENT, 0);
    let sent_at = Instant::now();
    for mut s in &conns {
        s.write_all(&partial)
            .expect("the kernel takes 60 KiB unread");
    }
    // An answer to `list` means the master has read every connection as
    // far as it would: they were readable before `list` connected.
    let slowest = lists_answer(&master, 3, &format!("with {CONNS} frames half sent"));
    let (rss, peak) = rss_and_peak_kib(master.pid());
    let measured_after = sent_at.elapsed();
    assert!(
        measured_after < FRAME_TIMEOUT,
        "measuring took {measured_after:?}, longer than the frame timeout: it proves nothing"
    );
    assert!(
        peak < MAX_RSS_KIB,
        "the master's VmHWM reached {peak} KiB (VmRSS {rss} KiB) holding {CONNS} half-sent \
         frames\n{}",
        master.log_tail()
    );

    // Every one of them is closed by the frame timeout.
    let deadline = sent_at + FRAME_TIMEOUT + Duration::from_secs(10);
    let open = conns.iter().filter(|s| !closed_by(s, deadline)).count();
    let closed_after = sent_at.elapsed();
    assert_eq!(
        open,
        0,
        "{open} of {CONNS} unfinished frames still open after {closed_after:?}\n{}",
        master.log_tail()
    );
    assert!(
        closed_after >= FRAME_TIMEOUT,
        "closed after {closed_after:?}, before the frame timeout: by what?\n{}",
        master.log_tail()
    );
    lists_answer(&master, 1, "after the unfinished frames were closed");
    let logged = master.log().matches("is still unfinished").count();
    assert!(
        (1..=2).contains(&logged),
        "{CONNS} frame timeouts logged {logged} lines\n{}",
        master.log_tail()
    );
    eprintln!(
        "partial frames: {CONNS} × {} KiB of {} KiB; master VmRSS {rss_before} KiB before, \
         {rss} KiB with them (peak {peak} KiB); slowest list {slowest:?}; all closed \
         {closed_after:?} after sending (timeout {FRAME_TIMEOUT:?})",
        SENT >> 10,
        MAX_CONTROL_FRAME_LEN >> 10
    );
}

#[test]
fn a_control_frame_over_the_limit_is_refused_at_once() {
    const AT_ONCE: Duration = Duration::from_secs(1);
    let dir = TestDir::new("frame_limit");
    let master = Master::start_with(bins(), &dir, &config_toml(&[idle_app(&dir)]));
    let over = (MAX_CONTROL_FRAME_LEN as u32 + 1).to_le_bytes();

    // After the hello, a request announced one byte over the limit.
    let after_hello = welcomed(&master);
    (&after_hello).write_all(&over).unwrap();
    let sent = Instant::now();
    assert!(
        closed_by(&after_hello, sent + AT_ONCE),
        "a control request announced over the limit was kept open\n{}",
        master.log_tail()
    );
    // As the first frame, in place of the hello: 1 MiB, within the
    // instances' limit but not the control socket's.
    let first = UnixStream::connect(master.socket()).unwrap();
    (&first)
        .write_all(&(ally_proto::frame::MAX_FRAME_LEN as u32).to_le_bytes())
        .unwrap();
    let sent = Instant::now();
    assert!(
        closed_by(&first, sent + AT_ONCE),
        "a first frame announced over the control limit was kept open\n{}",
        master.log_tail()
    );
    master.wait_for_log(
        &format!("exceeds the {MAX_CONTROL_FRAME_LEN}-byte limit"),
        Duration::from_secs(5),
    );
    // A request of exactly the limit is a request like any other.
    let at_limit = welcomed(&master);
    let request = |n: usize| frame::encode(&ControlRequest::Status { app: "x".repeat(n) }).unwrap();
    let mut n = MAX_CONTROL_FRAME_LEN;
    while request(n).len() - HEADER_LEN > MAX_CONTROL_FRAME_LEN {
        n -= 1;
    }
    let bytes = request(n);
    assert_eq!(bytes.len() - HEADER_LEN, MAX_CONTROL_FRAME_LEN);
    (&at_limit).write_all(&bytes).unwrap();
    match frame::read_from::<_, ControlResponse>(&at_limit) {
        Ok(ControlResponse::Error(failure)) => {
            assert!(failure.message.contains("no app named"), "{failure}");
        }
        other => panic!(
            "a request of exactly the limit got {other:?}\n{}",
            master.log_tail()
        ),
    }
    lists_answer(&master, 1, "after the oversized frames");
}

/// Runs `ally-ctl list` `times` times; asserts each answered within
/// [`LIST_LATENCY`] and returns the slowest.
fn lists_answer(master: &Master, times: usize, while_what: &str) -> Duration {
    (0..times)
        .map(|_| list_answers(master, LIST_LATENCY, while_what))
        .max()
        .unwrap_or_default()
}

/// Two hundred control clients that ask for large answers and never read
/// them: together they may hold at most the output budget (64 MiB) of the
/// master's memory, those past it are cut off, and root's `list` is served
/// throughout. Without the budget each could hold 8 MiB.
#[test]
fn clients_that_never_read_their_answers_share_one_output_budget() {
    const CLIENTS: usize = 200;
    const ASKS: usize = 12;
    const MAX_RSS_KIB: u64 = 160 << 10;
    let dir = TestDir::new("control_output_budget");
    // 1000 lines of 200 bytes: each `logs -n 1000` answer is about 250 KiB.
    let script = write_script(
        dir.path(),
        "chatty",
        "i=0; while [ $i -lt 1000 ]; do printf 'line %d %0190d\\n' $i 0 >&2; i=$((i+1)); done\nexec sleep 3600\n",
    );
    let app = AppConfig::new("chatty", &script)
        .ready_timeout("1h")
        .line("ready = \"immediate\"");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    master.wait_for_log("line 999 ", Duration::from_secs(20));
    let ask = frame::encode(&ControlRequest::Logs {
        app: "chatty".into(),
        lines: 1000,
        follow: false,
    })
    .unwrap()
    .repeat(ASKS);
    let (before, _) = rss_and_peak_kib(master.pid());
    let clients: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = welcomed(&master);
            s.write_all(&ask).expect("send the requests");
            s
        })
        .collect();
    lists_answer(&master, 3, &format!("with {CLIENTS} clients not reading"));
    let (_, peak) = rss_and_peak_kib(master.pid());
    let cut = clients
        .iter()
        .filter(|s| closed_by(s, Instant::now() + Duration::from_millis(20)))
        .count();
    eprintln!(
        "output budget: master VmRSS {before} KiB before, peak {peak} KiB with {CLIENTS} \
         clients each owed {ASKS} answers; {cut} cut off"
    );
    assert!(peak < MAX_RSS_KIB, "the master's peak VmRSS was {peak} KiB");
    assert!(cut > 0, "no client was cut off");
}

/// Connections that never say hello are closed after 5 s, as many as
/// come, with one log line for the first and a summary for the rest, not
/// one line each: a local user opening them in a loop cannot flood the
/// master's log.
#[test]
fn connections_without_a_hello_do_not_flood_the_log() {
    const CONNS: usize = 300;
    let dir = TestDir::new("no_hello_flood");
    let master = Master::start_with(bins(), &dir, &config_toml(&[idle_app(&dir)]));
    let conns: Vec<UnixStream> = (0..CONNS)
        .map(|_| UnixStream::connect(master.socket()).expect("connect"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let open = conns.iter().filter(|s| !closed_by(s, deadline)).count();
    assert_eq!(open, 0, "{}", master.log_tail());
    lists_answer(&master, 1, "after the silent connections were closed");
    let lines = master.log().matches("no hello within").count();
    assert!(
        (1..=2).contains(&lines),
        "{CONNS} silent connections logged {lines} lines\n{}",
        master.log_tail()
    );
}
