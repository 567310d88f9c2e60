//! A gRPC load client that counts every failed RPC and retries nothing.
//!
//! Each client is a task that calls `grpc.health.v1.Health/Check` one RPC at
//! a time, through a real tonic [`Channel`] over HTTP/2. An RPC counts as
//! *ok* only if it returned `SERVING` within [`GrpcLoadOptions::timeout`];
//! anything else — a status, a transport error, a timeout — is a *failed
//! RPC*, counted under its gRPC code, and the channel is dropped. A failed
//! connect is a *failed connect*. Nothing is retried.
//!
//! Every client opens connections all the time, which is what races a
//! reload: some arrive just before a server stops accepting. A
//! [`Conn::PerRpc`] client opens a new connection for every RPC, a
//! [`Conn::Every`] client for every few.
//!
//! There is no client that keeps one channel for the whole load: tonic's
//! client (0.14) fails an RPC it sends in the instant between receiving a
//! server's `GOAWAY` and seeing the connection close (`Cancelled:
//! connection closed`, or `Internal: ... GoAway NO_ERROR`), an RPC the
//! server never saw and gRPC's own clients retry transparently. No server
//! can prevent that, so such a client would measure tonic's client, not the
//! drain (see `ally::tonic`'s docs).
//!
//! Each response names its instance in the `x-ally-instance` metadata
//! (`0` if it has none). Targets must be loopback addresses, and a load
//! stops by itself after [`GrpcLoadOptions::max_duration`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::clock::stamp;
use crate::load::{MAX_ERRORS, keep_first_errors};
use crate::proc::{POLL, wait_until};

/// Threads of the load's runtime: the machine has two cores.
const THREADS: usize = 2;

/// How a client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// A new connection for every RPC.
    PerRpc,
    /// A new connection every this many RPCs.
    Every(u32),
}

/// Settings of a [`GrpcLoad`].
#[derive(Debug, Clone)]
pub struct GrpcLoadOptions {
    /// One client per entry, concurrently.
    pub clients: Vec<Conn>,
    /// An RPC slower than this fails (also the connect timeout).
    pub timeout: Duration,
    /// The load stops by itself after this long.
    pub max_duration: Duration,
    /// Pause between two RPCs of one client: it paces the load so that the
    /// machine keeps room to start processes (not a wait for anything).
    pub pause: Duration,
}

impl GrpcLoadOptions {
    /// The mix the reload tests use, `clients` in all: half
    /// [`Conn::PerRpc`], half [`Conn::Every(4)`](Conn::Every); 10 s timeout,
    /// 2 ms pause, at most 5 minutes.
    pub fn reconnecting(clients: usize) -> GrpcLoadOptions {
        let clients = (0..clients)
            .map(|n| {
                if n % 2 == 0 {
                    Conn::PerRpc
                } else {
                    Conn::Every(4)
                }
            })
            .collect();
        GrpcLoadOptions {
            clients,
            timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(300),
            pause: Duration::from_millis(2),
        }
    }
}

/// What a load saw, summed over its clients.
#[derive(Debug, Clone, Default)]
pub struct GrpcStats {
    /// RPCs answered `SERVING`.
    pub ok: u64,
    /// RPCs that failed, in total.
    pub failed_rpcs: u64,
    /// Failed RPCs per gRPC code (`Unavailable`, ...; `Timeout` for the
    /// client's own timeout, `NotServing` for another health status).
    pub failed_by_code: BTreeMap<String, u64>,
    /// Connects that failed.
    pub failed_connects: u64,
    /// Connections (channels) opened by the clients themselves.
    pub connects: u64,
    /// Ok RPCs per instance id (`x-ally-instance`).
    pub instances_seen: BTreeMap<u64, u64>,
    /// The earliest errors, each stamped with [`stamp`].
    pub first_errors: Vec<String>,
    /// How long the load ran.
    pub elapsed: Duration,
}

impl GrpcStats {
    /// Failed RPCs plus failed connects.
    pub fn failures(&self) -> u64 {
        self.failed_rpcs + self.failed_connects
    }

    fn merge(&mut self, other: GrpcStats) {
        self.ok += other.ok;
        self.failed_rpcs += other.failed_rpcs;
        for (code, n) in other.failed_by_code {
            *self.failed_by_code.entry(code).or_default() += n;
        }
        self.failed_connects += other.failed_connects;
        self.connects += other.connects;
        for (id, n) in other.instances_seen {
            *self.instances_seen.entry(id).or_default() += n;
        }
        self.first_errors.extend(other.first_errors);
    }
}

impl fmt::Display for GrpcStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "grpc load: {} ok, {} failed RPCs {:?}, {} failed connects, {} connections in {:.1?}",
            self.ok,
            self.failed_rpcs,
            self.failed_by_code,
            self.failed_connects,
            self.connects,
            self.elapsed,
        )?;
        write!(f, "RPCs per instance: {:?}", self.instances_seen)?;
        for e in &self.first_errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A running gRPC load; [`stop`](Self::stop) it to get the [`GrpcStats`].
/// Dropping it stops it too.
#[derive(Debug)]
pub struct GrpcLoad {
    shared: Arc<Shared>,
    runner: Option<JoinHandle<GrpcStats>>,
    started: Instant,
}

/// What the clients and the test share while the load runs.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl GrpcLoad {
    /// Starts the clients against `addr`.
    ///
    /// # Panics
    ///
    /// When `addr` is not a loopback address or the runtime cannot start.
    pub fn start(addr: SocketAddr, opts: GrpcLoadOptions) -> GrpcLoad {
        assert!(
            addr.ip().is_loopback(),
            "load targets must be loopback addresses, not {addr}"
        );
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("grpc-load")
            .enable_all()
            .build()
            .expect("start the gRPC load's runtime");
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .expect("a loopback address is a valid URI")
            .connect_timeout(opts.timeout)
            .tcp_nodelay(true);
        let tasks = Arc::clone(&shared);
        let runner = std::thread::Builder::new()
            .name("grpc-load".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let clients: Vec<_> = (0..opts.clients.len())
                        .map(|n| {
                            let client = Client {
                                n,
                                conn: opts.clients[n],
                                endpoint: endpoint.clone(),
                                opts: opts.clone(),
                                shared: Arc::clone(&tasks),
                                started,
                            };
                            tokio::spawn(client.run())
                        })
                        .collect();
                    let mut total = GrpcStats::default();
                    for c in clients {
                        total.merge(c.await.unwrap_or_else(|_| GrpcStats {
                            failed_rpcs: 1,
                            first_errors: vec!["a load client panicked".into()],
                            ..GrpcStats::default()
                        }));
                    }
                    total
                })
            })
            .expect("spawn the gRPC load thread");
        GrpcLoad {
            shared,
            runner: Some(runner),
            started,
        }
    }

    /// RPCs answered ok so far.
    pub fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::Relaxed)
    }

    /// Failed RPCs and failed connects so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` RPCs were answered ok; `false` if that did
    /// not happen within `timeout`.
    pub fn wait_for_ok(&self, n: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.ok() >= n)
    }

    /// Stops every client (each finishes its RPC in flight) and returns the
    /// totals.
    pub fn stop(mut self) -> GrpcStats {
        self.finish()
    }

    fn finish(&mut self) -> GrpcStats {
        self.shared.stop.store(true, Ordering::Relaxed);
        let Some(runner) = self.runner.take() else {
            return GrpcStats::default();
        };
        let mut total = runner.join().unwrap_or_else(|_| GrpcStats {
            failed_rpcs: 1,
            first_errors: vec!["the gRPC load thread panicked".into()],
            ..GrpcStats::default()
        });
        keep_first_errors(&mut total.first_errors);
        total.elapsed = self.started.elapsed();
        total
    }
}

impl Drop for GrpcLoad {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One client: a loop of RPCs over its own channel.
struct Client {
    n: usize,
    conn: Conn,
    endpoint: Endpoint,
    opts: GrpcLoadOptions,
    shared: Arc<Shared>,
    started: Instant,
}

impl Client {
    async fn run(self) -> GrpcStats {
        let mut stats = GrpcStats::default();
        // The channel and how many RPCs it has carried.
        let mut channel: Option<(HealthClient<Channel>, u32)> = None;
        while !self.shared.stop.load(Ordering::Relaxed)
            && self.started.elapsed() < self.opts.max_duration
        {
            let (client, carried) = match channel.as_mut() {
                Some(c) => c,
                None => match self.endpoint.connect().await {
                    Ok(c) => {
                        stats.connects += 1;
                        channel.insert((HealthClient::new(c), 0))
                    }
                    Err(e) => {
                        stats.failed_connects += 1;
                        self.record(&mut stats, format!("connect: {}", chain(&e)));
                        // Keeps a refused port from turning into a busy loop.
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                },
            };
            if !self.opts.pause.is_zero() {
                tokio::time::sleep(self.opts.pause).await;
            }
            match self.check(client).await {
                Ok(instance) => {
                    *carried += 1;
                    stats.ok += 1;
                    self.shared.ok.fetch_add(1, Ordering::Relaxed);
                    *stats.instances_seen.entry(instance).or_default() += 1;
                    let done = match self.conn {
                        Conn::PerRpc => true,
                        Conn::Every(n) => *carried >= n,
                    };
                    if done {
                        channel = None;
                    }
                }
                Err((code, what)) => {
                    stats.failed_rpcs += 1;
                    *stats.failed_by_code.entry(code).or_default() += 1;
                    let what = format!("RPC #{} on its channel: {what}", *carried + 1);
                    self.record(&mut stats, what);
                    channel = None;
                }
            }
        }
        stats
    }

    /// One `Health/Check`: the instance that answered, or the failure's
    /// code and description.
    async fn check(&self, client: &mut HealthClient<Channel>) -> Result<u64, (String, String)> {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let response = match tokio::time::timeout(self.opts.timeout, client.check(request)).await {
            Err(_) => {
                let what = format!("no answer within {:?}", self.opts.timeout);
                return Err(("Timeout".to_owned(), what));
            }
            Ok(Err(status)) => {
                let code = format!("{:?}", status.code());
                return Err((code.clone(), format!("{code}: {}", chain(&status))));
            }
            Ok(Ok(response)) => response,
        };
        let instance = response
            .metadata()
            .get("x-ally-instance")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let status = response.into_inner().status;
        if status != ServingStatus::Serving as i32 {
            return Err(("NotServing".to_owned(), format!("health status {status}")));
        }
        Ok(instance)
    }

    fn record(&self, stats: &mut GrpcStats, what: String) {
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        if stats.first_errors.len() < MAX_ERRORS {
            stats.first_errors.push(format!(
                "{} client#{} ({:?}): {what}",
                stamp(),
                self.n,
                self.conn
            ));
        }
    }
}

/// An error and its sources, on one line: tonic's transport errors say
/// what happened only in their sources ("connection closed before server
/// preface received").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
