//! Serving an axum router on an ally listener, drained right (feature
//! `axum`): [`serve`] is [`ally::hyper::serve`](crate::hyper::serve) for a
//! [`Router`], with the same drain and options.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let app = Router::new().route("/", get(|| async { "hello\n" }));
//!     let drained = ally::axum::serve(ally::listen_tcp("127.0.0.1:8080")?, app).await?;
//!     eprintln!("exiting: {drained}");
//!     Ok(())
//! }
//! ```
//!
//! `Router` only: for a `Router` with state, call
//! [`with_state`](Router::with_state) first. Connection info
//! (`ConnectInfo`) is not provided.

use axum::Router;
use hyper_util::service::TowerToHyperService;

use crate::hyper::Serve;

/// Serves `router` on `listener` until the stop signal, then drains: see
/// [`ally::hyper`](crate::hyper) for what that does, and [`Serve`] for
/// the options.
pub fn serve(
    listener: impl Into<std::net::TcpListener>,
    router: Router,
) -> Serve<TowerToHyperService<Router>> {
    crate::hyper::serve(listener, TowerToHyperService::new(router))
}

#[cfg(test)]
mod tests {
    /// The README shows the axum example as it is, in full.
    #[test]
    fn readme_shows_the_example() {
        let readme = include_str!("../../README.md");
        let example = include_str!("../examples/axum.rs");
        assert!(
            readme.contains(&format!("```rust,ignore\n{example}```")),
            "README.md's axum example differs from ally-lib/examples/axum.rs: copy it over"
        );
    }
}
