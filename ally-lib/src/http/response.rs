//! Responses: small builders, and writing one out.

use std::io::{self, Write};

/// One response: status, headers, body.
///
/// `Content-Length` and `Connection` are written by the connection, which
/// owns framing and keep-alive; setting them here is an error that turns
/// the response into a `500` naming the header (so is a header name or
/// value with a control character, which could split the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status` (100-999; anything else is sent as a
    /// `500`), no headers, an empty body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200 OK`, no body.
    pub fn ok() -> Response {
        Response::new(200)
    }

    /// `status` with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The response as it is sent: itself, or a `500` saying what is wrong
    /// with it.
    fn checked(self) -> Response {
        if !(100..=999).contains(&self.status) {
            return Response::text(500, format!("handler returned status {}\n", self.status));
        }
        for (name, value) in &self.headers {
            let owned = ["content-length", "connection", "transfer-encoding"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h));
            let bad_name =
                name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':');
            let bad_value = value.bytes().any(|b| b.is_ascii_control() && b != b'\t');
            if owned || bad_name || bad_value {
                let why = if owned {
                    "is set by ally::http"
                } else {
                    "is malformed"
                };
                return Response::text(500, format!("handler's header `{name}` {why}\n"));
            }
        }
        self
    }
}

/// Writes `response` (checked) to `out` in one write: `close` says whether
/// it carries `Connection: close`, `head_only` leaves the body out (an
/// answer to `HEAD`, which still says the body's length).
pub(super) fn write_response(
    out: &mut impl Write,
    response: Response,
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let r = response.checked();
    let mut bytes = Vec::with_capacity(128 + r.body.len());
    let _ = write!(bytes, "HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (name, value) in &r.headers {
        let _ = write!(bytes, "{name}: {value}\r\n");
    }
    // Statuses without a body carry no length either (RFC 9110, 8.6).
    if !no_body(r.status) {
        let _ = write!(bytes, "Content-Length: {}\r\n", r.body.len());
    }
    let connection = if close { "close" } else { "keep-alive" };
    let _ = write!(bytes, "Connection: {connection}\r\n\r\n");
    if !head_only && !no_body(r.status) {
        bytes.extend_from_slice(&r.body);
    }
    out.write_all(&bytes)
}

/// Statuses that never carry a body (RFC 9110, 6.4.1): a body a handler
/// gives them is not sent.
fn no_body(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// The reason phrase of common statuses; empty for others, as allowed.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(r: Response, close: bool, head_only: bool) -> String {
        let mut out = Vec::new();
        write_response(&mut out, r, close, head_only).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_response_is_framed() {
        let r = Response::text(200, "hi\n").header("X-A", "1");
        assert_eq!(
            written(r.clone(), false, false),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-A: 1\r\n\
             Content-Length: 3\r\nConnection: keep-alive\r\n\r\nhi\n"
        );
        let head = written(r, true, true);
        assert!(
            head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn no_content_has_no_length_nor_body() {
        let out = written(Response::new(204).body("dropped"), false, false);
        assert_eq!(
            out,
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn bad_responses_become_500s_naming_the_fault() {
        for (r, needle) in [
            (
                Response::ok().header("Content-Length", "9"),
                "Content-Length",
            ),
            (
                Response::ok().header("X", "a\r\nInjected: 1"),
                "`X` is malformed",
            ),
            (Response::ok().header("A B", "1"), "`A B`"),
            (Response::new(42), "status 42"),
        ] {
            let out = written(r, false, false);
            assert!(out.starts_with("HTTP/1.1 500 "), "{out}");
            assert!(out.contains(needle), "{out}");
        }
    }
}
