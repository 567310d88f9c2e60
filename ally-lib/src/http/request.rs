//! Parsing a request head: pure functions over bytes, no I/O.

use super::limits::{MAX_HEAD, MAX_HEADERS};

/// One HTTP/1.x request, with its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    http10: bool,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// The method, as sent (`GET`, `HEAD`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target, as sent (`/`, `/a?b=c`, ...).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the request line said `HTTP/1.0`.
    pub fn is_http10(&self) -> bool {
        self.http10
    }

    /// The first value of header `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, in the order sent (names as sent, values trimmed).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The body (empty without `Content-Length`).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A request built by hand, for testing handlers.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            http10: false,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (for testing handlers).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body (for testing handlers).
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    pub(super) fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }
}

/// A parsed head: the request without its body, and what the connection
/// needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) request: Request,
    /// The client asked to close after this request (`Connection: close`,
    /// or HTTP/1.0 without `Connection: keep-alive`).
    pub(super) close: bool,
    /// Length of the body to read (`Content-Length`, 0 without).
    pub(super) content_length: u64,
    /// `Expect: 100-continue` was sent.
    pub(super) expect_continue: bool,
}

/// Why a request is answered with an error instead of reaching the
/// handler; the connection closes after that answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reject {
    pub(super) status: u16,
    pub(super) why: &'static str,
}

const fn reject(status: u16, why: &'static str) -> Reject {
    Reject { status, why }
}

/// Skips the empty lines allowed before a request line (RFC 9112, 2.2).
pub(super) fn leading_blank(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// Length of the head, terminator included, if it is complete.
pub(super) fn head_end(buf: &[u8]) -> Option<usize> {
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

/// Parses a complete head (as delimited by [`head_end`]).
pub(super) fn parse_head(head: &[u8]) -> Result<Head, Reject> {
    const BAD_LINE: Reject = reject(400, "malformed request line");
    const BAD_HEADER: Reject = reject(400, "malformed header line");
    if head.len() > MAX_HEAD {
        return Err(reject(431, "request head larger than 16 KiB"));
    }
    let text = std::str::from_utf8(head).map_err(|_| reject(400, "request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut parts = lines.next().ok_or(BAD_LINE)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD_LINE);
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_alphabetic())
        || target.is_empty()
        || target.bytes().any(|b| b.is_ascii_control())
    {
        return Err(BAD_LINE);
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => return Err(reject(505, "only HTTP/1.0 and 1.1 are served")),
        _ => return Err(BAD_LINE),
    };
    let mut request = Request::new(method, target);
    request.http10 = http10;
    let (mut close, mut keep_alive, mut length, mut expect_continue) = (false, false, None, false);
    for line in lines.filter(|l| !l.is_empty()) {
        if request.headers.len() == MAX_HEADERS {
            return Err(reject(431, "more than 100 headers"));
        }
        let (name, value) = line.split_once(':').ok_or(BAD_HEADER)?;
        // No whitespace before the colon, no obsolete line folding.
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(BAD_HEADER);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| reject(400, "Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(reject(400, "conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(reject(
                501,
                "Transfer-Encoding (chunked bodies) is not supported: send Content-Length",
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(reject(417, "only `Expect: 100-continue` is supported"));
            }
            expect_continue = !http10;
        }
        request.headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(Head {
        request,
        close: close || (http10 && !keep_alive),
        content_length: length.unwrap_or(0),
        expect_continue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &[u8]) -> u16 {
        parse_head(head).map_or_else(|r| r.status, |_| 200)
    }

    #[test]
    fn heads_end_with_crlf_or_lf() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(leading_blank(b"\r\n\r\nGET"), 4);
    }

    #[test]
    fn a_request_parses() {
        let h =
            parse_head(b"POST /a?b HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(h.request.method(), "POST");
        assert_eq!(h.request.path(), "/a?b");
        assert_eq!(h.request.header("x-a"), Some("1"));
        assert_eq!(h.request.headers().count(), 3);
        assert_eq!(h.content_length, 5);
        assert!(!h.close && !h.expect_continue);
    }

    #[test]
    fn keep_alive_defaults() {
        assert!(
            !parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .close
        );
        assert!(parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().close);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(!h.close);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(h.close);
    }

    #[test]
    fn expect_continue_only_for_http11() {
        let h = parse_head(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.unwrap().expect_continue);
        let h = parse_head(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.unwrap().expect_continue);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nExpect: tea\r\n\r\n"), 417);
    }

    #[test]
    fn malformed_heads_are_rejected() {
        for head in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"G3T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
            b"GARBAGE\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{}", String::from_utf8_lossy(head));
        }
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn header_count_is_bounded() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = head.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(status(&ok), 200);
        head.extend_from_slice(b"X-last: v\r\n\r\n");
        assert_eq!(status(&head), 431);
    }

    #[test]
    fn parsing_never_panics_on_random_heads() {
        // Bytes that matter to the parser, mixed at random (xorshift).
        const ALPHABET: &[u8] = b"GET HTTP/1.0:\r\n\t ,-9\xff\x00aContent-Length";
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..20_000 {
            let mut head = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                head.push(ALPHABET[(seed % ALPHABET.len() as u64) as usize]);
            }
            let _ = head_end(&head);
            let _ = parse_head(&head);
        }
    }

    #[test]
    fn parsing_never_panics_on_prefixes() {
        let head = b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for n in 0..head.len() {
            let _ = parse_head(&head[..n]);
        }
    }
}
