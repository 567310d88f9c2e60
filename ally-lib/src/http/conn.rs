//! One connection's I/O: read requests, call the handler, write answers,
//! close gracefully. The decisions are [`State::next`]'s.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::limits::{LINGER, LINGER_MAX_BYTES, MAX_HEAD, MIN_WRITE_TIMEOUT};
use super::request::{Head, Reject, head_end, leading_blank, parse_head};
use super::response::write_response;
use super::state::{Event, State, TIMED_OUT};
use super::{Options, Request, Response};
use crate::drain::ConnGuard;

/// Serves `stream` until it closes; `guard` counts it in the drain.
pub(super) fn serve<H>(mut stream: TcpStream, options: &Options, guard: &ConnGuard, handler: &H)
where
    H: Fn(&Request) -> Response + ?Sized,
{
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(options.idle_timeout.max(MIN_WRITE_TIMEOUT)));
    let mut buf = Vec::with_capacity(4096);
    let mut head = None;
    let mut state = State::Reading;
    loop {
        let event = match state {
            State::Reading => match read_head(&mut stream, &mut buf, options.idle_timeout) {
                Ok(h) => {
                    let client_close = h.close;
                    head = Some(h);
                    Event::Head { client_close }
                }
                Err(e) => e,
            },
            State::Handling { .. } => {
                let Some(h) = head.take() else {
                    return;
                };
                match read_body(&mut stream, &mut buf, h, options) {
                    Ok((request, head_only)) => {
                        let response = catch_unwind(AssertUnwindSafe(|| handler(&request)))
                            .unwrap_or_else(|_| Response::text(500, "the handler panicked\n"));
                        // Decided now, not when the request came: a drain that
                        // started meanwhile closes the connection after this.
                        let draining = guard.is_draining();
                        let close = state.closes_after_response(draining);
                        match write_response(&mut stream, response, close, head_only) {
                            Ok(()) => Event::Written { draining },
                            Err(_) => Event::Gone,
                        }
                    }
                    Err(e) => e,
                }
            }
            State::Rejecting(r) => {
                let body = format!("{} {}\n", r.status, r.why);
                match write_response(&mut stream, Response::text(r.status, body), true, false) {
                    Ok(()) => Event::Written { draining: true },
                    Err(_) => Event::Gone,
                }
            }
            State::Closing => {
                close_gracefully(&stream);
                Event::Gone
            }
            State::Done => return,
        };
        state = state.next(event);
    }
}

/// Reads one head into `buf` (which may hold pipelined bytes already) and
/// removes it from `buf`; the error is the event to feed the state.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, idle: Duration) -> Result<Head, Event> {
    loop {
        let blank = leading_blank(buf);
        buf.drain(..blank);
        if let Some(end) = head_end(buf) {
            let head = parse_head(&buf[..end]).map_err(Event::Invalid);
            buf.drain(..end);
            return head;
        }
        if buf.len() >= MAX_HEAD {
            return Err(Event::Invalid(Reject {
                status: 431,
                why: "request head larger than 16 KiB",
            }));
        }
        stream
            .set_read_timeout(Some(idle))
            .map_err(|_| Event::Gone)?;
        let mut chunk = [0u8; 4096];
        // One past the bound at most, so an oversized head is detected.
        let want = chunk.len().min(MAX_HEAD + 1 - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(Event::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                let partial = !buf.is_empty();
                let readable = !partial && readable_now(stream);
                if partial || !readable {
                    return Err(Event::Timeout { partial, readable });
                }
                // A request arrived as the timer fired: read it.
            }
            Err(_) => return Err(Event::Gone),
        }
    }
}

/// Reads the body `head` announces (first from `buf`), after a `100
/// Continue` if asked for; returns the request and whether it is a `HEAD`.
fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: Head,
    options: &Options,
) -> Result<(Request, bool), Event> {
    let Head {
        mut request,
        content_length,
        expect_continue,
        ..
    } = head;
    let len = usize::try_from(content_length)
        .ok()
        .filter(|&n| n <= options.max_body)
        .ok_or(Event::Invalid(Reject {
            status: 413,
            why: "request body larger than the server accepts",
        }))?;
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let from_buf = len.min(buf.len());
    body.extend(buf.drain(..from_buf));
    if body.len() < len && expect_continue {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| Event::Gone)?;
    }
    stream
        .set_read_timeout(Some(options.idle_timeout))
        .map_err(|_| Event::Gone)?;
    let mut chunk = [0u8; 8192];
    while body.len() < len {
        let want = chunk.len().min(len - body.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(Event::Gone),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(Event::Invalid(TIMED_OUT)),
            Err(_) => return Err(Event::Gone),
        }
    }
    request.set_body(body);
    let head_only = request.method() == "HEAD";
    Ok((request, head_only))
}

/// Shuts down writing, then reads and discards until the client closes
/// (or [`LINGER`] passes, or [`LINGER_MAX_BYTES`] arrived), so that the
/// close never becomes a reset that destroys the last response.
pub(super) fn close_gracefully(mut stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut discarded = 0;
    let mut chunk = [0u8; 4096];
    while discarded < LINGER_MAX_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => discarded += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether bytes (or end of stream) are waiting, without blocking.
///
/// Toggling `O_NONBLOCK` is fine here: an accepted stream is its own open
/// file description, unlike the listener shared with other instances.
fn readable_now(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let ready = !matches!(stream.peek(&mut [0u8]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && ready
}
