//! A tonic gRPC server under ally: reloads fail no RPC, even for clients
//! that connect as the old instance stops.
//!
//! ```text
//! tonic [--addr ADDR] [--grace-ms MS]
//! ```
//!
//! Serves the standard `grpc.health.v1.Health` service (from
//! `tonic-health`, whose generated code ships in the crate: no `protoc`),
//! `SERVING`, with this instance's id in the `x-ally-instance` response
//! metadata. Run it under `ally-master`, or alone (`cargo run -p ally
//! --features tonic --example tonic`), where Ctrl-C drains and exits.
//! `--addr` is the listen address (default `127.0.0.1:50051`); `--grace-ms`
//! sets [`ally::tonic::Options::grace`] (default 1000; `0` shows the
//! failures the grace prevents).
//!
//! Logs to stderr: `tonic: instance N pid P listening on ADDR`, then
//! `tonic: instance N pid P exiting: drained` (or `deadline passed with K
//! connections open`). Exit status: 0 once stopped, 1 on a runtime error, 2
//! on a usage error.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use ally::tonic::{Options, Served};
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Response};
use tonic::transport::Server;
use tower::util::MapResponseLayer;

/// Exit status for a bad command line.
const USAGE: u8 = 2;

const HELP: &str = "usage: tonic [--addr ADDR] [--grace-ms MS]";

#[tokio::main]
async fn main() -> ExitCode {
    let (addr, options) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("tonic: {msg}\n{HELP}");
            return ExitCode::from(USAGE);
        }
    };
    match run(&addr, options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tonic: pid {}: {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<(String, Options), String> {
    let mut addr = "127.0.0.1:50051".to_owned();
    let mut options = Options::default();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => addr = it.next().ok_or("--addr needs a value")?,
            "--grace-ms" => {
                let ms = it.next().ok_or("--grace-ms needs a value")?;
                let ms = ms
                    .parse()
                    .map_err(|_| format!("--grace-ms takes milliseconds, not `{ms}`"))?;
                options = options.grace(Duration::from_millis(ms));
            }
            "-h" | "--help" => return Err("help".to_owned()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((addr, options))
}

async fn run(addr: &str, options: Options) -> io::Result<()> {
    let stop = ally::tokio::Stop::new()?; // first: the signal is handled from now on
    let listener = ally::tokio::Listener::new(ally::listen_tcp(addr)?, &stop)?;
    let id = ally::instance()?.id;
    let who = format!("instance {id} pid {}", std::process::id());
    let (_health, service) = tonic_health::server::health_reporter();
    let header = HeaderValue::from(id);
    let router = Server::builder()
        .layer(MapResponseLayer::new(move |mut r: Response<Body>| {
            r.headers_mut().insert("x-ally-instance", header.clone());
            r
        }))
        .add_service(service);
    eprintln!("tonic: {who} listening on {}", listener.local_addr()?);
    ally::ready()?;
    match ally::tonic::serve_with(router, listener, &stop, options).await? {
        Served::DeadlinePassed { open } => {
            eprintln!("tonic: {who} exiting: deadline passed with {open} connections open");
        }
        _ => eprintln!("tonic: {who} exiting: drained"),
    }
    Ok(())
}
