//! Every bound of [`ally::http`](super), with what happens at it.

use std::time::Duration;

/// Largest request head (request line and headers, terminator included);
/// a longer one is answered `431` and the connection closed.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header lines in a request; more are answered `431`.
pub const MAX_HEADERS: usize = 100;

/// Default [`Options::max_body`](super::Options::max_body): a larger
/// `Content-Length` is answered `413` without reading the body.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Default [`Options::idle_timeout`](super::Options::idle_timeout).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default [`Options::max_connections`](super::Options::max_connections).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default [`Options::drain_deadline`](super::Options::drain_deadline).
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(25);

/// Shortest write timeout: a response that makes no progress for the idle
/// timeout, or this if longer, fails and the connection is dropped.
pub const MIN_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a graceful close waits for the client to close its side.
pub const LINGER: Duration = Duration::from_secs(2);

/// Most bytes read and discarded by a graceful close before it gives up.
pub const LINGER_MAX_BYTES: usize = 1 << 20;

/// Most bytes already sent by a client turned away with `503` (past
/// [`Options::max_connections`](super::Options::max_connections)) that
/// are read and discarded before the answer, so it is not a reset.
pub const BUSY_DISCARD: usize = 16 * 1024;

/// Pause before accepting again after the process ran out of descriptors
/// or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
