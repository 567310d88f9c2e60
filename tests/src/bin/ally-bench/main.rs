//! `ally-bench` — what a reload costs, and what shared state can carry,
//! measured on the real binaries.
//!
//! Run with `make bench`: it builds the workspace and runs the
//! `ally-bench` built (not `cargo run -p ally-tests`, which builds it with
//! other dependency features; its own build would then replace the running
//! binary). It builds the release binaries, then prints one table:
//!
//! - failed requests per reload under a keep-alive load and under a
//!   `Connection: close` load, then the same runs against nginx and
//!   HAProxy when installed (see [`proxies`]);
//! - reload latency of the demo: `reload --wait` alone, and from its start
//!   until the old instance has exited;
//! - the cost of `ally::listen_tcp` (a round trip to the master and a
//!   passed fd) against a plain `bind`, measured inside an instance;
//! - shared-state throughput (cache get and set, atomic add, lock and
//!   unlock) from 1 and from 8 clients, under a real master, beside the
//!   same loops in simulate mode, on a `std::sync::Mutex` (the floor) and
//!   on Redis through `redis-benchmark`; then the master's memory;
//! - the async shared-state wrappers (`ally::tokio`) beside the blocking
//!   calls, as a ratio (see [`async_state`]);
//! - the master's memory idle with one app and with 100 apps holding 1,000
//!   listeners, and how often an idle master wakes up (never, it should);
//! - `ally-ctl list` latency with apps flooding their output beside silent
//!   ones, and one app's log throughput beside `cat` (see [`floods`]);
//! - reload latency on a master holding 512 MiB beside one holding none:
//!   spawning copies nothing of the master (see [`spawns`]);
//! - an in-place upgrade of the master beside a reload of an app: until
//!   control answers again, and the slowest request of a keep-alive load
//!   meanwhile (see [`upgrades`]).
//!
//! Measurements run one at a time: the machine may have two cores, and two
//! at once would measure each other.
//!
//! Three hidden modes are the instances those measurements need, run by the
//! master as apps; each writes its numbers to OUTFILE, reports ready and
//! waits for its stop signal:
//!
//! - `ally-bench --listen-probe OUTFILE N` times N calls of `listen_tcp`
//!   and of `bind`;
//! - `ally-bench --state-probe OUTFILE CLIENTS` runs the shared-state
//!   loops from CLIENTS threads;
//! - `ally-bench --async-probe OUTFILE` times async and blocking atomic
//!   adds.

mod async_state;
mod cpu;
mod daemon;
mod floods;
mod footprint;
mod haproxy;
mod listen;
mod nginx;
mod proxies;
mod redis;
mod reload;
mod spawns;
mod state;
mod stores;
mod table;
mod throughput;
mod upgrades;
mod wakeups;

use std::path::Path;
use std::process::ExitCode;

use ally_tests::bins::bins;

use crate::table::{Row, print_table};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            bench();
            ExitCode::SUCCESS
        }
        [flag, out, n] if flag == "--listen-probe" => match n.parse() {
            Ok(n) => listen::probe(Path::new(out), n),
            Err(_) => usage(),
        },
        [flag, out] if flag == "--async-probe" => async_state::probe(Path::new(out)),
        [flag, out, n] if flag == "--state-probe" => match n.parse() {
            Ok(n) if n > 0 => state::probe(Path::new(out), n),
            _ => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: ally-bench            (measure and print the table)");
    eprintln!("       ally-bench --listen-probe OUTFILE N   (run by the master)");
    eprintln!("       ally-bench --state-probe OUTFILE CLIENTS  (run by the master)");
    eprintln!("       ally-bench --async-probe OUTFILE  (run by the master)");
    ExitCode::from(2)
}

fn bench() {
    // Build first, so that cargo's output comes before the measurements.
    bins();
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut ally_loads = Vec::new();
    for keep_alive in [true, false] {
        let (row, stats) = reload::load_run(keep_alive);
        rows.push(row);
        ally_loads.push(stats);
    }
    let versus = proxies::compare([&ally_loads[0], &ally_loads[1]]);
    rows.extend(reload::latency());
    rows.extend(versus.rows);
    notes.extend(versus.notes);
    rows.extend(listen::cost());
    let shared = state::measure();
    rows.extend(shared.rows);
    notes.extend(shared.notes);
    let async_shared = async_state::measure();
    rows.extend(async_shared.rows);
    notes.extend(async_shared.notes);
    for section in [
        footprint::measure(),
        wakeups::measure(),
        floods::measure(),
        spawns::measure(),
        upgrades::measure(),
    ] {
        rows.extend(section.rows);
        notes.extend(section.notes);
    }
    println!(
        "\nally-bench: {} connections, {} reloads per load run, {} timed reloads, \
         {} listen calls; shared state: {}\n",
        reload::CONNECTIONS,
        reload::LOAD_RELOADS,
        reload::TIMED_RELOADS,
        listen::PROBE_CALLS,
        throughput::describe(),
    );
    print_table(&rows);
    println!("\nnotes:");
    for note in &notes {
        println!("- {note}");
    }
}
