//! An HTTP/1.1 server for std services that fails no request across
//! reloads: the handler maps a [`Request`] to a [`Response`], this module
//! does the rest.
//!
//! ```no_run
//! use ally::http::{Options, Response};
//!
//! fn main() -> std::io::Result<()> {
//!     let stop = ally::stop_signal()?;
//!     let listener = ally::listen_tcp("127.0.0.1:8080")?;
//!     ally::ready()?;
//!     let drained = ally::http::serve(&listener, &stop, &Options::new(), |req| {
//!         Response::text(200, format!("you asked for {}\n", req.path()))
//!     })?;
//!     if !drained.is_complete() {
//!         eprintln!("drain deadline passed with {} connections", drained.left);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # What a connection does
//!
//! It follows the rules of [`ally::drain`](crate::drain):
//!
//! - **Keep-alive**: HTTP/1.1 connections stay open by default, HTTP/1.0
//!   ones with `Connection: keep-alive`; requests are answered in order
//!   (pipelined ones too).
//! - **Idle timeout** ([`Options::idle_timeout`], default 5 s): a
//!   connection that sends no request for that long is closed, unless a
//!   byte arrived just as the timer fired. A head that stalls halfway is
//!   answered `408`. Keep it well below the master's `stop_timeout`: it is
//!   how long a draining instance may wait for an idle client.
//! - **Draining** (after the stop signal): accepting stops; each response
//!   written from then on says `Connection: close` and the connection
//!   closes after it. That is checked when the response is written, not
//!   when the request came, so a connection accepted just before the stop
//!   has its first request answered. An idle connection is **never** closed
//!   because the drain started: only its idle timeout closes it (it would
//!   otherwise be closed under a client sending its next request). So a
//!   drain takes about the idle timeout plus the slowest request and the
//!   graceful close at most, and is
//!   cut by [`Options::drain_deadline`] (default 25 s; keep it below the
//!   master's `stop_timeout`).
//! - **Graceful close**: shut down writing, then read and discard until the
//!   client closes (at most 2 s and 1 MiB), since closing with unread bytes
//!   sends a reset that can destroy the response not yet read.
//! - **Bounds** (see [`limits`]): a head (request line and headers) of at
//!   most 16 KiB and 100 headers, else `431`; a body of at most
//!   [`Options::max_body`] (default 1 MiB), read whole before the handler
//!   runs, else `413`; at most [`Options::max_connections`] connections
//!   (default 1024, a thread each), past which a connection is answered
//!   `503` and closed.
//! - **Bodies** are framed by `Content-Length` only: a request with
//!   `Transfer-Encoding` (a chunked body) is answered `501` naming the
//!   problem. `Expect: 100-continue` gets `100 Continue` before the body
//!   is read; other expectations get `417`.
//! - **`HEAD`** reaches the handler like `GET`; the answer is sent without
//!   its body, with the body's `Content-Length`.
//! - A malformed request is answered `400` saying what was wrong, an HTTP
//!   version other than 1.0 and 1.1 `505`, and the connection closed. A
//!   handler that panics is answered `500`.
//!
//! Responses always carry `Connection`, and `Content-Length` unless their
//! status has no body (1xx, 204, 304): the connection owns both, and a
//! handler setting them gets a `500` naming the header.
//!
//! [`serve`] is [`Server::accept_until`] then [`Server::drain`]; use the
//! two when something must happen between them, such as logging how many
//! connections are draining, or dropping the listener (in simulate mode,
//! new connections are refused only once it is closed).
//!
//! # What it does not do
//!
//! No TLS, no HTTP/2, no chunked bodies either way, no streaming: a body is
//! read whole before the handler is called and written whole after.

mod conn;
pub mod limits;
mod request;
mod response;
mod server;
mod state;

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::time::Duration;

pub use request::Request;
pub use response::Response;
pub use server::{Drained, Server};

use crate::StopSignal;

/// Serves HTTP/1.1 on `listener` with `handler` until `stop` is set, then
/// drains: see the [module docs](self).
///
/// # Errors
///
/// As [`Server::new`] and [`Server::accept_until`]; after an accept error
/// the drain is still done before returning.
pub fn serve<H>(
    listener: &TcpListener,
    stop: &StopSignal,
    options: &Options,
    handler: H,
) -> Result<Drained, Error>
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let server = Server::new(options.clone(), handler)?;
    let accepted = server.accept_until(listener, stop);
    let drained = server.drain();
    accepted.map(|()| drained)
}

/// Settings of a [`Server`]; [`Options::new`] has the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    idle_timeout: Duration,
    max_body: usize,
    max_connections: usize,
    drain_deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// The defaults: idle timeout 5 s, bodies up to 1 MiB, 1024
    /// connections, drain deadline 25 s.
    pub fn new() -> Options {
        Options {
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            max_body: limits::DEFAULT_MAX_BODY,
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            drain_deadline: limits::DEFAULT_DRAIN_DEADLINE,
        }
    }

    /// Closes a connection that sends no request for this long (more than
    /// zero); also the longest wait for each read of a request. Keep it
    /// below the master's `stop_timeout`.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Options {
        self.idle_timeout = timeout;
        self
    }

    /// Largest request body, in bytes; larger ones are answered `413`.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Options {
        self.max_body = bytes;
        self
    }

    /// Most connections served at once (at least 1), a thread each; more
    /// are answered `503`.
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Options {
        self.max_connections = n;
        self
    }

    /// Longest wait for connections to finish once draining. Keep it below
    /// the master's `stop_timeout`, after which it sends `SIGKILL`.
    #[must_use]
    pub fn drain_deadline(mut self, deadline: Duration) -> Options {
        self.drain_deadline = deadline;
        self
    }

    fn check(&self) -> Result<(), Error> {
        if self.idle_timeout.is_zero() {
            return Err(Error::Option {
                name: "idle_timeout",
                problem: "must be more than zero",
            });
        }
        if self.max_connections == 0 {
            return Err(Error::Option {
                name: "max_connections",
                problem: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// Why a [`Server`] could not start or stopped accepting.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An [`Options`] value is out of range.
    Option {
        /// The option.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Accepting failed for the listener, not for one connection.
    Accept(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Option { name, problem } => {
                write!(f, "ally::http::Options::{name} {problem}")
            }
            Error::Accept(e) => write!(
                f,
                "accepting HTTP connections failed: {e} (is the listener a listening TCP socket?)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Accept(e) => Some(e),
            Error::Option { .. } => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Accept(e) => e,
            e @ Error::Option { .. } => io::Error::new(io::ErrorKind::InvalidInput, e),
        }
    }
}
