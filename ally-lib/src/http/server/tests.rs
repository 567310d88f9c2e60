//! A real server on 127.0.0.1, real clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::*;

type Handler = fn(&Request) -> Response;

struct Running {
    addr: SocketAddr,
    stop: StopSignal,
    server: Arc<Server<Handler>>,
    thread: JoinHandle<Result<Drained, Error>>,
}

fn handler(req: &Request) -> Response {
    thread::sleep(Duration::from_millis(1));
    match req.path() {
        "/echo" => Response::new(200).body(req.body()),
        "/panic" => panic!("handler test panic"),
        _ => {
            Response::text(200, format!("{} {}\n", req.method(), req.path())).header("X-Test", "1")
        }
    }
}

/// Waits until the server holds `n` connections.
fn wait_active(r: &Running, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.server.active() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} connections",
            r.server.active()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn start(options: Options) -> Running {
    let listener = crate::listen_tcp("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = StopSignal::new().unwrap();
    let server = Arc::new(Server::new(options, handler as Handler).unwrap());
    let (s, srv) = (stop.clone(), Arc::clone(&server));
    let thread = thread::spawn(move || {
        let accepted = srv.accept_until(&listener, &s);
        let drained = srv.drain();
        accepted.map(|()| drained)
    });
    Running {
        addr,
        stop,
        server,
        thread,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    close: bool,
    headers: String,
    body: Vec<u8>,
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    fn answer(&mut self, head_only: bool) -> Result<Answer, String> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|l| l.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("status line {line:?}"))?;
        let (mut headers, mut length, mut close) = (String::new(), 0, false);
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            close |= l == "connection: close";
            headers.push_str(&l);
            headers.push('\n');
        }
        let mut body = vec![
            0;
            if head_only || status == 100 {
                0
            } else {
                length
            }
        ];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        Ok(Answer {
            status,
            close,
            headers,
            body,
        })
    }

    fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        self.answer(false)
    }

    /// Reads to the end: the server closed gracefully, not with a reset.
    fn closed(mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

fn stop(r: Running) -> Drained {
    r.stop.trigger();
    r.thread.join().unwrap().unwrap()
}

#[test]
fn keep_alive_head_bodies_and_pipelining() {
    let r = start(Options::new());
    let mut c = Client::connect(r.addr);
    let a = c.get("/x").unwrap();
    assert_eq!((a.status, a.close), (200, false));
    assert_eq!(a.body, b"GET /x\n");
    assert!(a.headers.contains("x-test: 1"), "{}", a.headers);
    c.send(b"HEAD /h HTTP/1.1\r\n\r\n").unwrap();
    let a = c.answer(true).unwrap();
    assert!(a.headers.contains("content-length: 8"), "{}", a.headers);
    c.send(b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /p HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(c.answer(false).unwrap().body, b"hello");
    assert_eq!(c.answer(false).unwrap().body, b"GET /p\n");
    c.send(b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .unwrap();
    assert_eq!(c.answer(false).unwrap().status, 100);
    c.send(b"ok").unwrap();
    assert_eq!(c.answer(false).unwrap().body, b"ok");
    let a = c.get("/panic").unwrap();
    assert_eq!(a.status, 500);
    // HTTP/1.0 closes unless asked to keep alive.
    let mut c10 = Client::connect(r.addr);
    c10.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert!(!c10.answer(false).unwrap().close);
    c10.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(c10.answer(false).unwrap().close);
    assert!(c10.closed());
    drop(c);
    assert!(stop(r).is_complete());
}

#[test]
fn bad_requests_get_clear_answers_and_a_close() {
    let r = start(Options::new().max_body(4));
    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.resize(crate::http::limits::MAX_HEAD + 10, b'a');
    for (request, status, says) in [
        (
            &b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            413,
            "body",
        ),
        (&long, 431, "16 KiB"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
            "Content-Length",
        ),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "header"),
        (b"GET / HTTP/3\r\n\r\n", 505, "HTTP/1.0"),
    ] {
        let mut c = Client::connect(r.addr);
        c.send(request).unwrap();
        let a = c.answer(false).unwrap();
        assert_eq!((a.status, a.close), (status, true));
        let body = String::from_utf8(a.body).unwrap();
        assert!(body.contains(says), "{body}");
        assert!(c.closed());
    }
    assert!(stop(r).is_complete());
}

#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let r = start(Options::new().idle_timeout(Duration::from_millis(200)));
    let mut c = Client::connect(r.addr);
    assert_eq!(c.get("/").unwrap().status, 200);
    // Nothing sent: the server closes, gracefully.
    assert!(c.closed());
    assert!(stop(r).is_complete());
}

#[test]
fn a_drain_answers_the_next_request_on_idle_connections() {
    let r = start(Options::new().idle_timeout(Duration::from_secs(5)));
    let mut idle = Client::connect(r.addr);
    assert!(!idle.get("/").unwrap().close);
    // Accepted just before the stop, no request yet.
    let mut fresh = Client::connect(r.addr);
    wait_active(&r, 2);
    r.stop.trigger();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !r.server.is_draining() {
        assert!(
            std::time::Instant::now() < deadline,
            "the drain did not start"
        );
        thread::sleep(Duration::from_millis(5));
    }
    // Not a wait for a condition: both stay idle while draining, which is
    // when a careless drain closes them.
    thread::sleep(Duration::from_millis(300));
    for c in [&mut idle, &mut fresh] {
        let a = c.get("/").unwrap();
        assert_eq!((a.status, a.close), (200, true));
    }
    assert!(idle.closed() && fresh.closed());
    assert!(r.thread.join().unwrap().unwrap().is_complete());
}

#[test]
fn keep_alive_clients_see_no_failure_across_a_stop() {
    let r = start(Options::new());
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = r.addr;
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for n in 1.. {
                    let a = c.get("/").map_err(|e| format!("request {n}: {e}"))?;
                    if a.status != 200 {
                        return Err(format!("request {n}: {a:?}"));
                    }
                    if a.close {
                        return if c.closed() {
                            Ok(n)
                        } else {
                            Err("reset".into())
                        };
                    }
                }
                unreachable!()
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let drained = stop(r);
    for c in clients {
        let answered = c.join().unwrap().unwrap();
        assert!(answered > 1, "{answered}");
    }
    assert!(drained.is_complete());
}

#[test]
fn past_max_connections_clients_get_503() {
    let r = start(Options::new().max_connections(1));
    let mut first = Client::connect(r.addr);
    assert_eq!(first.get("/").unwrap().status, 200);
    wait_active(&r, 1);
    let mut second = Client::connect(r.addr);
    let a = second.get("/").unwrap();
    assert_eq!((a.status, a.close), (503, true));
    drop(first);
    assert!(stop(r).is_complete());
}

#[test]
fn bad_options_are_refused() {
    let e = Server::new(
        Options::new().idle_timeout(Duration::ZERO),
        |_: &Request| Response::ok(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ally::http::Options::idle_timeout must be more than zero"
    );
    assert!(
        Server::new(Options::new().max_connections(0), |_: &Request| {
            Response::ok()
        })
        .is_err()
    );
}
