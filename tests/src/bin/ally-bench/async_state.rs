//! The async shared-state wrappers beside the blocking calls they wrap:
//! what `ally::tokio`'s `spawn_blocking` hand-off costs per call.
//!
//! One task (or thread) loops over `atomic(..).add(1)`, first blocking, then
//! through `ally::tokio::atomic(..).add(1).await` on a multi-threaded
//! runtime, each for [`MEASURE`], after a [`WARM_UP`]; under a master
//! (this binary as an app, `--async-probe OUTFILE`) and in simulate mode in
//! this process. The figure that matters is the ratio, measured in the
//! same run: how much of the blocking rate the async call keeps.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until_every;

use crate::table::{Row, Section, rate, ratio};
use crate::throughput::{MEASURE, WARM_UP};

/// The probe's app name.
const APP: &str = "async-state";
/// The counter both loops add to.
const COUNTER: &str = "counter:async-bench";
/// How long the probe may take: two measurements of about 1 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the bench looks for the probe's results.
const PROBE_POLL: Duration = Duration::from_millis(100);
/// What the probe's error line starts with, in the master's log.
const PROBE_FAILED: &str = "ally-bench --async-probe:";

/// Calls per second, blocking and async.
#[derive(Debug, Clone, Copy)]
struct Rates {
    blocking: f64,
    async_: f64,
}

/// The rows: under a master, and in simulate mode.
pub fn measure() -> Section {
    eprintln!("ally-bench: async shared state, under a master...");
    let managed = under_master();
    eprintln!("ally-bench: async shared state, in simulate mode...");
    let simulate = rates().unwrap_or_else(|e| panic!("async shared state in simulate mode: {e}"));
    let row = |where_: &str, r: Rates| {
        Row(
            format!("atomic add from async code, 1 task, {where_} (ops/s)"),
            format!(
                "async {:>6}  blocking {:>6}  async÷blocking {:>6}",
                rate(r.async_),
                rate(r.blocking),
                ratio(r.async_ / r.blocking)
            ),
        )
    };
    Section {
        rows: vec![row("under a master", managed), row("simulate", simulate)],
        notes: vec![
            "async shared state: ally::tokio::atomic(..).add(1).await (the blocking call run \
             by tokio::task::spawn_blocking, on a multi-threaded runtime) against \
             ally::atomic(..).add(1) called directly, one caller, one after the other in the \
             same process; all CPUs. Under a master the round trip dominates and the hand-off \
             costs little; in simulate mode the call itself is a Mutex and the hand-off is all \
             there is."
                .to_owned(),
        ],
    }
}

/// Both rates, measured in this process.
fn rates() -> io::Result<Rates> {
    let blocking_counter = ally::atomic(COUNTER);
    let blocking = per_second(|| blocking_counter.add(1).map(drop))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let async_ = runtime.block_on(async {
        let counter = ally::tokio::atomic(COUNTER);
        let mut calls = 0u64;
        let start = Instant::now();
        let mut measuring = None;
        loop {
            counter.add(1).await?;
            calls += 1;
            match measuring {
                None if start.elapsed() >= WARM_UP => measuring = Some((Instant::now(), calls)),
                Some((from, at)) if from.elapsed() >= MEASURE => {
                    return Ok::<_, io::Error>((calls - at) as f64 / from.elapsed().as_secs_f64());
                }
                _ => {}
            }
        }
    })?;
    Ok(Rates { blocking, async_ })
}

/// Calls of `call` per second over [`MEASURE`], after [`WARM_UP`].
fn per_second(mut call: impl FnMut() -> io::Result<()>) -> io::Result<f64> {
    let start = Instant::now();
    while start.elapsed() < WARM_UP {
        call()?;
    }
    let (from, mut calls) = (Instant::now(), 0u64);
    while from.elapsed() < MEASURE {
        call()?;
        calls += 1;
    }
    Ok(calls as f64 / from.elapsed().as_secs_f64())
}

/// Runs the probe under a master: its two rates.
fn under_master() -> Rates {
    let dir = TestDir::new("bench_async_state");
    let out = dir.path().join("async.txt");
    let exe = std::env::current_exe().expect("own path");
    let mut app = AppConfig::new(APP, &exe).ready_timeout("60s");
    app.command.extend([
        "--async-probe".to_string(),
        out.to_string_lossy().into_owned(),
    ]);
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let failed = || master.log().contains(PROBE_FAILED);
    let done = wait_until_every(PROBE_POLL, PROBE_TIMEOUT, || out.exists() || failed());
    assert!(
        done && !failed(),
        "the async state probe failed or wrote nothing within {PROBE_TIMEOUT:?}\n{}",
        master.log_tail()
    );
    let text = std::fs::read_to_string(&out).expect("the probe's results");
    let figure = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no `{name}` figure in the probe's results:\n{text}"))
    };
    Rates {
        blocking: figure("blocking "),
        async_: figure("async "),
    }
}

/// `--async-probe OUTFILE`: measures both rates from inside an instance,
/// writes them to OUTFILE, reports ready and waits for the stop signal.
pub fn probe(out: &Path) -> ExitCode {
    let run = || -> io::Result<ally::StopSignal> {
        let stop = ally::stop_signal()?;
        let r = rates()?;
        let tmp = out.with_extension("tmp");
        std::fs::write(
            &tmp,
            format!("blocking {}\nasync {}\n", r.blocking, r.async_),
        )?;
        std::fs::rename(&tmp, out)?;
        ally::ready()?;
        Ok(stop)
    };
    match run() {
        Ok(stop) => {
            stop.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{PROBE_FAILED} {e}");
            ExitCode::FAILURE
        }
    }
}
