//! Shared-state throughput beside its baselines, and the master's memory
//! afterwards: the bench's side, and the probe run under the master.
//!
//! Four stores, measured one after the other, never two at once:
//!
//! 1. ally under a real master: this binary as an app
//!    (`--state-probe OUTFILE CLIENTS`);
//! 2. ally in simulate mode: the same code in this process;
//! 3. the floor: the same loops on `std::sync::Mutex`es in this process;
//! 4. Redis, through `redis-benchmark` (see [`crate::redis`]).
//!
//! All four from one client, kept on one CPU (see [`crate::cpu`]); then
//! all four from 8 clients.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until_every;

use crate::cpu::OneCpu;
use crate::redis::Redis;
use crate::stores::{Ally, Floor};
use crate::table::{Row, rate, ratio};
use crate::throughput::{self, CLIENTS, MEASURE, Op, Sample, find};

/// The probe's app name.
const APP: &str = "state";
/// How long the probe may take to measure and report ready: about 5 s of
/// loops, with room for a slow machine.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the bench looks for the probe's results. Rarely: each look
/// takes CPU from the probe and the master being measured.
const PROBE_POLL: Duration = Duration::from_millis(100);
/// What the probe's error line starts with, in the master's log.
const PROBE_FAILED: &str = "ally-bench --state-probe:";
/// The Go ally's figure, from its README: cache operations per second from
/// one client. Quoted, not measured.
const GO_ALLY_CACHE_OPS: &str = "about 11k";

/// The table rows of the shared-state measurements, and the notes that
/// say what they are.
#[derive(Debug)]
pub struct Shared {
    /// One row per operation and client count, then the master's memory.
    pub rows: Vec<Row>,
    /// Printed under the table.
    pub notes: Vec<String>,
}

/// Every figure of every store.
#[derive(Debug, Default)]
struct Figures {
    managed: Vec<Sample>,
    simulate: Vec<Sample>,
    floor: Vec<Sample>,
    redis: Vec<Sample>,
    /// Why Redis figures are missing, if they are.
    redis_missing: Option<String>,
    /// The master's memory after each client count: (clients, VmRSS KiB,
    /// VmHWM KiB).
    memory: Vec<(usize, Option<u64>, Option<u64>)>,
    /// The CPU the one-client runs were kept on, if they were.
    one_cpu: Option<usize>,
}

/// Measures every store, one at a time, and lays out the results.
pub fn measure() -> Shared {
    let redis = Redis::find();
    let mut f = Figures {
        redis_missing: redis.as_ref().err().cloned(),
        ..Figures::default()
    };
    for clients in CLIENTS {
        measure_from(clients, redis.as_ref().ok(), &mut f);
    }
    if let Some(why) = &f.redis_missing {
        eprintln!("ally-bench: Redis skipped: {why}");
    }
    let mut rows = Vec::new();
    for op in Op::ALL {
        for clients in CLIENTS {
            rows.push(row(op, clients, &f));
        }
    }
    rows.push(Row(
        "ally-master memory, idle after the state runs".into(),
        memory(&f.memory),
    ));
    Shared {
        rows,
        notes: notes(&f, redis.ok()),
    }
}

/// Every store from `clients` clients, into `f`.
fn measure_from(clients: usize, redis: Option<&Redis>, f: &mut Figures) {
    // One client: every process and thread on one CPU (see crate::cpu).
    let pin = if clients == 1 {
        OneCpu::pin().unwrap_or_else(|e| {
            eprintln!("ally-bench: cannot keep the one-client runs on one CPU: {e}");
            None
        })
    } else {
        None
    };
    f.one_cpu = f.one_cpu.or(pin.as_ref().map(OneCpu::cpu));
    let from = format!("from {clients} client{}", plural(clients));
    eprintln!("ally-bench: shared state {from}, under a master...");
    let (samples, rss, hwm) = under_master(clients);
    f.managed.extend(samples);
    f.memory.push((clients, rss, hwm));
    eprintln!("ally-bench: shared state {from}, in simulate mode...");
    let simulate = throughput::measure_all(&Ally, clients);
    f.simulate
        .extend(simulate.unwrap_or_else(|e| panic!("ally in simulate mode: {e}")));
    eprintln!("ally-bench: shared state {from}, on std::sync::Mutex...");
    let floor = throughput::measure_all(&Floor::new(), clients);
    f.floor
        .extend(floor.unwrap_or_else(|e| panic!("the Mutex floor: {e}")));
    if let (Some(redis), None) = (redis, &f.redis_missing) {
        eprintln!("ally-bench: Redis {from}, through redis-benchmark...");
        match redis.measure(clients) {
            Ok(samples) => f.redis.extend(samples),
            Err(why) => f.redis_missing = Some(why),
        }
    }
    drop(pin);
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The row of `op` from `clients` clients: every store's figure, then
/// ally's ratios to Redis and to the floor.
fn row(op: Op, clients: usize, f: &Figures) -> Row {
    let ally = find(&f.managed, op, clients);
    let redis = find(&f.redis, op, clients);
    let floor = find(&f.floor, op, clients);
    let figure = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), rate);
    let quotient = |other: Option<f64>| match (ally, other) {
        (Some(a), Some(b)) if b > 0.0 => ratio(a / b),
        _ => "—".to_owned(),
    };
    let where_ = match f.one_cpu {
        Some(_) if clients == 1 => ", one CPU",
        _ => "",
    };
    Row(
        format!(
            "{}, {clients} client{}{where_} (ops/s)",
            op.label(),
            plural(clients)
        ),
        format!(
            "ally {:>6}  simulate {:>6}  Mutex {:>6}  Redis {:>6}  \
             ally÷Redis {:>5}  ally÷Mutex {:>8}",
            figure(ally),
            figure(find(&f.simulate, op, clients)),
            figure(floor),
            figure(redis),
            quotient(redis),
            quotient(floor),
        ),
    )
}

/// The master's memory after each client count's runs.
fn memory(after: &[(usize, Option<u64>, Option<u64>)]) -> String {
    let mib = |k: Option<u64>| {
        k.map_or_else(
            || "?".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        )
    };
    after
        .iter()
        .map(|&(clients, rss, hwm)| {
            format!(
                "VmRSS {} after {clients} client{} (peak VmHWM {})",
                mib(rss),
                plural(clients),
                mib(hwm)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn notes(f: &Figures, redis: Option<Redis>) -> Vec<String> {
    let mut notes = vec![
        "shared state: each client is a thread looping over one operation; under a master \
         each thread has its own connection (the library's pool), so 8 threads are 8 \
         concurrent clients of the master. All clients share one cache key and one counter; \
         each has its own lock, so lock + unlock is uncontended. lock + unlock is lock() then \
         unlock() of the guard: two round trips to the master."
            .to_owned(),
        "ally: this binary as an app under ally-master (`ally-bench --state-probe`), one \
         master per client count; simulate: the same code in this process, without a master; \
         Mutex: the same loops on std::sync::Mutex<HashMap<String, Vec<u8>>>, \
         Mutex<HashMap<String, i64>> and a Mutex<()> per client in this process — the floor."
            .to_owned(),
    ];
    if let Some(cpu) = f.one_cpu {
        notes.push(format!(
            "one CPU: from 1 client, every process and thread of a measurement (master and \
             probe, redis-server and redis-benchmark, the in-process loops) ran on CPU {cpu}. \
             Across two CPUs each round trip also waits for the other CPU to wake up, which on \
             a small virtual machine can take most of the time and changes the figure up to \
             tenfold with where the scheduler puts the two ends. From 8 clients, all CPUs."
        ));
    }
    notes.push(match (&f.redis_missing, redis) {
        (None, Some(r)) => format!(
            "Redis {}: a redis-server of the bench's own on a unix socket (no persistence), \
             measured by redis-benchmark -s SOCKET -c 1|8 -d 16 -t set|get|incr, each run \
             sized to last about {:.0} s. Pipelining stays 1, the default: one request in \
             flight per client, as with ally — the fair comparison. GET, SET, INCR stand for \
             cache get, cache set, atomic add; Redis has no lock to compare.",
            r.version,
            MEASURE.as_secs_f64()
        ),
        (Some(why), _) => format!("Redis skipped: {}", why.trim_end()),
        (None, None) => "Redis skipped".to_owned(),
    });
    notes.push(format!(
        "Go ally, for reference: {GO_ALLY_CACHE_OPS} cache ops/s from one client (its \
         README); a quoted figure, not measured here."
    ));
    notes
}

/// Runs the probe as an app under a master, its clients `clients`
/// threads: its figures, and the master's `VmRSS` and `VmHWM` (KiB) once
/// the probe is done.
fn under_master(clients: usize) -> (Vec<Sample>, Option<u64>, Option<u64>) {
    let dir = TestDir::new("bench_state");
    let out = dir.path().join("state.txt");
    let exe = std::env::current_exe().expect("own path");
    let mut app = AppConfig::new(APP, &exe).ready_timeout("60s");
    app.command.extend([
        "--state-probe".to_string(),
        out.to_string_lossy().into_owned(),
        clients.to_string(),
    ]);
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    // Not `wait_main` while the probe measures: it runs ally-ctl every few
    // milliseconds, which would compete with the probe and the master.
    let failed = || master.log().contains(PROBE_FAILED);
    let done = wait_until_every(PROBE_POLL, PROBE_TIMEOUT, || out.exists() || failed());
    assert!(
        done && !failed(),
        "the state probe failed or wrote nothing within {PROBE_TIMEOUT:?}\n{}",
        master.log_tail()
    );
    master.wait_main(APP, None, Duration::from_secs(10));
    let status = std::fs::read_to_string(format!("/proc/{}/status", master.pid()));
    let status = status.unwrap_or_default();
    let text = std::fs::read_to_string(&out).expect("the probe's results");
    let samples = throughput::from_text(&text)
        .unwrap_or_else(|e| panic!("the state probe's results: {e}\n{text}"));
    drop(master);
    (
        samples,
        status_kib(&status, "VmRSS"),
        status_kib(&status, "VmHWM"),
    )
}

/// A `Field:   1234 kB` line of `/proc/PID/status`, in KiB.
pub fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// `--state-probe OUTFILE CLIENTS`: measures ally's shared state from
/// inside an instance, from CLIENTS threads at once, writes the figures to
/// OUTFILE, reports ready and waits for the stop signal.
pub fn probe(out: &Path, clients: usize) -> ExitCode {
    match measure_and_write(out, clients) {
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

fn measure_and_write(out: &Path, clients: usize) -> io::Result<ally::StopSignal> {
    let stop = ally::stop_signal()?;
    let samples = throughput::measure_all(&Ally, clients)?;
    // Written whole, then renamed: the bench never reads half a file.
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, throughput::to_text(&samples))?;
    std::fs::rename(&tmp, out)?;
    ally::ready()?;
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tally-master\nVmHWM:\t    4100 kB\nVmRSS:\t    3912 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(3912));
        assert_eq!(status_kib(status, "VmHWM"), Some(4100));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
