//! An axum service under ally, reloaded without a failed request:
//! `axum [--addr ADDR]` (default 127.0.0.1:8080). Answers `GET /`.
use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = match &args[..] {
        [] => "127.0.0.1:8080",
        [flag, addr] if flag == "--addr" => addr,
        _ => return Err(std::io::Error::other("usage: axum [--addr ADDR]")),
    };
    let listener = ally::listen_tcp(addr)?;
    let (id, pid) = (ally::instance()?.id, std::process::id());
    let who = format!("instance {id} pid {pid}");
    eprintln!("axum: {who} listening on {}", listener.local_addr()?);
    let (header, body) = ([("x-ally-instance", id.to_string())], format!("{who}\n"));
    let hello = move || std::future::ready((header.clone(), body.clone()));
    let app = Router::new().route("/", get(hello));
    let drained = ally::axum::serve(listener, app).await?;
    eprintln!("axum: {who} exiting: {drained}");
    Ok(())
}
