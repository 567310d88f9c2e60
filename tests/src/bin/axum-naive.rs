//! `axum-naive` — the axum service written the obvious way, without
//! `ally::axum::serve`: tokio's listener on the ally socket and axum's own
//! `with_graceful_shutdown` at the stop signal. The e2e tests run it to
//! show that their load sees what the ally drain prevents: at the stop,
//! hyper closes idle keep-alive connections at once, under clients that
//! may be sending on them.
//!
//! ```text
//! axum-naive --addr ADDR
//! ```
//!
//! Answers `GET /` as the `axum` example does (`X-Ally-Instance`), and
//! logs `axum-naive: instance N pid P listening on ADDR`.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, addr] = &args[..] else {
        return Err(std::io::Error::other("usage: axum-naive --addr ADDR"));
    };
    if flag != "--addr" {
        return Err(std::io::Error::other("usage: axum-naive --addr ADDR"));
    }
    let stop = ally::tokio::Stop::new()?;
    let listener = tokio::net::TcpListener::from_std(ally::listen_tcp(addr)?.into_std())?;
    let (id, pid) = (ally::instance()?.id, std::process::id());
    eprintln!(
        "axum-naive: instance {id} pid {pid} listening on {}",
        listener.local_addr()?
    );
    let (header, body) = ([("x-ally-instance", id.to_string())], format!("{id}\n"));
    let hello = move || std::future::ready((header.clone(), body.clone()));
    let app = Router::new().route("/", get(hello));
    ally::ready()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.wait())
        .await
}
