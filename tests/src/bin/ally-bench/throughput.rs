//! Shared-state throughput: each client a thread running one operation in
//! a loop for a fixed time, its operations counted.
//!
//! The loop is the same for every [`Store`]; only the body of one
//! operation differs. All clients share one cache key and one counter (as
//! `redis-benchmark`'s clients share one key); each has its own lock, so
//! that lock and unlock stay uncontended with any number of clients.

use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Time every client runs before counting starts: connections open,
/// caches and the branch predictor warm up.
pub const WARM_UP: Duration = Duration::from_millis(200);
/// Time the operations are counted for.
pub const MEASURE: Duration = Duration::from_secs(1);
/// The client counts measured: one, and a few more than cores.
pub const CLIENTS: [usize; 2] = [1, 8];
/// The value every set writes and every get reads: 16 bytes.
pub const VALUE: &[u8; 16] = b"ally-bench-value";
/// The cache namespace.
pub const NS: &str = "bench";
/// The one cache key, set before the gets.
pub const KEY: &str = "key:bench";
/// The one atomic counter.
pub const COUNTER: &str = "counter:bench";

/// The lock of client `client`.
pub fn lock_name(client: usize) -> String {
    format!("lock:bench:{client}")
}

/// One line for the table's header: what a figure is.
pub fn describe() -> String {
    format!(
        "ops/s over {:.1} s after {:.1} s of warm-up, {}-byte values",
        MEASURE.as_secs_f64(),
        WARM_UP.as_secs_f64(),
        VALUE.len()
    )
}

/// An operation measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Get [`KEY`], which holds [`VALUE`].
    Get,
    /// Set [`KEY`] to [`VALUE`].
    Set,
    /// Add 1 to [`COUNTER`].
    Add,
    /// Lock the client's own lock exclusively, then unlock it.
    Lock,
}

impl Op {
    /// Every operation, in the table's order.
    pub const ALL: [Op; 4] = [Op::Get, Op::Set, Op::Add, Op::Lock];

    /// What the table calls it.
    pub fn label(self) -> &'static str {
        match self {
            Op::Get => "cache get",
            Op::Set => "cache set",
            Op::Add => "atomic add",
            Op::Lock => "lock + unlock, uncontended",
        }
    }

    /// Its name in the probe's output file.
    fn key(self) -> &'static str {
        match self {
            Op::Get => "cache_get",
            Op::Set => "cache_set",
            Op::Add => "atomic_add",
            Op::Lock => "lock_unlock",
        }
    }

    fn from_key(key: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.key() == key)
    }
}

/// One figure: `ops_per_s` of `op` from `clients` clients at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The operation.
    pub op: Op,
    /// How many clients ran it at once.
    pub clients: usize,
    /// Operations completed per second, all clients together.
    pub ops_per_s: f64,
}

/// The figure for `op` from `clients` clients, if `samples` has one.
pub fn find(samples: &[Sample], op: Op, clients: usize) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.op == op && s.clients == clients)
        .map(|s| s.ops_per_s)
}

/// One client's operation: each call does it once.
pub type Client<'a> = Box<dyn FnMut() -> io::Result<()> + Send + 'a>;

/// Something holding shared state that clients can be run against.
pub trait Store: Sync {
    /// Sets [`KEY`] to [`VALUE`], so that gets find it.
    fn prepare(&self) -> io::Result<()>;

    /// Client number `client` (from 0) doing `op`.
    fn client(&self, op: Op, client: usize) -> Client<'_>;
}

/// Every operation from `clients` clients, one after the other.
///
/// # Errors
///
/// The first error of an operation; the measurement stops there.
pub fn measure_all(store: &dyn Store, clients: usize) -> io::Result<Vec<Sample>> {
    store.prepare()?;
    Op::ALL
        .into_iter()
        .map(|op| {
            let ops_per_s = measure(store, op, clients)?;
            Ok(Sample {
                op,
                clients,
                ops_per_s,
            })
        })
        .collect()
}

/// Where the clients are: warming up, counted, or told to stop.
const WARMING: u8 = 0;
const COUNTING: u8 = 1;
const STOPPING: u8 = 2;

/// Runs `clients` threads doing `op` for [`WARM_UP`], then counts their
/// operations for [`MEASURE`]; operations per second.
///
/// An operation under way when the phase changes counts for the phase it
/// started in: an error of at most one operation per client at each end.
fn measure(store: &dyn Store, op: Op, clients: usize) -> io::Result<f64> {
    let phase = AtomicU8::new(WARMING);
    let (counts, elapsed) = thread::scope(|s| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let mut run = store.client(op, c);
                let phase = &phase;
                s.spawn(move || -> io::Result<u64> {
                    let mut counted = 0;
                    loop {
                        match phase.load(Ordering::Relaxed) {
                            WARMING => run()?,
                            COUNTING => {
                                run()?;
                                counted += 1;
                            }
                            _ => return Ok(counted),
                        }
                    }
                })
            })
            .collect();
        thread::sleep(WARM_UP);
        phase.store(COUNTING, Ordering::Relaxed);
        let start = Instant::now();
        thread::sleep(MEASURE);
        phase.store(STOPPING, Ordering::Relaxed);
        let elapsed = start.elapsed();
        let counts: Vec<io::Result<u64>> = threads
            .into_iter()
            .map(|t| t.join().expect("a client thread panicked"))
            .collect();
        (counts, elapsed)
    });
    let mut total = 0;
    for count in counts {
        total += count
            .map_err(|e| io::Error::new(e.kind(), format!("{} from {clients}: {e}", op.label())))?;
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// `samples` as text: one `OP CLIENTS OPS_PER_S` line each.
pub fn to_text(samples: &[Sample]) -> String {
    let mut text = String::new();
    for s in samples {
        let _ = writeln!(text, "{} {} {}", s.op.key(), s.clients, s.ops_per_s);
    }
    text
}

/// The samples [`to_text`] wrote.
///
/// # Errors
///
/// The first line that is not a sample.
pub fn from_text(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let parsed = match fields.as_slice() {
                [op, clients, rate] => Op::from_key(op)
                    .zip(clients.parse().ok())
                    .zip(rate.parse().ok()),
                _ => None,
            };
            parsed
                .map(|((op, clients), ops_per_s)| Sample {
                    op,
                    clients,
                    ops_per_s,
                })
                .ok_or_else(|| format!("not a sample: {line:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_survive_the_probe_file() {
        let samples = vec![
            Sample {
                op: Op::Get,
                clients: 1,
                ops_per_s: 31_250.5,
            },
            Sample {
                op: Op::Lock,
                clients: 8,
                ops_per_s: 12.0,
            },
        ];
        assert_eq!(from_text(&to_text(&samples)), Ok(samples));
        assert!(from_text("cache_get 1").is_err());
        assert!(from_text("cache_frob 1 2").is_err());
    }
}
