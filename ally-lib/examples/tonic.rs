//! A gRPC service under ally, reloaded without a failed RPC: `tonic [--addr
//! ADDR [--grace-ms MS]]` (default 127.0.0.1:50051, 1000; 0 shows what the
//! grace prevents). Serves `grpc.health.v1.Health` (tonic-health: no
//! protoc), with the instance id in the `x-ally-instance` metadata.
use std::time::Duration;
use tonic::{body::Body, codegen::http::Response, transport::Server};
use tower::util::MapResponseLayer;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || std::io::Error::other("usage: tonic [--addr ADDR [--grace-ms MS]]");
    let (addr, grace) = match &args[..] {
        [] => ("127.0.0.1:50051", "1000"),
        [flag, addr] if flag == "--addr" => (addr.as_str(), "1000"),
        [flag, addr, g, ms] if flag == "--addr" && g == "--grace-ms" => {
            (addr.as_str(), ms.as_str())
        }
        _ => return Err(usage()),
    };
    let grace = Duration::from_millis(grace.parse().map_err(|_| usage())?);
    let listener = ally::listen_tcp(addr)?;
    let (id, pid) = (ally::instance()?.id, std::process::id());
    let who = format!("instance {id} pid {pid}");
    eprintln!("tonic: {who} listening on {}", listener.local_addr()?);
    let (_health, health) = tonic_health::server::health_reporter();
    let router = Server::builder()
        .layer(MapResponseLayer::new(move |mut r: Response<Body>| {
            r.headers_mut().insert("x-ally-instance", id.into());
            r
        }))
        .add_service(health);
    let drained = ally::tonic::serve(listener, router).grace(grace).await?;
    eprintln!("tonic: {who} exiting: {drained}");
    Ok(())
}
