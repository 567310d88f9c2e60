//! A std HTTP/1.1 service that fails no request across reloads:
//! `std_http [--addr ADDR]` (default `127.0.0.1:8080`).
use ally::http::{Options, Response};

fn main() -> std::io::Result<()> {
    let stop = ally::stop_signal()?; // first: the master's cue to drain
    let addr = match &std::env::args().collect::<Vec<_>>()[1..] {
        [] => "127.0.0.1:8080".to_owned(),
        [flag, addr] if flag == "--addr" => addr.clone(),
        _ => return Err(std::io::Error::other("usage: std_http [--addr ADDR]")),
    };
    let listener = ally::listen_tcp(&addr)?;
    let (id, pid) = (ally::instance()?.id, std::process::id());
    let at = listener.local_addr()?;
    eprintln!("std_http: instance {id} pid {pid} listening on {at}");
    ally::ready()?;
    // Keep-alive, idle timeout (5 s), `Connection: close` once draining,
    // graceful closes, bounds: all in `ally::http`. The handler answers.
    let options = Options::new();
    let drained = ally::http::serve(&listener, &stop, &options, move |req| {
        Response::text(200, format!("instance {id} pid {pid}: {}\n", req.path()))
            .header("X-Ally-Instance", id.to_string())
    })?;
    eprintln!("std_http: instance {id} exiting, {} left", drained.left);
    Ok(())
}
