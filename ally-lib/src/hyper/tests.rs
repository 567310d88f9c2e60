//! The drain, connection by connection, against a real socket.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::time::Duration;

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::TcpStream;
use ::tokio::task::JoinHandle;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;

use super::{Drained, serve};
use crate::StopSignal;
use crate::tokio::Stop;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
/// Bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

/// A server answering `hi` after `delay`, stopped by the returned signal.
fn server(
    delay: Duration,
    tune: impl FnOnce(super::Serve<Hello>) -> super::Serve<Hello>,
) -> (
    StopSignal,
    std::net::SocketAddr,
    JoinHandle<std::io::Result<Drained>>,
) {
    let signal = StopSignal::new().unwrap();
    let stop = Stop::with_signal(signal.clone()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tune(serve(listener, Hello(delay)).stop(stop).ready(false));
    (signal, addr, ::tokio::spawn(serve.into_future()))
}

/// Answers `hi` after its delay.
#[derive(Debug, Clone, Copy)]
struct Hello(Duration);

type HelloFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for Hello {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = HelloFuture;

    fn call(&self, _: Request<Incoming>) -> HelloFuture {
        let delay = self.0;
        Box::pin(async move {
            ::tokio::time::sleep(delay).await;
            Ok(Response::new("hi".to_owned()))
        })
    }
}

/// Reads one response ending in the body `hi`; its head, lowercased.
async fn response(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nhi") {
        let n = ::tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).to_lowercase()
}

/// Waits for the peer's close; fails on anything else.
async fn closed(conn: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = ::tokio::time::timeout(WAIT, conn.read(&mut buf))
        .await
        .expect("the close in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "more after the last response");
}

/// Waits until nothing accepts on `addr` any more.
async fn port_closed(addr: std::net::SocketAddr) {
    let deadline = ::tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(::tokio::time::Instant::now() < deadline, "still accepting");
        ::tokio::task::yield_now().await;
    }
}

async fn finished(server: JoinHandle<std::io::Result<Drained>>) -> Drained {
    ::tokio::time::timeout(WAIT, server)
        .await
        .expect("serve returned in time")
        .unwrap()
        .unwrap()
}

#[::tokio::test]
async fn an_idle_keep_alive_connection_gets_its_next_request_answered_then_closes() {
    let (signal, addr, server) = server(Duration::ZERO, |s| s.idle_grace(WAIT * 2));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    let head = response(&mut conn).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    signal.trigger();
    // Stopped accepting: the port is closed.
    port_closed(addr).await;
    // The connection is idle under its client at the stop: not closed,
    // its next request is answered, with `Connection: close`.
    conn.write_all(REQUEST).await.unwrap();
    let head = response(&mut conn).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    closed(&mut conn).await;
    let drained = finished(server).await;
    assert_eq!((drained.at_stop, drained.left_open), (1, 0), "{drained}");
}

#[::tokio::test]
async fn a_connection_without_requests_is_closed_after_the_idle_grace() {
    let grace = Duration::from_millis(200);
    let (signal, addr, server) = server(Duration::ZERO, |s| s.idle_grace(grace));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // Accepted before the stop (a request proves it), then idle.
    conn.write_all(REQUEST).await.unwrap();
    response(&mut conn).await;
    let stopped = ::tokio::time::Instant::now();
    signal.trigger();
    closed(&mut conn).await;
    assert!(stopped.elapsed() >= grace, "closed before the grace");
    assert_eq!(finished(server).await.left_open, 0);
}

#[::tokio::test]
async fn a_request_in_flight_at_the_stop_finishes_with_connection_close() {
    let delay = Duration::from_millis(300);
    let (signal, addr, server) = server(delay, |s| s.idle_grace(WAIT * 2));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    // Let the request reach the service, then stop while it runs.
    ::tokio::time::sleep(delay / 3).await;
    signal.trigger();
    let head = response(&mut conn).await;
    assert!(head.contains("connection: close"), "{head}");
    closed(&mut conn).await;
    assert_eq!(finished(server).await.left_open, 0);
}

#[::tokio::test]
async fn the_deadline_ends_the_drain() {
    let (signal, addr, server) = server(WAIT * 10, |s| s.deadline(Duration::from_millis(200)));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    ::tokio::time::sleep(Duration::from_millis(50)).await;
    signal.trigger();
    let drained = finished(server).await;
    assert_eq!((drained.at_stop, drained.left_open), (1, 1), "{drained}");
    assert!(drained.to_string().contains("deadline"), "{drained}");
    // The connection was dropped with the drain.
    closed(&mut conn).await;
}

/// An HTTP/2 (h2c) connection to `addr`: its request sender, and the
/// connection's task, which ends when the server closes it.
async fn h2(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<String>,
    JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (
        send,
        ::tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

fn h2_request() -> Request<String> {
    Request::builder()
        .uri("http://test/")
        .version(http::Version::HTTP_2)
        .body(String::new())
        .unwrap()
}

#[::tokio::test]
async fn http2_gets_goaway_at_the_stop_and_its_stream_in_flight_finishes() {
    let delay = Duration::from_millis(300);
    // A long idle grace: the HTTP/2 connection must not wait for it.
    let (signal, addr, server) = server(delay, |s| s.idle_grace(WAIT * 2));
    let (mut send, conn) = h2(addr).await;
    let first = send.send_request(h2_request()).await.unwrap();
    assert_eq!(first.status(), 200);
    let in_flight = ::tokio::spawn(send.send_request(h2_request()));
    ::tokio::time::sleep(delay / 3).await;
    signal.trigger();
    let response = ::tokio::time::timeout(WAIT, in_flight)
        .await
        .expect("in time");
    assert_eq!(response.unwrap().unwrap().status(), 200);
    ::tokio::time::timeout(WAIT, conn)
        .await
        .expect("closed by GOAWAY")
        .unwrap();
    assert_eq!(finished(server).await.left_open, 0);
}
