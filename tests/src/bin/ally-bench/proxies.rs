//! ally beside nginx and HAProxy: the same load, the same number of
//! reloads, the same pacing, and the failed requests of each.
//!
//! Each server answers `GET /` with a 200 and an `X-Ally-Instance` header
//! naming the worker's pid, so the strict load client of the ally rows
//! ([`Load`]) reads its responses unchanged. A run starts a fresh server,
//! puts [`CONNECTIONS`] connections on it, reloads it [`LOAD_RELOADS`]
//! times back to back — each reload waited for until a new worker serves,
//! as `ally-ctl reload --wait` waits for the new instance — then stops the
//! load and the server.

use std::net::SocketAddr;
use std::time::Duration;

use ally_tests::load::{Load, LoadStats};

use crate::daemon::find_program;
use crate::haproxy::Haproxy;
use crate::nginx::Nginx;
use crate::reload::{CONNECTIONS, LOAD_RELOADS};
use crate::table::{Row, Section};

/// How long a server may take to answer its first 100 requests.
const FIRST_ANSWERS: Duration = Duration::from_secs(20);

/// A server that can be reloaded under load; stopped, with every process
/// it started, on drop.
pub trait Proxy {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;
    /// Reloads it and returns once a new worker serves.
    ///
    /// # Errors
    ///
    /// What went wrong, with the server's log.
    fn reload(&mut self) -> Result<(), String>;
}

/// The two ally load runs (keep-alive, then `Connection: close`) beside
/// the same runs against nginx and HAProxy, measured here one at a time.
pub fn compare(ally: [&LoadStats; 2]) -> Section {
    let mut notes = Vec::new();
    let ally = Ok([ally[0].clone(), ally[1].clone()]);
    let mut rows = vec![row("ally", "instances", ally, &mut notes)];
    notes.push(format!(
        "reloads under load: {CONNECTIONS} connections of the bench's strict HTTP/1.1 client \
         (a request counts as failed unless a complete 200 arrives; nothing is retried), \
         {LOAD_RELOADS} reloads back to back per run, each waited for until the new instance \
         (ally: `ally-ctl reload --wait`) or worker serves; a fresh server per run, measured \
         one after the other. Failed requests are scaled to 100 reloads; ok totals \
         differ because a run lasts as long as its reloads take."
    ));
    match find_program("nginx") {
        Some(exe) => {
            let version = Nginx::version(&exe);
            let server = format!("nginx {version}");
            let result = runs(&server, || Nginx::start(&exe));
            rows.push(row(&server, "workers", result, &mut notes));
            notes.push(format!(
                "nginx {version}: `nginx -c CONF -p PREFIX`, daemon on, master_process on, \
                 worker_processes 1, keepalive_timeout 65s, `return 200 \"ok\\n\"`; reloaded \
                 with `nginx -s reload`, done when a new worker process exists."
            ));
        }
        None => rows.push(skipped("nginx", "nginx is not installed", &mut notes)),
    }
    match find_program("haproxy") {
        Some(exe) => {
            let version = Haproxy::version(&exe);
            let server = format!("HAProxy {version}");
            let result = runs(&server, || Haproxy::start(&exe));
            rows.push(row(&server, "workers", result, &mut notes));
            notes.push(format!(
                "HAProxy {version}: master-worker (`haproxy -W -f CFG`), nbthread 1, \
                 `http-request return status 200`, timeout http-keep-alive 65s; reloaded with \
                 SIGUSR2 to the master, done when a new worker exists and the re-executed \
                 master handles SIGUSR2 again."
            ));
        }
        None => rows.push(skipped("HAProxy", "haproxy is not installed", &mut notes)),
    }
    Section { rows, notes }
}

/// A keep-alive run, then a `Connection: close` run, each on a fresh
/// server from `start`.
fn runs<P: Proxy>(
    name: &str,
    start: impl Fn() -> Result<P, String>,
) -> Result<[LoadStats; 2], String> {
    Ok([run(name, &start, true)?, run(name, &start, false)?])
}

fn run<P: Proxy>(
    name: &str,
    start: impl Fn() -> Result<P, String>,
    keep_alive: bool,
) -> Result<LoadStats, String> {
    let mode = if keep_alive {
        "keep-alive"
    } else {
        "Connection: close"
    };
    eprintln!("ally-bench: {LOAD_RELOADS} reloads of {name} under a {mode} load...");
    let mut server = start()?;
    let load = Load::start(server.addr(), CONNECTIONS, keep_alive);
    if !load.wait_for_ok(100, FIRST_ANSWERS) {
        return Err(format!(
            "it did not answer within {FIRST_ANSWERS:?}\n{}",
            load.stop()
        ));
    }
    for _ in 0..LOAD_RELOADS {
        server.reload()?;
    }
    let stats = load.stop();
    drop(server);
    if stats.failures() > 0 {
        eprintln!("{name}, {mode}: {stats}");
    }
    Ok(stats)
}

/// The row of `server`: failed requests per 100 reloads, then the ok
/// totals, the runs' durations and how many `processes` answered.
/// A skipped server's reason goes to `notes` too.
fn row(
    server: &str,
    processes: &str,
    runs: Result<[LoadStats; 2], String>,
    notes: &mut Vec<String>,
) -> Row {
    let [ka, close] = match runs {
        Ok(runs) => runs,
        Err(why) => {
            eprintln!("ally-bench: {server} skipped: {why}");
            let first = why.lines().next().unwrap_or_default();
            return skipped(server, first, notes);
        }
    };
    let per_100 = |s: &LoadStats| s.failed_requests as f64 * 100.0 / LOAD_RELOADS as f64;
    let connects = ka.failed_connects + close.failed_connects;
    Row(
        format!("{server}: failed requests per 100 reloads, keep-alive; close"),
        format!(
            "{:>5.0}; {:.0}  (ok {}; {} in {:.1?}; {:.1?}, {}; {} {processes}{})",
            per_100(&ka),
            per_100(&close),
            ka.ok,
            close.ok,
            ka.elapsed,
            close.elapsed,
            ka.instances_seen.len(),
            close.instances_seen.len(),
            if connects > 0 {
                format!("; {connects} failed connects")
            } else {
                String::new()
            }
        ),
    )
}

fn skipped(server: &str, why: &str, notes: &mut Vec<String>) -> Row {
    notes.push(format!("{server} skipped: {why}"));
    Row(
        format!("{server}: failed requests per 100 reloads, keep-alive; close"),
        format!("skipped: {why}"),
    )
}
