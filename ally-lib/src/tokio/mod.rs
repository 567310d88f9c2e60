//! Zero-downtime pieces for tokio services (feature `tokio`).
//!
//! The blocking pieces of the crate, made to be `.await`ed:
//!
//! - [`Stop`]: the stop signal as a future ([`stop_signal`](crate::stop_signal)
//!   underneath);
//! - [`Listener`] (and [`UnixListener`]): accepts until the stop, then
//!   closes, so the new instance takes the accept queue;
//! - [`Tracker`]: counts live connections, to wait for them with a deadline;
//! - [`cache`], [`atomic`], [`locker`]: the shared state with `async`
//!   methods (through [`spawn_blocking`](::tokio::task::spawn_blocking); see
//!   [Shared state](self#shared-state) below).
//!
//! For HTTP, `ally::hyper` and `ally::axum` (features `hyper`, `axum`) put
//! them together with the HTTP/1.1 drain.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio::io::AsyncWriteExt;
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let stop = ally::tokio::Stop::new()?; // first: the signal is handled from now on
//!     let listener = ally::tokio::Listener::new(ally::listen_tcp("127.0.0.1:8080")?, &stop)?;
//!     let tracker = ally::tokio::Tracker::new();
//!     ally::ready()?;
//!     while let Some((mut stream, _peer)) = listener.accept().await? {
//!         let tracked = tracker.track();
//!         tokio::spawn(async move {
//!             let _tracked = tracked;
//!             let _ = stream.write_all(b"hello\n").await;
//!         });
//!     }
//!     // Stopped: the listener is closed; wait for the connections.
//!     if !tracker.wait_idle(Duration::from_secs(25)).await {
//!         eprintln!("deadline passed with {} connections", tracker.active());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Shared state
//!
//! The shared state calls are short request/response exchanges with the
//! master over a Unix socket (in simulate mode, calls on this process's
//! memory). The async wrappers run each call on tokio's blocking pool,
//! which keeps the runtime's workers free and reuses the one client code
//! path the blocking API has, instead of a second, non-blocking client to
//! keep in step with it. The cost is a thread hand-off per call: `make
//! bench` has the ratio of an async `atomic().add` to a blocking one from
//! a single caller: about half the blocking rate under a master on a small
//! machine, where the round trip to the master is most of the cost; far
//! less in simulate mode, where the call itself is only a `Mutex`. Many
//! concurrent tasks run their calls in parallel on the pool.
//! Each call holds one blocking-pool thread for its duration (tokio's pool
//! is bounded, 512 threads by default); a [`AsyncLocker::lock`] waiting for
//! a lock holds one for as long as it waits.

mod listener;
mod state;
mod stop;
mod tracker;

pub use listener::{Listener, UnixListener};
pub use state::{AsyncAtomic, AsyncCache, AsyncLocker, atomic, cache, locker};
pub use stop::Stop;
pub use tracker::{Tracked, Tracker};
