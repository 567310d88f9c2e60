//! What `ally::listen_tcp` costs against a plain `bind`, measured inside an
//! instance: both sides, the bench's and the probe's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};

use crate::table::Row;

/// Calls of each kind in the listen probe.
pub const PROBE_CALLS: usize = 1000;

/// Runs the probe as an app under a master and reports its numbers.
pub fn cost() -> Vec<Row> {
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

/// `--listen-probe OUTFILE N`: the instance side of [`cost`].
pub fn probe(out: &Path, n: usize) -> ExitCode {
    match time_calls(out, n) {
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

fn time_calls(out: &Path, n: usize) -> std::io::Result<ally::StopSignal> {
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
