//! An axum server under ally: the same zero-failure reloads as the `demo`
//! example, on tokio.
//!
//! ```text
//! axum [--addr ADDR]
//! ```
//!
//! Every `GET /` (or `HEAD /`) is answered `200` with the body
//! `instance {id} pid {pid}\n` and an `X-Ally-Instance` header. Run it
//! under `ally-master`, or alone (`cargo run -p ally --example axum`), where
//! Ctrl-C drains and exits. `--addr` is the listen address (default
//! `127.0.0.1:8080`).
//!
//! How it fits together:
//!
//! - the listener comes from [`ally::listen_tcp`], which is non-blocking as
//!   [`tokio::net::TcpListener::from_std`] requires (never make it
//!   blocking: under a master, the flag is shared with the other instances);
//! - the stop signal is turned into something tasks can `.await` (a thread
//!   waits for it and sets a tokio watch channel);
//! - once stopping, the listener stops accepting at once, and every
//!   response carries `Connection: close`, so each keep-alive client is
//!   told to reconnect (to the new instance) in an answer, not by a close;
//! - only then does axum's graceful shutdown start, after the connections
//!   closed or [`IDLE_GRACE`] passed. It is not started at once because
//!   hyper closes idle keep-alive connections right away when it starts,
//!   under a client that may be sending its next request at that moment:
//!   that request would fail.
//!
//! Logs to stderr, one line each: `axum: instance N pid P listening on
//! ADDR`, `axum: instance N pid P stopping: draining K connections` and
//! `axum: instance N pid P exiting: ...`. Exit status: 0 after a drain, 1 on
//! a runtime error, 2 on a usage error.

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ally::StopSignal;
use ally::drain::{ConnGuard, Drain};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Once stopping, how long keep-alive connections may stay open without
/// sending a request before they are closed. Shorter than the master's stop
/// timeout.
const IDLE_GRACE: Duration = Duration::from_secs(5);

/// Once stopping, the longest wait for connections before exiting anyway.
const DRAIN_DEADLINE: Duration = Duration::from_secs(25);

/// Exit status for a bad command line.
const USAGE: u8 = 2;

const HELP: &str = "usage: axum [--addr ADDR]";

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(msg) => {
            eprintln!("axum: {msg}\n{HELP}");
            return ExitCode::from(USAGE);
        }
    };
    match run(&addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum: pid {}: {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<String, String> {
    let mut addr = "127.0.0.1:8080".to_owned();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => addr = it.next().ok_or("--addr needs a value")?,
            "-h" | "--help" => return Err("help".to_owned()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(addr)
}

/// Who answers: the body and header of every response.
#[derive(Debug)]
struct Me {
    id: u64,
    pid: u32,
}

async fn run(addr: &str) -> io::Result<()> {
    // First, so the stop signal never finds the process without a handler.
    let stop = Arc::new(Stopped::new(ally::stop_signal()?)?);
    // Non-blocking already, as `from_std` requires.
    let listener = TcpListener::from_std(ally::listen_tcp(addr)?.into_std())?;
    let me = ally::instance()?;
    let me = Arc::new(Me {
        id: me.id,
        pid: std::process::id(),
    });
    let who = format!("instance {} pid {}", me.id, me.pid);
    eprintln!("axum: {who} listening on {}", listener.local_addr()?);

    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(hello))
        .with_state(Arc::clone(&me))
        .layer(axum::middleware::map_response_with_state(
            drain.clone(),
            close_when_draining,
        ));
    let listener = Draining {
        listener: Some(listener),
        stop: Arc::clone(&stop),
        drain: drain.clone(),
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(wind_down(Arc::clone(&stop), drain.clone(), who.clone()))
        .into_future();
    ally::ready()?;

    let deadline = async {
        stop.wait().await;
        tokio::time::sleep(DRAIN_DEADLINE).await;
    };
    tokio::select! {
        served = server => {
            served?;
            eprintln!("axum: {who} exiting: all connections closed");
        }
        () = deadline => eprintln!(
            "axum: {who} exiting: drain deadline of {} s passed with {} connections open",
            DRAIN_DEADLINE.as_secs(),
            drain.active()
        ),
    }
    Ok(())
}

async fn hello(State(me): State<Arc<Me>>) -> impl IntoResponse {
    (
        [("x-ally-instance", me.id.to_string())],
        format!("instance {} pid {}\n", me.id, me.pid),
    )
}

/// Once draining, every response closes its connection: the client's next
/// request goes to a new connection, accepted by the new instance.
///
/// Decided when the response is made, not when the request arrived, so a
/// request in flight when the stop signal came closes its connection too.
async fn close_when_draining(State(drain): State<Drain>, mut response: Response) -> Response {
    if drain.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The graceful-shutdown signal given to axum: the stop signal, then the
/// drain (all connections closed, or [`IDLE_GRACE`]).
async fn wind_down(stop: Arc<Stopped>, drain: Drain, who: String) {
    stop.wait().await;
    drain.start();
    eprintln!(
        "axum: {who} stopping: draining {} connections",
        drain.active()
    );
    // `Drain::wait_idle` blocks; a blocking-pool thread waits for it.
    let _ = tokio::task::spawn_blocking(move || drain.wait_idle(IDLE_GRACE)).await;
}

/// The stop signal as something to `.await`, by any number of tasks.
///
/// A thread blocks in [`StopSignal::wait`] and then sets a watch channel.
/// (A plain thread rather than `spawn_blocking`: the runtime waits for its
/// blocking tasks when it shuts down, and an error exit must not wait for a
/// stop signal.)
#[derive(Debug, Clone)]
struct Stopped(watch::Receiver<bool>);

impl Stopped {
    fn new(stop: StopSignal) -> io::Result<Stopped> {
        let (tx, rx) = watch::channel(false);
        std::thread::Builder::new()
            .name("stop".to_owned())
            .spawn(move || {
                stop.wait();
                let _ = tx.send(true);
            })?;
        Ok(Stopped(rx))
    }

    /// Returns once the stop signal has arrived.
    async fn wait(&self) {
        // An error means the sender is gone, which it is only after sending.
        let _ = self.0.clone().wait_for(|&stopped| stopped).await;
    }
}

/// The listener axum serves from: stops accepting as soon as the stop
/// signal arrives (axum itself would only stop when its graceful shutdown
/// starts), and counts each connection in the drain while it lives.
struct Draining {
    /// `None` once stopping: dropped, so in simulate mode the port closes;
    /// under a master the socket lives on in the new instance.
    listener: Option<TcpListener>,
    stop: Arc<Stopped>,
    drain: Drain,
}

impl axum::serve::Listener for Draining {
    type Io = Tracked;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Tracked, SocketAddr) {
        loop {
            let Some(listener) = &self.listener else {
                // Stopped: axum's graceful shutdown ends the accept loop.
                return std::future::pending().await;
            };
            let accepted = tokio::select! {
                biased;
                () = self.stop.wait() => None,
                accepted = listener.accept() => Some(accepted),
            };
            match accepted {
                None => self.listener = None,
                Some(Ok((stream, peer))) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Tracked {
                        stream,
                        _guard: self.drain.track(),
                    };
                    return (conn, peer);
                }
                // Another instance took the connection, or it was aborted.
                Some(Err(e)) if is_connection_error(&e) => {}
                Some(Err(e)) => {
                    // Out of descriptors or memory: back off, as axum does.
                    eprintln!("axum: pid {}: accept failed: {e}", std::process::id());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::other("stopped listening")),
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// A connection counted in the drain until it is dropped.
#[derive(Debug)]
struct Tracked {
    stream: TcpStream,
    _guard: ConnGuard,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
