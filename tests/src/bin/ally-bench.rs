//! `ally-bench` — what a reload costs, measured on the real binaries.
//!
//! Run with `make bench` (`cargo run --release -p ally-tests --bin
//! ally-bench`). It builds the release binaries, then prints one table:
//!
//! - failed requests per reload under a keep-alive load and under a
//!   `Connection: close` load;
//! - reload latency of the demo: `reload --wait` alone, and from its start
//!   until the old instance has exited;
//! - the cost of `ally::listen_tcp` (a round trip to the master and a
//!   passed fd) against a plain `bind`, measured inside an instance.
//!
//! `ally-bench --listen-probe OUTFILE N` is that instance: run by the master
//! as an app, it times N calls of each, writes the numbers to OUTFILE,
//! reports ready and waits for its stop signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::fixture::{APP, Demo};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::load::Load;
use ally_tests::proc::{alive, wait_until_every};

/// Connections of each load run.
const CONNECTIONS: usize = 32;
/// Reloads during each load run.
const LOAD_RELOADS: u64 = 20;
/// Reloads timed without load.
const TIMED_RELOADS: usize = 20;
/// Calls of each kind in the listen probe.
const PROBE_CALLS: usize = 1000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            bench();
            ExitCode::SUCCESS
        }
        [flag, out, n] if flag == "--listen-probe" => match n.parse() {
            Ok(n) => listen_probe(Path::new(out), n),
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: ally-bench            (measure and print the table)");
    eprintln!("       ally-bench --listen-probe OUTFILE N   (run by the master)");
    ExitCode::from(2)
}

/// One row of the table.
struct Row(String, String);

fn bench() {
    // Build first, so that cargo's output comes before the measurements.
    bins();
    let mut rows = Vec::new();
    for keep_alive in [true, false] {
        rows.push(load_run(keep_alive));
    }
    rows.extend(reload_latency());
    rows.extend(listen_cost());
    println!(
        "\nally-bench: {CONNECTIONS} connections, {LOAD_RELOADS} reloads per load run, \
         {TIMED_RELOADS} timed reloads, {PROBE_CALLS} listen calls\n"
    );
    print_table(&rows);
}

fn load_run(keep_alive: bool) -> Row {
    let mode = if keep_alive {
        "keep-alive"
    } else {
        "Connection: close"
    };
    eprintln!("ally-bench: {LOAD_RELOADS} reloads under a {mode} load...");
    let demo = Demo::start("bench_load");
    // Paced as in the tests: unpaced, 32 connections of loopback traffic
    // keep two cores so busy that a new process can wait seconds for the
    // CPU, and the run measures that starvation instead of ally.
    let load = Load::start(demo.addr, CONNECTIONS, keep_alive);
    assert!(
        load.wait_for_ok(100, Duration::from_secs(20)),
        "the demo does not answer"
    );
    for _ in 0..LOAD_RELOADS {
        demo.master.reload_ok(APP);
    }
    let stats = load.stop();
    if stats.failures() > 0 {
        eprintln!("{stats}");
    }
    Row(
        format!("failed requests per reload, {mode} ({CONNECTIONS} conns)"),
        format!(
            "{} / {LOAD_RELOADS} = {:.2}  ({} ok in {:.1?}, {:.0} req/s, {} failed connects, \
             {} instances)",
            stats.failed_requests,
            stats.failed_requests as f64 / LOAD_RELOADS as f64,
            stats.ok,
            stats.elapsed,
            stats.ok as f64 / stats.elapsed.as_secs_f64(),
            stats.failed_connects,
            stats.instances_seen.len()
        ),
    )
}

fn reload_latency() -> Vec<Row> {
    eprintln!("ally-bench: timing {TIMED_RELOADS} reloads...");
    let demo = Demo::start("bench_latency");
    let master = &demo.master;
    let mut wait_only = Vec::new();
    let mut until_gone = Vec::new();
    for _ in 0..TIMED_RELOADS {
        let old = master.main_of(APP).expect("a main instance");
        let start = Instant::now();
        let out = master.reload_ok(APP);
        wait_only.push(out.elapsed);
        let gone = wait_until_every(Duration::from_micros(200), Duration::from_secs(30), || {
            !alive(old.pid)
        });
        assert!(gone, "old instance never exited");
        until_gone.push(start.elapsed());
    }
    vec![
        Row(
            "reload --wait (new instance main)".into(),
            median_max(&mut wait_only),
        ),
        Row(
            "reload start → old instance exited".into(),
            median_max(&mut until_gone),
        ),
    ]
}

fn median_max(samples: &mut [Duration]) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    format!("median {median:.1?}, max {max:.1?}")
}

fn listen_cost() -> Vec<Row> {
    eprintln!("ally-bench: timing listen_tcp against bind...");
    let dir = TestDir::new("bench_listen");
    let out = dir.path().join("probe.txt");
    let exe = std::env::current_exe().expect("own path");
    let mut app = AppConfig::new("probe", &exe).ready_timeout("60s");
    app.command.extend([
        "--listen-probe".to_string(),
        out.to_string_lossy().into_owned(),
        PROBE_CALLS.to_string(),
    ]);
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    master.wait_main("probe", None, Duration::from_secs(60));
    let text = std::fs::read_to_string(&out).expect("the probe wrote no result");
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the probe's output {text:?}"))
    };
    let (ally_ns, bind_ns) = (field("ally_ns_per_call"), field("bind_ns_per_call"));
    drop(master);
    vec![
        Row(
            "ally::listen_tcp(\"127.0.0.1:0\") per call".into(),
            format!("{:.1} µs", ally_ns / 1000.0),
        ),
        Row(
            "TcpListener::bind(\"127.0.0.1:0\") per call".into(),
            format!("{:.1} µs", bind_ns / 1000.0),
        ),
        Row(
            "listen_tcp / bind".into(),
            format!("{:.1}×", ally_ns / bind_ns),
        ),
    ]
}

fn print_table(rows: &[Row]) {
    let (h0, h1) = ("measurement", "result");
    let w0 = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(h0.len());
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(h1.len());
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
    println!("| {} | {} |", pad(h0, w0), pad(h1, w1));
    println!("|-{}-|-{}-|", "-".repeat(w0), "-".repeat(w1));
    for Row(a, b) in rows {
        println!("| {} | {} |", pad(a, w0), pad(b, w1));
    }
}

/// The instance side of [`listen_cost`].
fn listen_probe(out: &Path, n: usize) -> ExitCode {
    match probe(out, n) {
        Ok(stop) => {
            stop.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ally-bench --listen-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(out: &Path, n: usize) -> std::io::Result<ally::StopSignal> {
    let stop = ally::stop_signal()?;
    // The first call connects to the master; time the steady state.
    drop(ally::listen_tcp("127.0.0.1:0")?);
    let start = Instant::now();
    for _ in 0..n {
        drop(ally::listen_tcp("127.0.0.1:0")?);
    }
    let ally_ns = start.elapsed().as_nanos() as f64 / n as f64;
    let start = Instant::now();
    for _ in 0..n {
        drop(std::net::TcpListener::bind("127.0.0.1:0")?);
    }
    let bind_ns = start.elapsed().as_nanos() as f64 / n as f64;
    let tmp: PathBuf = out.with_extension("tmp");
    std::fs::write(
        &tmp,
        format!("ally_ns_per_call={ally_ns}\nbind_ns_per_call={bind_ns}\n"),
    )?;
    std::fs::rename(&tmp, out)?;
    ally::ready()?;
    Ok(stop)
}
