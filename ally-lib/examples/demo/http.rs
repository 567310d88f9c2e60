//! One HTTP/1.1 connection: keep-alive, and a drain that fails no request.
//!
//! The rules that make a reload invisible to clients:
//! - a request that was read is always answered;
//! - once draining, each response says `Connection: close`, decided when
//!   the response is written (so the first request on a connection accepted
//!   just before the stop is answered too);
//! - an idle connection is closed only after the idle timeout, and only if
//!   no byte arrived at the last moment;
//! - every close is graceful: shut down writing, then read and discard
//!   until the client closes, so unread bytes never turn the close into a
//!   reset that could destroy the last response.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use ally::drain::Drain;

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// How long a graceful close waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// Most bytes read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 1 << 20;

/// What every connection needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Instance id, for the body and `X-Ally-Instance`.
    pub instance: u64,
    /// Process id, for the body.
    pub pid: u32,
    /// Close a connection that sends nothing for this long.
    pub idle_timeout: Duration,
    /// Sleep this long before answering each request.
    pub delay: Duration,
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    method: String,
    /// Whether the client asked to close (or spoke HTTP/1.0 without
    /// keep-alive).
    close: bool,
    content_length: u64,
}

/// Why no request could be read.
#[derive(Debug)]
enum NoRequest {
    /// The client closed, or the connection failed: nothing to answer.
    Gone,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// A response to send before closing.
    Reject(u16, &'static str),
}

/// Serves `stream` until it closes; the caller holds its drain guard.
pub fn serve(mut stream: TcpStream, settings: &Settings, drain: &Drain) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(settings.idle_timeout.max(Duration::from_secs(5))));
    let mut buf = Vec::with_capacity(4096);
    loop {
        let req = match read_request(&mut stream, &mut buf, settings.idle_timeout) {
            Ok(req) => req,
            Err(NoRequest::Gone) => return,
            Err(NoRequest::Idle) => return close_gracefully(stream),
            Err(NoRequest::Reject(status, reason)) => {
                let _ = respond(&mut stream, settings, status, reason, true, false);
                return close_gracefully(stream);
            }
        };
        if discard_body(
            &mut stream,
            &mut buf,
            req.content_length,
            settings.idle_timeout,
        )
        .is_err()
        {
            return;
        }
        if !settings.delay.is_zero() {
            std::thread::sleep(settings.delay);
        }
        // Decided now, not when the request arrived: a drain that started
        // meanwhile closes this connection after this answer.
        let close = req.close || drain.is_draining();
        let (status, reason) = match req.method.as_str() {
            "GET" | "HEAD" => (200, "OK"),
            _ => (405, "Method Not Allowed"),
        };
        let head_only = req.method == "HEAD";
        if respond(&mut stream, settings, status, reason, close, head_only).is_err() {
            return;
        }
        if close {
            return close_gracefully(stream);
        }
    }
}

/// Reads one request head into `buf` (which may already hold pipelined
/// bytes) and removes it from `buf`.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> Result<Request, NoRequest> {
    loop {
        // Empty lines before a request line are allowed (RFC 9112, 2.2).
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        buf.drain(..blank);
        if let Some(end) = head_end(buf) {
            let req = parse_head(&buf[..end]);
            buf.drain(..end);
            return req;
        }
        if buf.len() >= MAX_HEAD {
            return Err(NoRequest::Reject(431, "Request Header Fields Too Large"));
        }
        let _ = stream.set_read_timeout(Some(idle));
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(MAX_HEAD + 4 - buf.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(NoRequest::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                if !buf.is_empty() {
                    return Err(NoRequest::Reject(408, "Request Timeout"));
                }
                // A request that arrived just as the timeout fired is
                // served, not cut off.
                if !readable_now(stream) {
                    return Err(NoRequest::Idle);
                }
            }
            Err(_) => return Err(NoRequest::Gone),
        }
    }
}

/// Length of the head, terminator included, if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match &buf[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

fn parse_head(head: &[u8]) -> Result<Request, NoRequest> {
    const BAD: NoRequest = NoRequest::Reject(400, "Bad Request");
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut parts = lines.next().ok_or(BAD)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) || target.is_empty() {
        return Err(BAD);
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => {
            return Err(NoRequest::Reject(505, "HTTP Version Not Supported"));
        }
        _ => return Err(BAD),
    };
    let (mut close, mut keep_alive, mut length) = (false, false, None);
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(BAD)?;
        // No whitespace before the colon, no obsolete line folding.
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(BAD);
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| BAD)?;
            if length.is_some_and(|l| l != n) {
                return Err(BAD);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(NoRequest::Reject(501, "Not Implemented"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    Ok(Request {
        method: method.to_owned(),
        close: close || (http10 && !keep_alive),
        content_length: length.unwrap_or(0),
    })
}

/// Reads and drops a request body of `len` bytes, first from `buf`.
fn discard_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: u64,
    idle: Duration,
) -> io::Result<()> {
    let from_buf = usize::try_from(len).unwrap_or(usize::MAX).min(buf.len());
    buf.drain(..from_buf);
    let mut left = len - from_buf as u64;
    stream.set_read_timeout(Some(idle))?;
    let mut chunk = [0u8; 8192];
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn respond(
    stream: &mut TcpStream,
    s: &Settings,
    status: u16,
    reason: &str,
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let body = if status == 200 {
        format!("instance {} pid {}\n", s.instance, s.pid)
    } else {
        format!("{status} {reason}\n")
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         X-Ally-Instance: {}\r\n\
         {allow}\
         Connection: {}\r\n\r\n",
        body.len(),
        s.instance,
        if close { "close" } else { "keep-alive" },
    );
    if !head_only {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())
}

/// Shuts down writing, then reads and discards until the client closes (or
/// [`LINGER`] passes), so that the close never becomes a reset.
fn close_gracefully(mut stream: TcpStream) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_with_crlf_or_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn keep_alive_defaults() {
        let r = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(!r.close);
        let r = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(r.close);
        let r = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(!r.close);
        let r = parse_head(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(r.close);
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for head in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(head), Err(NoRequest::Reject(400, _))),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert!(matches!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(NoRequest::Reject(505, _))
        ));
    }
}
