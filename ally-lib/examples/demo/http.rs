//! The demo's routes; `ally::http` does the connections and the drain.

use std::time::Duration;

use ally::http::{Request, Response};

/// What every answer needs to know.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Instance id, for the body and `X-Ally-Instance`.
    pub instance: u64,
    /// Process id, for the body.
    pub pid: u32,
    /// Sleep this long before answering each request.
    pub delay: Duration,
}

impl Routes {
    /// `GET` and `HEAD` of any path: `200` with `instance {id} pid {pid}`;
    /// other methods `405`. Every answer carries `X-Ally-Instance`.
    pub fn answer(&self, req: &Request) -> Response {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let response = match req.method() {
            "GET" | "HEAD" => Response::text(
                200,
                format!("instance {} pid {}\n", self.instance, self.pid),
            ),
            _ => Response::text(405, "405 Method Not Allowed\n").header("Allow", "GET, HEAD"),
        };
        response.header("X-Ally-Instance", self.instance.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let routes = Routes {
            instance: 7,
            pid: 42,
            delay: Duration::ZERO,
        };
        let ok = routes.answer(&Request::new("GET", "/any"));
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.body_bytes(), b"instance 7 pid 42\n");
        assert_eq!(ok.get_header("x-ally-instance"), Some("7"));
        let no = routes.answer(&Request::new("POST", "/"));
        assert_eq!(no.status(), 405);
        assert_eq!(no.get_header("allow"), Some("GET, HEAD"));
    }
}
