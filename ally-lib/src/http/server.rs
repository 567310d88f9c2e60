//! The accept loop: a thread per connection, bounded, tracked for the
//! drain.

use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use super::limits::{ACCEPT_BACKOFF, BUSY_DISCARD};
use super::response::write_response;
use super::{Error, Options, Request, Response, conn};
use crate::StopSignal;
use crate::drain::{self, Drain};

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a drain cut by its deadline left connections open"]
pub struct Drained {
    /// Connections still open when the drain deadline passed (0: every
    /// connection finished).
    pub left: usize,
    /// Times accepting paused [`ACCEPT_BACKOFF`] because the process ran
    /// out of descriptors or memory.
    pub accept_backoffs: u64,
}

impl Drained {
    /// Whether every connection finished before the deadline.
    pub fn is_complete(&self) -> bool {
        self.left == 0
    }
}

/// An HTTP/1.1 server: [`accept_until`](Self::accept_until) the stop
/// signal, then [`drain`](Self::drain). [`serve`](super::serve) does both.
pub struct Server<H> {
    options: Options,
    handler: Arc<H>,
    drain: Drain,
    backoffs: std::sync::atomic::AtomicU64,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("options", &self.options)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl<H> Server<H>
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    /// A server calling `handler` for each request.
    ///
    /// # Errors
    ///
    /// [`Error::Option`] when an option is out of range.
    pub fn new(options: Options, handler: H) -> Result<Server<H>, Error> {
        options.check()?;
        Ok(Server {
            options,
            handler: Arc::new(handler),
            drain: Drain::new(),
            backoffs: Default::default(),
        })
    }

    /// Accepts connections on `listener` ([`drain::accept`]) until `stop`
    /// is set, each served on its own thread. Past
    /// [`Options::max_connections`], or when no thread can be started, a
    /// connection is answered `503` with `Connection: close` at once.
    ///
    /// # Errors
    ///
    /// [`Error::Accept`] when accepting fails other than for one connection
    /// or for lack of descriptors or memory (then it pauses
    /// [`ACCEPT_BACKOFF`] and goes on). Connections already accepted are
    /// still served: call [`drain`](Self::drain) anyway.
    pub fn accept_until(&self, listener: &TcpListener, stop: &StopSignal) -> Result<(), Error> {
        loop {
            let stream = match drain::accept(listener, stop) {
                Ok(Some((stream, _peer))) => stream,
                Ok(None) => return Ok(()),
                Err(e) if out_of_resources(&e) => {
                    self.backoffs
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    stop.wait_timeout(ACCEPT_BACKOFF);
                    continue;
                }
                Err(e) => return Err(Error::Accept(e)),
            };
            if self.drain.active() >= self.options.max_connections {
                turn_away(stream);
                continue;
            }
            // Counted before the thread starts, so the drain never misses it.
            let guard = self.drain.track();
            let handler = Arc::clone(&self.handler);
            let options = self.options.clone();
            // To answer `503` with if no thread can be started.
            let spare = stream.try_clone().ok();
            let spawned = thread::Builder::new()
                .name("ally-http".to_owned())
                .spawn(move || conn::serve(stream, &options, &guard, &*handler));
            if let (Err(_), Some(spare)) = (spawned, spare) {
                turn_away(spare);
            }
        }
    }

    /// Live connections.
    pub fn active(&self) -> usize {
        self.drain.active()
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Starts the drain (each connection's next response says `Connection:
    /// close`, then it closes; idle ones close at their idle timeout) and
    /// waits until every connection closed or [`Options::drain_deadline`]
    /// passed.
    pub fn drain(&self) -> Drained {
        self.drain.start();
        let complete = self.drain.wait_idle(self.options.drain_deadline);
        Drained {
            left: if complete {
                0
            } else {
                self.drain.active().max(1)
            },
            accept_backoffs: self.backoffs.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Answers `503` and closes, without a thread: reads what the client sent
/// already (at most [`BUSY_DISCARD`] bytes, never blocking) so the close is
/// not a reset. A request that arrives later than the answer may still see
/// one.
fn turn_away(mut stream: TcpStream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut chunk = [0u8; 4096];
    let mut discarded = 0;
    while discarded < BUSY_DISCARD {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
    let busy = Response::text(503, "503 too many connections: try again\n");
    let _ = write_response(&mut stream, busy, true, false);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.read(&mut chunk);
}

/// `accept` errors that say the process is short of descriptors or memory.
fn out_of_resources(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|c| e.raw_os_error() == Some(c.raw_os_error()))
}

#[cfg(test)]
mod tests;
