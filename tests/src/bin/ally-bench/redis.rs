//! The Redis baseline: a `redis-server` of our own on a unix socket, driven
//! by `redis-benchmark`, one operation and client count at a time.
//!
//! `redis-benchmark -c N` keeps one request in flight per client by
//! default (pipelining 1), as ally's clients do: that is the comparison
//! made. GET, SET and INCR correspond to cache get, cache set and atomic
//! add; Redis has no lock to compare with.

use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ally_tests::cmd::{run, tail};
use ally_tests::harness::TestDir;
use ally_tests::proc::{signal, wait_until};
use rustix::process::Signal;

use crate::throughput::{MEASURE, Op, Sample, VALUE};

/// Requests of the short run that estimates the rate, so that the counted
/// run can be sized to last about [`MEASURE`]; it warms the server up too.
const CALIBRATION_REQUESTS: u64 = 3_000;
/// Bounds of the counted run's requests.
const MIN_REQUESTS: u64 = 3_000;
const MAX_REQUESTS: u64 = 5_000_000;
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of one `redis-benchmark` run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The Redis programs, found on `PATH`.
#[derive(Debug)]
pub struct Redis {
    server: PathBuf,
    benchmark: PathBuf,
    /// `redis-server --version`, e.g. `7.0.15`.
    pub version: String,
}

/// The Redis command for `op`, if Redis has one.
pub fn command(op: Op) -> Option<&'static str> {
    match op {
        Op::Get => Some("get"),
        Op::Set => Some("set"),
        Op::Add => Some("incr"),
        Op::Lock => None,
    }
}

impl Redis {
    /// Finds `redis-server` and `redis-benchmark`.
    ///
    /// # Errors
    ///
    /// Which one is not on `PATH`.
    pub fn find() -> Result<Redis, String> {
        let server = on_path("redis-server").ok_or("redis-server is not on PATH")?;
        let benchmark = on_path("redis-benchmark").ok_or("redis-benchmark is not on PATH")?;
        let version = version(&server);
        Ok(Redis {
            server,
            benchmark,
            version,
        })
    }

    /// Starts a server, measures SET, GET and INCR from `clients` clients,
    /// and stops the server.
    ///
    /// # Errors
    ///
    /// Why there are no figures: the server did not start, or a run failed.
    pub fn measure(&self, clients: usize) -> Result<Vec<Sample>, String> {
        let dir = TestDir::new("bench_redis");
        let server = Server::start(&self.server, dir.path())?;
        // SET first: GET then reads the value it left, of VALUE's size.
        let samples = [Op::Set, Op::Get, Op::Add]
            .into_iter()
            .map(|op| {
                let ops_per_s = rate(&self.benchmark, &server.socket, op, clients)?;
                Ok(Sample {
                    op,
                    clients,
                    ops_per_s,
                })
            })
            .collect();
        drop(server);
        samples
    }
}

/// Requests per second of `op` from `clients` clients, over a run sized
/// from a short one to last about [`MEASURE`].
fn rate(exe: &Path, socket: &Path, op: Op, clients: usize) -> Result<f64, String> {
    let estimate = benchmark(exe, socket, op, clients, CALIBRATION_REQUESTS)?;
    let requests = (estimate * MEASURE.as_secs_f64()) as u64;
    benchmark(
        exe,
        socket,
        op,
        clients,
        requests.clamp(MIN_REQUESTS, MAX_REQUESTS),
    )
}

/// One `redis-benchmark` run; its requests per second.
fn benchmark(
    exe: &Path,
    socket: &Path,
    op: Op,
    clients: usize,
    requests: u64,
) -> Result<f64, String> {
    let test = command(op).expect("an operation Redis has");
    let mut cmd = Command::new(exe);
    cmd.arg("-s")
        .arg(socket)
        .args(["-c", &clients.to_string()])
        .args(["-n", &requests.to_string()])
        .args(["-d", &VALUE.len().to_string()])
        .args(["-t", test, "-q", "--csv"]);
    let out = run(&mut cmd, RUN_TIMEOUT);
    if out.code() != Some(0) {
        return Err(format!("redis-benchmark failed\n{out}"));
    }
    parse_csv(&out.stdout, test)
        .ok_or_else(|| format!("no {test} figure in redis-benchmark's output\n{out}"))
}

/// The requests per second of `test` in `redis-benchmark --csv` output:
/// `"SET","86580.09",...`, after a header line in Redis 7 and without one
/// before.
fn parse_csv(text: &str, test: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        let name = fields.next()?;
        if !name.eq_ignore_ascii_case(test) {
            return None;
        }
        fields.next()?.parse().ok()
    })
}

/// The server's version, from `redis-server --version` (`Redis server
/// v=7.0.15 sha=...`); `unknown version` if it does not say.
fn version(exe: &Path) -> String {
    let out = run(Command::new(exe).arg("--version"), RUN_TIMEOUT);
    out.stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map_or_else(|| "unknown version".to_owned(), str::to_owned)
}

/// `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A `redis-server` serving only a unix socket in a directory of ours,
/// saving nothing; stopped on drop, failure or not.
#[derive(Debug)]
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Server {
    fn start(exe: &Path, dir: &Path) -> Result<Server, String> {
        let socket = dir.join("redis.sock");
        let log_path = dir.join("redis.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("redis.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("redis.log: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut server = Server { child, socket };
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            exited = server.child.try_wait().ok().flatten();
            exited.is_some()
                || UnixStream::connect(&server.socket)
                    .and_then(|s| s.shutdown(Shutdown::Both))
                    .is_ok()
        });
        let log = || tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 10);
        match exited {
            Some(status) => Err(format!("redis-server exited with {status}:\n{}", log())),
            None if !up => Err(format!(
                "redis-server did not accept connections within {START_TIMEOUT:?}:\n{}",
                log()
            )),
            None => Ok(server),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = signal(pid, Signal::TERM);
        let exited = wait_until(STOP_TIMEOUT, || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            eprintln!("redis-server {pid} ignored SIGTERM; killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Makes a server receive SIGTERM when the thread that started it dies,
/// so a bench killed without unwinding leaves no server behind.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes the
    // prctl(PR_SET_PDEATHSIG) system call, which is async-signal-safe; it
    // touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM)).map_err(Into::into)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_of_redis_6_and_7_is_read() {
        let v7 = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"86580.09\",\"0.064\"\n\
                  \"GET\",\"80000.00\",\"0.069\"\n";
        assert_eq!(parse_csv(v7, "get"), Some(80_000.0));
        assert_eq!(parse_csv(v7, "set"), Some(86_580.09));
        assert_eq!(
            parse_csv("\"INCR\",\"31387.32\"\n", "incr"),
            Some(31_387.32)
        );
        assert_eq!(parse_csv(v7, "incr"), None);
    }
}
