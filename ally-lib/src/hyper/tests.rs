//! The drain, connection by connection, against a real socket.

use std::convert::Infallible;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::TcpStream;
use ::tokio::sync::Semaphore;
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

/// A server answering `hi` whenever `gate` lets it, stopped by the
/// returned signal.
fn server(
    gate: &Arc<Gate>,
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
    let serve = tune(
        serve(listener, Hello(Arc::clone(gate)))
            .stop(stop)
            .ready(false),
    );
    (signal, addr, ::tokio::spawn(serve.into_future()))
}

/// When the service's requests start, and when they may answer.
#[derive(Debug)]
struct Gate {
    /// One permit per request that reached the service.
    started: Semaphore,
    /// One permit per answer allowed.
    release: Semaphore,
}

impl Gate {
    /// Answers at once.
    fn open() -> Arc<Gate> {
        Gate::with(Semaphore::MAX_PERMITS)
    }

    /// Answers only once [`release`](Self::release)d.
    fn closed() -> Arc<Gate> {
        Gate::with(0)
    }

    fn with(release: usize) -> Arc<Gate> {
        Arc::new(Gate {
            started: Semaphore::new(0),
            release: Semaphore::new(release),
        })
    }

    /// Waits until `n` more requests reached the service.
    async fn started(&self, n: u32) {
        let permits = ::tokio::time::timeout(WAIT, self.started.acquire_many(n))
            .await
            .expect("the requests reached the service in time");
        permits.unwrap().forget();
    }

    /// Lets one more request answer.
    fn release(&self) {
        self.release.add_permits(1);
    }
}

/// Answers `hi` when its gate lets it.
#[derive(Debug, Clone)]
struct Hello(Arc<Gate>);

type HelloFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for Hello {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = HelloFuture;

    fn call(&self, _: Request<Incoming>) -> HelloFuture {
        let gate = Arc::clone(&self.0);
        Box::pin(async move {
            gate.started.add_permits(1);
            if let Ok(permit) = gate.release.acquire().await {
                permit.forget();
            }
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
    let (signal, addr, server) = server(&Gate::open(), |s| s.idle_grace(WAIT * 2));
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
    let (signal, addr, server) = server(&Gate::open(), |s| s.idle_grace(grace));
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
    let gate = Gate::closed();
    let (signal, addr, server) = server(&gate, |s| s.idle_grace(WAIT * 2));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    // Stop while the request runs.
    gate.started(1).await;
    signal.trigger();
    gate.release();
    let head = response(&mut conn).await;
    assert!(head.contains("connection: close"), "{head}");
    closed(&mut conn).await;
    assert_eq!(finished(server).await.left_open, 0);
}

#[::tokio::test]
async fn the_deadline_ends_the_drain() {
    // A request that never finishes.
    let gate = Gate::closed();
    let (signal, addr, server) = server(&gate, |s| s.deadline(Duration::from_millis(200)));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(REQUEST).await.unwrap();
    gate.started(1).await;
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
    let gate = Gate::closed();
    // A long idle grace: the HTTP/2 connection must not wait for it.
    let (signal, addr, server) = server(&gate, |s| s.idle_grace(WAIT * 2));
    let (mut send, conn) = h2(addr).await;
    gate.release();
    let first = send.send_request(h2_request()).await.unwrap();
    assert_eq!(first.status(), 200);
    let in_flight = ::tokio::spawn(send.send_request(h2_request()));
    // Stop while the second request runs.
    gate.started(2).await;
    signal.trigger();
    gate.release();
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
