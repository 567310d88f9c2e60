//! The load client against a tiny in-process HTTP server whose faults are
//! chosen per test.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::*;

/// What the server does on each connection.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers 200; after `close_after` responses on one connection, says
    /// `Connection: close` and closes (as a draining instance does).
    Good { close_after: Option<u64> },
    /// Answers 200 `n` times, then closes the connection without warning
    /// (the keep-alive bug the tests exist to catch).
    DropIdleAfter(u64),
    /// Answers 500.
    Status500,
    /// Announces 100 bytes of body, sends 10, closes.
    ShortBody,
    /// Reads requests and never answers.
    Silent,
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(behaviour: Behaviour) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    std::thread::spawn(move || serve(conn, behaviour));
                }
            })
        };
        Server {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head; `None` at end of stream. Returns whether the
/// client asked to close.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<bool> {
    let mut close = false;
    let mut first = true;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" && !first {
            return Some(close);
        }
        first = false;
        if line.to_ascii_lowercase().starts_with("connection: close") {
            close = true;
        }
    }
}

fn serve(conn: TcpStream, behaviour: Behaviour) {
    let mut r = BufReader::new(conn);
    let mut served = 0u64;
    while let Some(client_close) = read_request(&mut r) {
        served += 1;
        let w = r.get_mut();
        let body = "instance 7 pid 1\n";
        let ok = |close: bool| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Ally-Instance: 7\r\n{}\r\n{body}",
                body.len(),
                if close { "Connection: close\r\n" } else { "" }
            )
        };
        match behaviour {
            Behaviour::Good { close_after } => {
                let close = client_close || close_after.is_some_and(|n| served >= n);
                let _ = w.write_all(ok(close).as_bytes());
                if close {
                    return;
                }
            }
            Behaviour::DropIdleAfter(n) => {
                let _ = w.write_all(ok(client_close).as_bytes());
                if client_close || served >= n {
                    return;
                }
            }
            Behaviour::Status500 => {
                let _ = w.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
            }
            Behaviour::ShortBody => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Ally-Instance: 7\r\n\r\n0123456789");
                return;
            }
            Behaviour::Silent => {}
        }
    }
}

fn run(server: &Server, opts: LoadOptions, min_ok: u64) -> LoadStats {
    let load = Load::with_options(server.addr, opts);
    assert!(
        load.wait_for_ok(min_ok, Duration::from_secs(20)),
        "load made no progress"
    );
    load.stop()
}

#[test]
fn keep_alive_reuses_connections_and_counts_instances() {
    let server = Server::start(Behaviour::Good { close_after: None });
    let stats = run(&server, LoadOptions::new(4, true), 500);
    assert_eq!(stats.failures(), 0, "{stats}");
    assert!(stats.ok >= 500);
    assert_eq!(stats.connects, 4, "{stats}");
    assert_eq!(server.accepted.load(Ordering::Relaxed), 4);
    assert_eq!(stats.instances_seen.get(&7), Some(&stats.ok));
}

#[test]
fn close_mode_uses_one_connection_per_request() {
    let server = Server::start(Behaviour::Good { close_after: None });
    let stats = run(&server, LoadOptions::new(4, false), 200);
    assert_eq!(stats.failures(), 0, "{stats}");
    assert_eq!(stats.connects, stats.ok, "{stats}");
    assert_eq!(server.accepted.load(Ordering::Relaxed), stats.connects);
}

#[test]
fn connection_close_from_the_server_is_followed_without_failure() {
    let server = Server::start(Behaviour::Good {
        close_after: Some(3),
    });
    let stats = run(&server, LoadOptions::new(4, true), 300);
    assert_eq!(stats.failures(), 0, "{stats}");
    // Three requests per connection, give or take the ones cut by stop().
    assert!(
        stats.connects * 3 >= stats.ok && stats.connects > 4,
        "{stats}"
    );
}

#[test]
fn an_idle_keep_alive_connection_closed_under_the_client_fails_requests() {
    let server = Server::start(Behaviour::DropIdleAfter(2));
    let load = Load::with_options(server.addr, LoadOptions::new(2, true));
    assert!(wait_until(Duration::from_secs(20), || load.ok() >= 20
        && load.failed() >= 1));
    let stats = load.stop();
    assert!(stats.failed_requests > 0, "{stats}");
    assert!(
        stats.first_errors.iter().any(|e| e.contains("request #3")),
        "{stats}"
    );
}

fn expect_failures(behaviour: Behaviour, timeout: Duration, expected: &str) {
    let server = Server::start(behaviour);
    let mut opts = LoadOptions::new(1, true);
    opts.timeout = timeout;
    let load = Load::with_options(server.addr, opts);
    assert!(wait_until(Duration::from_secs(20), || load.failed() >= 3));
    let stats = load.stop();
    assert_eq!(stats.ok, 0, "{stats}");
    assert!(stats.failed_requests >= 2, "{stats}");
    assert!(
        stats.first_errors.iter().all(|e| e.contains(expected)),
        "{stats}"
    );
}

#[test]
fn a_non_200_status_is_a_failure() {
    expect_failures(
        Behaviour::Status500,
        Duration::from_secs(10),
        "unexpected status line",
    );
}

#[test]
fn a_short_body_is_a_failure() {
    expect_failures(
        Behaviour::ShortBody,
        Duration::from_secs(10),
        "in the body (10 of 100 bytes)",
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    expect_failures(
        Behaviour::Silent,
        Duration::from_millis(100),
        "read the status line",
    );
}

#[test]
fn a_refused_connect_is_a_failed_connect() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let load = Load::start(addr, 2, true);
    assert!(wait_until(Duration::from_secs(10), || load.failed() >= 4));
    let stats = load.stop();
    assert!(stats.failed_connects > 0, "{stats}");
    assert_eq!(stats.ok, 0);
    assert!(stats.first_errors[0].contains("connect:"), "{stats}");
}

#[test]
#[should_panic(expected = "loopback")]
fn non_loopback_targets_are_refused() {
    Load::start("192.0.2.1:80".parse().unwrap(), 1, true);
}

#[test]
fn responses_are_parsed_strictly() {
    let parse = |s: &str| read_response(&mut s.as_bytes());
    assert_eq!(
        parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX-Ally-Instance: 3\r\nConnection: Close\r\n\r\nhi"
        ),
        Ok(Response {
            instance: 3,
            close: true
        })
    );
    assert!(parse("HTTP/1.1 200 OK\r\nX-Ally-Instance: 3\r\n\r\nhi").is_err());
    assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").is_err());
    assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Ally-Instance: 3\r\n").is_err());
    assert!(
        parse("")
            .unwrap_err()
            .contains("closed before the status line")
    );
}
