//! The master's own log lines, on stderr (journald and container runtimes
//! add timestamps), and the stderr sink that `log = "inherit"` apps share.
//!
//! Nothing writes to stderr directly: lines go through one [`Sink`], whose
//! thread waits on a reader that stopped reading (a paused terminal, a full
//! pipe, a slow journald) instead of the loop. Lines that do not fit in its
//! queue are dropped, counted and marked.

use std::sync::OnceLock;
use std::time::Instant;

use crate::limits::STDERR_SINK_BYTES;
use crate::sink::{Sink, Target};

/// The stderr sink, once started.
static STDERR: OnceLock<Sink> = OnceLock::new();

/// The sink for stderr, started on first use.
pub fn stderr() -> &'static Sink {
    STDERR.get_or_init(|| Sink::new("ally-stderr", Target::Stderr, STDERR_SINK_BYTES))
}

/// Queues one `ally-master: ...` line for stderr.
pub fn line(args: std::fmt::Arguments<'_>) {
    let line = format!("ally-master: {args}\n");
    stderr().push("ally-master", line.as_bytes());
}

/// Waits until what is queued for stderr is written, or `deadline`: at
/// exit, so the last lines are not lost, nor the exit held up by a stuck
/// reader.
pub fn flush(deadline: Instant) {
    if let Some(sink) = STDERR.get() {
        sink.flush(deadline);
    }
}

/// Queues one `ally-master: ...` line for stderr; never blocks.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        $crate::log::line(format_args!($($arg)*));
    }};
}
