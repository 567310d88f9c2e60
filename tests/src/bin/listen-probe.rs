//! `listen-probe` — a service that asks its master for the sockets named on
//! its command line and says how each request went, for the `listen_scope`
//! end-to-end tests.
//!
//! ```text
//! listen-probe REQUEST...
//! REQUEST = NETWORK:ADDRESS[?mode=OCTAL]     e.g. unix:/run/x.sock?mode=660,
//!           tcp:127.0.0.1:80, unixgram:/run/log.sock, udp:[::1]:53
//! ```
//!
//! For each request, in order, it prints one line to stderr (the master's
//! log): `listen-probe: NETWORK ADDRESS ok LOCAL (N µs)` or `listen-probe:
//! NETWORK ADDRESS error MESSAGE (N µs)`, with how long the answer took;
//! then `listen-probe: done`, reports ready, and holds its sockets until
//! its stop signal.

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Instant;

use ally::{ListenOptions, Network};

fn main() -> ExitCode {
    let requests: Vec<String> = std::env::args().skip(1).collect();
    if requests.is_empty() {
        eprintln!("usage: listen-probe NETWORK:ADDRESS[?mode=OCTAL]...");
        return ExitCode::from(2);
    }
    let mut held: Vec<OwnedFd> = Vec::new();
    for request in &requests {
        let Some((network, address, mode)) = parse(request) else {
            eprintln!("listen-probe: cannot parse {request:?}");
            return ExitCode::from(2);
        };
        let mut options = ListenOptions::new();
        if let Some(mode) = mode {
            options = options.unix_mode(mode);
        }
        let asked = Instant::now();
        let answer = options.listen_fd(network, address);
        let took = asked.elapsed().as_micros();
        match answer {
            Ok(fd) => {
                let local = local_address(&fd);
                eprintln!("listen-probe: {network} {address} ok {local} ({took} µs)");
                held.push(fd);
            }
            Err(e) => {
                let e = e.to_string().replace('\n', " ");
                eprintln!("listen-probe: {network} {address} error {e} ({took} µs)");
            }
        }
    }
    eprintln!("listen-probe: done");
    let stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("listen-probe: stop signal: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = ally::ready() {
        eprintln!("listen-probe: ready: {e}");
        return ExitCode::FAILURE;
    }
    stop.wait();
    drop(held);
    ExitCode::SUCCESS
}

/// `NETWORK:ADDRESS[?mode=OCTAL]`.
fn parse(request: &str) -> Option<(Network, &str, Option<u32>)> {
    let (network, rest) = request.split_once(':')?;
    let network = match network {
        "tcp" => Network::Tcp,
        "udp" => Network::Udp,
        "unix" => Network::Unix,
        "unixgram" => Network::Unixgram,
        _ => return None,
    };
    match rest.split_once("?mode=") {
        Some((address, mode)) => Some((network, address, u32::from_str_radix(mode, 8).ok())),
        None => Some((network, rest, None)),
    }
}

/// The socket's local address, for the log.
fn local_address(fd: &OwnedFd) -> String {
    match rustix::net::getsockname(fd) {
        Ok(addr) => format!("{addr:?}"),
        Err(e) => format!("(getsockname: {e})"),
    }
}
