//! An HTTP/1.1 load client that counts every failure and retries nothing.
//!
//! Each of `connections` threads sends `GET /` over a blocking
//! [`TcpStream`], one request at a time, and reads one complete response:
//! status line, headers, then exactly `Content-Length` bytes of body. A
//! request counts as *ok* only if all of that arrived and the status is 200;
//! anything else — a reset, an early close, a short body, a timeout, another
//! status — is a *failed request*, its error recorded, and the connection
//! is dropped. A failed `connect` is a *failed connect*. Nothing is retried.
//!
//! With keep-alive the connection is reused until the server answers with
//! `Connection: close`; without, every request says `Connection: close` and
//! gets a fresh connection. This is exactly the client that notices a server
//! which closes an idle keep-alive connection under it during a drain.
//!
//! Targets must be loopback addresses, and a load stops by itself after
//! [`LoadOptions::max_duration`] even if [`Load::stop`] is never called.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::stamp;
use crate::proc::{POLL, wait_until};

/// How many errors each connection keeps, and the stats report at most.
pub(crate) const MAX_ERRORS: usize = 20;

/// The [`MAX_ERRORS`] earliest of errors gathered from several workers,
/// each line starting with its [`stamp`], in time order.
pub(crate) fn keep_first_errors(errors: &mut Vec<String>) {
    let at = |s: &String| {
        s.split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
    };
    errors.sort_by(|a, b| {
        at(a)
            .partial_cmp(&at(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    errors.truncate(MAX_ERRORS);
}

/// Largest header section or body accepted, so a broken server cannot make
/// the client buffer without bound.
const MAX_RESPONSE_PART: usize = 64 * 1024;

/// The default [`LoadOptions::pause`]: with 32 connections, at most some
/// thousands of requests a second, which two cores serve with room to
/// spare.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(2);

/// Settings of a [`Load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Number of concurrent connections (one thread each).
    pub connections: usize,
    /// Reuse connections (HTTP/1.1 keep-alive) or send `Connection: close`.
    pub keep_alive: bool,
    /// A response slower than this fails (also the connect timeout).
    pub timeout: Duration,
    /// The load stops by itself after this long.
    pub max_duration: Duration,
    /// Pause between two requests of one connection. Not a wait for
    /// anything: it paces the load so that it leaves the machine room to
    /// start processes, and it leaves keep-alive connections idle between
    /// requests, which is when a careless drain closes them.
    pub pause: Duration,
}

impl LoadOptions {
    /// `connections` connections, with or without keep-alive; 10 s timeout,
    /// [`DEFAULT_PAUSE`] between requests, stops by itself after 5 minutes.
    pub fn new(connections: usize, keep_alive: bool) -> LoadOptions {
        LoadOptions {
            connections,
            keep_alive,
            timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(300),
            pause: DEFAULT_PAUSE,
        }
    }
}

/// What a load saw, summed over its connections.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Requests answered completely with 200.
    pub ok: u64,
    /// Requests that did not get a complete 200 response.
    pub failed_requests: u64,
    /// `connect` calls that failed.
    pub failed_connects: u64,
    /// Connections established.
    pub connects: u64,
    /// Responses per instance id (`X-Ally-Instance`).
    pub instances_seen: BTreeMap<u64, u64>,
    /// The earliest errors, each stamped with [`clock::stamp`](crate::clock::stamp)
    /// (the master's log uses the same clock).
    pub first_errors: Vec<String>,
    /// The slowest ok request.
    pub max_latency: Duration,
    /// How long the load ran.
    pub elapsed: Duration,
}

impl LoadStats {
    /// Failed requests plus failed connects.
    pub fn failures(&self) -> u64 {
        self.failed_requests + self.failed_connects
    }

    fn merge(&mut self, other: LoadStats) {
        self.ok += other.ok;
        self.failed_requests += other.failed_requests;
        self.failed_connects += other.failed_connects;
        self.connects += other.connects;
        for (id, n) in other.instances_seen {
            *self.instances_seen.entry(id).or_default() += n;
        }
        self.first_errors.extend(other.first_errors);
        self.max_latency = self.max_latency.max(other.max_latency);
    }
}

impl fmt::Display for LoadStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} ok, {} failed requests, {} failed connects, {} connections in {:.1?} \
             (max latency {:.1?})",
            self.ok,
            self.failed_requests,
            self.failed_connects,
            self.connects,
            self.elapsed,
            self.max_latency
        )?;
        write!(f, "responses per instance: {:?}", self.instances_seen)?;
        for e in &self.first_errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A running load; [`stop`](Self::stop) it to get the [`LoadStats`].
/// Dropping it stops it too.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Vec<JoinHandle<LoadStats>>,
    started: Instant,
}

impl Load {
    /// Starts `connections` connections to `addr`, with or without
    /// keep-alive (see [`LoadOptions::new`]).
    pub fn start(addr: SocketAddr, connections: usize, keep_alive: bool) -> Load {
        Load::with_options(addr, LoadOptions::new(connections, keep_alive))
    }

    /// Starts a load with explicit options.
    ///
    /// # Panics
    ///
    /// When `addr` is not a loopback address.
    pub fn with_options(addr: SocketAddr, opts: LoadOptions) -> Load {
        assert!(
            addr.ip().is_loopback(),
            "load targets must be loopback addresses, not {addr}"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers = (0..opts.connections)
            .map(|n| {
                let worker = Worker {
                    n,
                    addr,
                    opts: opts.clone(),
                    stop: stop.clone(),
                    ok: ok.clone(),
                    failed: failed.clone(),
                    started,
                };
                std::thread::Builder::new()
                    .name(format!("load-{n}"))
                    .spawn(move || worker.run())
                    .expect("spawn load thread")
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            workers,
            started,
        }
    }

    /// Requests answered ok so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Failed requests and failed connects so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` requests were answered ok; `false` if that
    /// did not happen within `timeout`.
    pub fn wait_for_ok(&self, n: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.ok() >= n)
    }

    /// Stops every connection (each finishes its request in flight) and
    /// returns the totals.
    pub fn stop(mut self) -> LoadStats {
        self.finish()
    }

    fn finish(&mut self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadStats::default();
        for w in self.workers.drain(..) {
            total.merge(w.join().unwrap_or_else(|_| LoadStats {
                first_errors: vec!["a load thread panicked".into()],
                failed_requests: 1,
                ..LoadStats::default()
            }));
        }
        keep_first_errors(&mut total.first_errors);
        total.elapsed = self.started.elapsed();
        total
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.finish();
        }
    }
}

struct Worker {
    n: usize,
    addr: SocketAddr,
    opts: LoadOptions,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    started: Instant,
}

impl Worker {
    fn run(self) -> LoadStats {
        let mut stats = LoadStats::default();
        // The connection and how many responses it has carried.
        let mut conn: Option<(BufReader<TcpStream>, u64)> = None;
        while !self.stop.load(Ordering::Relaxed) && self.started.elapsed() < self.opts.max_duration
        {
            let (c, served) = match conn.as_mut() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => {
                        stats.connects += 1;
                        conn.insert((c, 0))
                    }
                    Err(e) => {
                        stats.failed_connects += 1;
                        self.record(&mut stats, format!("connect: {e}"));
                        // Not a wait for a condition: it keeps a refused
                        // port from turning into a busy loop.
                        std::thread::sleep(POLL);
                        continue;
                    }
                },
            };
            if !self.opts.pause.is_zero() && stats.ok + stats.failed_requests > 0 {
                std::thread::sleep(self.opts.pause);
            }
            let sent = Instant::now();
            match request(c, self.opts.keep_alive) {
                Ok(resp) => {
                    *served += 1;
                    stats.ok += 1;
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    stats.max_latency = stats.max_latency.max(sent.elapsed());
                    *stats.instances_seen.entry(resp.instance).or_default() += 1;
                    if resp.close || !self.opts.keep_alive {
                        conn = None;
                    }
                }
                Err(e) => {
                    stats.failed_requests += 1;
                    let what = format!("request #{} on its connection: {e}", *served + 1);
                    self.record(&mut stats, what);
                    conn = None;
                }
            }
        }
        stats
    }

    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        let s = TcpStream::connect_timeout(&self.addr, self.opts.timeout)?;
        s.set_read_timeout(Some(self.opts.timeout))?;
        s.set_write_timeout(Some(self.opts.timeout))?;
        s.set_nodelay(true)?;
        Ok(BufReader::new(s))
    }

    fn record(&self, stats: &mut LoadStats, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if stats.first_errors.len() < MAX_ERRORS {
            stats
                .first_errors
                .push(format!("{} conn#{}: {what}", stamp(), self.n));
        }
    }
}

/// One `GET /` with `Connection: close` on a fresh connection: the id of
/// the instance that answered, or what went wrong.
///
/// # Errors
///
/// A description of the failure, as the load would record it.
pub fn get_once(addr: SocketAddr, timeout: Duration) -> Result<u64, String> {
    let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    request(&mut BufReader::new(s), false).map(|r| r.instance)
}

/// A complete 200 response.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    instance: u64,
    close: bool,
}

/// Sends one `GET /` and reads its complete response.
fn request(conn: &mut BufReader<TcpStream>, keep_alive: bool) -> Result<Response, String> {
    let req: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    };
    conn.get_mut()
        .write_all(req)
        .map_err(|e| format!("write: {e}"))?;
    read_response(conn)
}

fn read_line(r: &mut impl BufRead, budget: &mut usize, what: &str) -> Result<String, String> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read {what}: {e}"))?;
    if n == 0 {
        return Err(format!("connection closed before {what}"));
    }
    if !line.ends_with(b"\n") {
        return Err(format!(
            "{what} cut short or too long: {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    *budget -= n;
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

fn read_response(r: &mut impl BufRead) -> Result<Response, String> {
    let mut budget = MAX_RESPONSE_PART;
    let status = read_line(r, &mut budget, "the status line")?;
    let mut parts = status.split_whitespace();
    let (version, code) = (parts.next(), parts.next());
    if !matches!(version, Some("HTTP/1.1" | "HTTP/1.0")) || code != Some("200") {
        return Err(format!("unexpected status line {status:?}"));
    }
    let mut length = None;
    let mut instance = None;
    let mut close = version == Some("HTTP/1.0");
    loop {
        let line = read_line(r, &mut budget, "the headers")?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header {line:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "x-ally-instance" => instance = value.parse::<u64>().ok(),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let length = length.ok_or("no valid Content-Length header")?;
    if length > MAX_RESPONSE_PART {
        return Err(format!("body of {length} bytes is too large"));
    }
    let mut body = vec![0; length];
    let mut got = 0;
    while got < length {
        match r.read(&mut body[got..]) {
            Ok(0) => {
                return Err(format!(
                    "connection closed in the body ({got} of {length} bytes)"
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read body ({got} of {length} bytes): {e}")),
        }
    }
    let instance = instance.ok_or("no valid X-Ally-Instance header")?;
    Ok(Response { instance, close })
}

#[cfg(test)]
mod tests;
