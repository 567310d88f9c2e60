//! `tonic-naive` — the gRPC service written the obvious way, without
//! `ally::tonic::serve`: tonic's `serve_with_incoming_shutdown` on the ally
//! socket, shut down at the stop signal. The e2e tests run it to show that
//! their load sees what the ally drain prevents: at the stop, tonic closes
//! connections accepted a moment before, whose clients have not sent their
//! HTTP/2 preface or first RPC yet.
//!
//! ```text
//! tonic-naive --addr ADDR
//! ```
//!
//! Serves `grpc.health.v1.Health` as the `tonic` example does (without its
//! `x-ally-instance` metadata), and logs `tonic-naive: instance N pid P
//! listening on ADDR`.

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, addr] = &args[..] else {
        return Err(std::io::Error::other("usage: tonic-naive --addr ADDR"));
    };
    if flag != "--addr" {
        return Err(std::io::Error::other("usage: tonic-naive --addr ADDR"));
    }
    let stop = ally::tokio::Stop::new()?;
    let listener = tokio::net::TcpListener::from_std(ally::listen_tcp(addr)?.into_std())?;
    let (id, pid) = (ally::instance()?.id, std::process::id());
    eprintln!(
        "tonic-naive: instance {id} pid {pid} listening on {}",
        listener.local_addr()?
    );
    let (_health, health) = tonic_health::server::health_reporter();
    ally::ready()?;
    Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop.wait())
        .await
        .map_err(std::io::Error::other)
}
