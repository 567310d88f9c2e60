//! Zero-downtime restart and binary upgrade for network services on Linux.
//!
//! A service linked with `ally` asks for its listening sockets instead of
//! binding them. Under `ally-master` the master binds each socket once and
//! hands every instance the same kernel socket, so a reload starts the new
//! binary, lets it accept on the very sockets the old one uses, and only
//! then asks the old one to drain: no connection is refused, none is
//! dropped. Run from a shell, the same calls bind locally ("simulate mode").
//!
//! ```no_run
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::TcpStream;
//!
//! fn main() -> std::io::Result<()> {
//!     let stop = ally::stop_signal()?;                    // the cue to drain
//!     let listener = ally::listen_tcp("127.0.0.1:8080")?; // from the master, or bound here
//!     ally::ready()?;                                     // older instances may stop now
//!     while let Some((conn, _)) = ally::drain::accept(&listener, &stop)? {
//!         let _ = answer(conn);
//!     }
//!     Ok(()) // stopped: the new instance accepts from here on
//! }
//!
//! fn answer(conn: TcpStream) -> std::io::Result<()> {
//!     // Read the whole request head first: closing with unread bytes resets.
//!     for line in BufReader::new(&conn).lines() {
//!         if line?.is_empty() { break }
//!     }
//!     (&conn).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n")
//! }
//! ```
//!
//! # Listening
//!
//! [`listen_tcp`] and [`listen_unix`] return this crate's [`TcpListener`]
//! and [`UnixListener`] (the std types, through `Deref`, with an `accept`
//! and `incoming` that wait; `into_std()` gives the std type);
//! [`listen_udp`] and [`listen_unixgram`] return std socket types;
//! [`listen_fd`] returns an [`OwnedFd`] of any
//! [`Network`] for other socket types; [`ListenOptions`] sets the file mode
//! of a unix socket, or the name of a socket passed by systemd. Addresses are `IP:PORT`, `[IPv6]:PORT` or `:PORT`
//! (host names are refused, so the master's key for a socket never depends
//! on DNS), and for unix sockets a path (a relative one is made absolute
//! against the current directory) or `@name` for an abstract socket. An
//! address is checked here before anything is sent or bound.
//!
//! Under a master, each socket received is checked against the request
//! (type, family, address, listening) and rejected if it does not match.
//! Port 0 is bound once by the master, and every later request of the same
//! app for the same `…:0` address gets the same socket: a reloaded instance
//! finds the port it had. [`unlisten`] tells the master this instance no
//! longer holds a socket.
//!
//! A socket lives as long as the **app**, not as long as the instance
//! holding it: when that instance crashes, is killed (`ally-ctl kill`) or
//! restarted (`ally-ctl restart`), the master keeps the socket through the
//! back-off and any failed starts, so connections wait in its accept queue
//! for the next instance, which gets the same socket (and port). The
//! master closes it when the app is stopped or removed, when the master
//! shuts down, when an instance unlistens it and no other holds it, or
//! when a ready main instance serves and no live instance holds it (a new
//! version that no longer asks for it). So ask for every socket before
//! [`ready`]: one asked for later may have been closed, and is bound anew.
//!
//! The master binds only what this instance's user could bind itself. A
//! unix socket path is bound by a helper of the master running as the
//! app's user, which never follows a symlink and replaces an existing file
//! only if it is a socket nobody is bound to (both a stream and a datagram
//! connect refused); the master's own sockets, another app's addresses, a
//! mode above `0o777` and (for an app not running as root) ports below
//! 1024 not granted by the app's `privileged_ports` are refused.
//!
//! # Socket mode
//!
//! **Every socket this crate returns is non-blocking**, with and without a
//! master. The kernel keeps `O_NONBLOCK` in the open file description that
//! all instances holding a socket share, so the master binds them
//! non-blocking and never changes the flag; a blocking `accept` could also
//! not be interrupted when an instance must stop accepting. For std users
//! this means:
//!
//! - accept with [`drain::accept`] (it polls the listener and the stop
//!   signal and returns blocking streams), or from an event loop. The
//!   listeners' own [`accept`](TcpListener::accept) and
//!   [`incoming`](TcpListener::incoming) wait with `poll(2)` too (and again
//!   when another instance took the connection), so a plain
//!   `for conn in listener.incoming()` loop works; but it never stops at the
//!   stop signal, so a service that drains uses [`drain::accept`]. Std's
//!   own `accept` (through `Deref`, or on `into_std()`) returns
//!   [`WouldBlock`](std::io::ErrorKind::WouldBlock) when no connection is
//!   waiting, including when another instance took it;
//! - datagram sockets have no such wrapper: `recv` returns `WouldBlock`
//!   when nothing waits (or another instance read it); poll them, with the
//!   stop signal, or use an event loop ([`listen_udp`] says more);
//! - async runtimes take the sockets as they are (tokio's
//!   `TcpListener::from_std`, for example, requires non-blocking);
//! - **never call `set_nonblocking(false)` on a socket from a master**: it
//!   would switch the socket to blocking in every other instance too, and a
//!   reload would hang in `accept`.
//!
//! Streams accepted from a listener are sockets of their own; making those
//! blocking (as [`drain::accept`] does) concerns no one else.
//!
//! # Readiness
//!
//! A reload does not stop the old instance until the new one calls
//! [`ready`]; a new version that fails to start never takes traffic. Call it
//! once every listener is open, after [`stop_signal`]. [`report`] records
//! status that `ally-ctl list` shows, [`reload`] asks the master to replace
//! this instance with a fresh start of the binary, and [`instance`] says who
//! this process is.
//!
//! # Draining
//!
//! The master asks old instances to stop with a signal (`SIGTERM` unless the
//! app's config says otherwise). [`stop_signal`] installs the handler and
//! returns a [`StopSignal`] to wait on or to poll (it implements
//! [`AsFd`](std::os::fd::AsFd)). Then: stop accepting, finish what is in
//! flight, answer the next request on each idle keep-alive connection with
//! `Connection: close` instead of closing under the client, and exit. The
//! [`drain`] module has the helpers ([`drain::accept`], [`drain::Drain`])
//! and the full pattern. For HTTP/1.1, [`http::serve`] does all of it: the
//! handler only maps a request to a response (the `std_http` example is a
//! complete service in 26 lines, the `demo` example is built on it too).
//!
//! # tokio, hyper, axum and tonic
//!
//! The sockets are std types underneath ([`TcpListener`] derefs to
//! `std::net::TcpListener`), so any runtime takes them: for tokio,
//! `tokio::net::TcpListener::from_std(ally::listen_tcp(addr)?.into_std())`,
//! called inside the runtime. They are already non-blocking, as `from_std`
//! requires (see "Socket mode": never make them blocking). Optional
//! features, off by default, do the drain for tokio services: `tokio`
//! (`ally::tokio`: a stop future, a listener that stops accepting at the
//! stop, a connection tracker, async shared state), `hyper`
//! (`ally::hyper::serve`), `axum` (`ally::axum::serve`) and `tonic`
//! (`ally::tonic::serve`), which serve on the ally listener and fail no
//! request or RPC across reloads, keep-alive included. A bare
//! `with_graceful_shutdown(stop)` does fail some: hyper closes idle
//! keep-alive connections as soon as it starts, under clients that may be
//! sending a request at that very moment, and tonic closes a connection
//! accepted just before the stop before its HTTP/2 preface. The `axum` and
//! `tonic` examples (`cargo run -p ally --features axum --example axum`)
//! are complete servers.
//!
//! # Shared state
//!
//! The master keeps, per app, state that outlives any one instance: a
//! [`cache`] (namespaces of key → bytes, with optional time to live),
//! [`atomic`] `i64` counters, and read/write [`locker`]s. What one instance
//! stores, its successor reads after a reload; a counter added to by every
//! instance at once loses no update; a lock held by an instance that
//! crashes is released, so its successor never deadlocks.
//!
//! ```
//! use std::time::Duration;
//!
//! # fn main() -> std::io::Result<()> {
//! let sessions = ally::cache("doc-tour-sessions");
//! sessions.set_with_ttl("alice", b"token", Duration::from_secs(1800))?;
//! assert_eq!(sessions.get("alice")?, Some(b"token".to_vec()));
//!
//! let served = ally::atomic("doc-tour-served").add(1)?;
//! assert_eq!(served, 1);
//!
//! let cron = ally::locker("doc-tour-cron");
//! if let Some(_guard) = cron.try_lock(None)? {
//!     // only one instance runs the job; the guard unlocks when dropped
//! }
//! # Ok(()) }
//! ```
//!
//! Handles are cheap and do nothing until used; every call is one request
//! to the master, thread-safe, and fails with an [`io::Error`](std::io::Error)
//! wrapping [`Error::State`] when refused: past a limit
//! ([`QuotaExceeded`](std::io::ErrorKind::QuotaExceeded)), a bad name or
//! time to live, an atomic overflow, or an unlock of a lock not held
//! ([`InvalidInput`](std::io::ErrorKind::InvalidInput)). State is bounded:
//! the app's config sets `max_cache_entries`, `max_cache_bytes`,
//! `max_atomics` and `max_locks`, and nothing is ever evicted to make room.
//!
//! The library talks to the master over a small pool of connections (at
//! most 16), so a thread waiting for a lock does not hold up another
//! thread's cache call, and some connections always stay free for
//! requests that are answered at once, so a lock holder can always unlock.
//! Holds belong to the instance, not to a connection: the master releases
//! them when the instance exits, and a request that timed out (the app's
//! `request_timeout`, 30 s by default) loses none.
//!
//! In simulate mode the same calls work in-process, driven by the very
//! code the master runs, with the default limits (100 000 cache entries,
//! 64 MiB of cache, 10 000 atomics, 10 000 locks in use): same answers,
//! same errors, and the whole process is one lock holder, as an instance is
//! under a master. The examples above run that way.
//!
//! # Running without a master
//!
//! Without `ALLY_CHANNEL_FD` in the environment the process runs in simulate
//! mode: `listen_*` bind the socket here, the same way the master would
//! (non-blocking, close-on-exec, `SO_REUSEADDR` for TCP, a backlog of 1024,
//! a stale unix socket file replaced), unless systemd's socket activation
//! (`LISTEN_PID`, `LISTEN_FDS`) passed a socket of the same type and address,
//! or of the name given to [`ListenOptions::systemd_name`] (`LISTEN_FDNAMES`),
//! which is then used instead; [`reload`] is an error; [`instance`]
//! reports id 0; `SIGTERM` and `SIGINT` are stop signals; the cache,
//! atomics and locks live in the process. So the same binary runs from a
//! shell, in tests, or under another supervisor.
//!
//! Under a `Type=notify` supervisor (systemd), the crate speaks
//! `sd_notify(3)` to the `NOTIFY_SOCKET` it set (a path, or `@name` for an
//! abstract socket): [`ready`] sends `READY=1`; [`report`] sends `STATUS=`
//! with the report on one line; and the first time the process-wide
//! [`StopSignal`] is seen set ([`StopSignal::is_set`], and
//! [`wait`](StopSignal::wait), [`wait_timeout`](StopSignal::wait_timeout)
//! and [`drain::accept`] through it) it sends `STOPPING=1`, once. One
//! datagram per message (at most 4096 bytes) from a fresh close-on-exec
//! socket; a send waits at most 5 s for room in the supervisor's queue
//! (`STOPPING=1` not at all: a stuck supervisor must not hold up the
//! drain). A
//! malformed `NOTIFY_SOCKET` or a failed send is an error of [`ready`] and
//! [`report`]; of the stop path, which has no caller to tell, a line on
//! stderr. Without `NOTIFY_SOCKET`, [`ready`] and [`report`] do nothing.
//! The variable is read once and left in the environment (changing the
//! environment while other threads may read it is unsound), but ignored
//! when `SYSTEMD_EXEC_PID` names another process: a child that inherited
//! it never speaks for the service (so a wrapper script must `exec` it;
//! spawn other children with `Command::env_remove("NOTIFY_SOCKET")` if they
//! speak `sd_notify` themselves). No `WATCHDOG=1`: a unit with
//! `WatchdogSec=` needs the service to send it. Under a master nothing is
//! sent this way: the master is systemd's client.
//!
//! When `ALLY_CHANNEL_FD` *is* set, the process must be a child of the
//! master named by `ALLY_MASTER_PID` when the crate first looks (a wrapper
//! script must `exec` the program), and that descriptor must be a socket
//! pair end the master made; otherwise every call fails with an error
//! saying so. The crate never falls back to simulate mode when the
//! environment says it is managed.
//!
//! # The channel, and when the master dies
//!
//! The master gives each instance its own channel at start: one end of a
//! unix socket pair at the descriptor `ALLY_CHANNEL_FD` names, just past
//! the `LISTEN_FDS` range. Identity is the channel itself — no socket path,
//! no file permission — so an app running as any `user =` reaches its
//! master. The crate marks it close-on-exec when it first uses it, and asks
//! over it for the further connections its pool needs. A fork of the
//! instance gets [`Error::Forked`] from every call rather than sharing the
//! parent's connections.
//!
//! A thread of the crate watches the channel. When the master dies, the
//! channel reaches end of file: the crate points stdout and stderr at
//! `/dev/null` if they were pipes to the master (whose writes would now
//! fail with `EPIPE`, and make `println!` panic), sends the process its stop
//! signal, and fails every later call with [`Error::MasterGone`]. So an
//! orphaned instance drains and exits instead of holding its sockets with
//! nobody supervising it. (A channel the master closes while it lives on —
//! it refused the hello — stops the instance too, but leaves its output to
//! the master.) The master gives every instance the read ends of its own
//! output pipes; the crate holds them (`ALLY_OUTPUT_FDS`), adopted with the
//! channel on first use, so a line written as the master dies finds a
//! reader; a child forked before that first use, or forked without
//! `exec`, inherits them and should close them, or its writes may block
//! once the master and the instance are gone.
//!
//! # What this crate does not do
//!
//! - It does not restart or supervise anything: that is `ally-master`.
//! - It does not close connections or exit for you: the stop signal is a
//!   request, and draining is the service's job (with the helpers above,
//!   or [`http`] for HTTP/1.1).
//! - No async runtime, no global state to set up; every function may be
//!   called from any thread. Under a master it runs one thread of its own,
//!   which waits for the channel's end of file.
//! - Shared state is not persisted: it lives as long as the master (or,
//!   in simulate mode, the process), across reloads but not across a
//!   restart of the master. It is not a database either: no transactions
//!   across keys, no eviction, answers of at most 1 MiB.
//! - Linux only.
//!
//! # Errors
//!
//! Functions return [`std::io::Result`]; the [`io::Error`](std::io::Error)
//! wraps an [`Error`] (reach it with `get_ref` and `downcast_ref`) whose
//! message says what went wrong and what to do.
//!
//! [`OwnedFd`]: std::os::fd::OwnedFd

#![deny(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]

mod atomic;
#[cfg(feature = "axum")]
pub mod axum;
mod bind;
mod cache;
mod channel;
mod client;
mod control;
pub mod drain;
mod error;
pub mod http;
#[cfg(feature = "hyper")]
pub mod hyper;
mod inherit;
mod instance;
mod listen;
mod listener;
mod local_state;
mod locker;
mod mode;
mod notify;
mod pool;
mod state;
mod stop;
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tonic")]
pub mod tonic;
mod verify;

pub use ally_proto::{ErrorCode, Failure, LockState, Network};
pub use atomic::{Atomic, atomic};
pub use cache::{Cache, cache};
pub use control::{Report, ready, reload, report};
pub use error::Error;
pub use instance::{Instance, instance};
pub use listen::{
    ListenOptions, listen_fd, listen_tcp, listen_udp, listen_unix, listen_unixgram, unlisten,
};
pub use listener::{Incoming, TcpListener, UnixListener};
pub use locker::{LockGuard, Locker, ReadGuard, locker};
pub use stop::{FORCED_EXIT_STATUS, StopSignal, stop_signal};

/// The README's code blocks, compiled and run as doc tests so the front
/// door never shows an example that does not build.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
