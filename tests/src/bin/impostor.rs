//! `impostor` — a local process that is not the master but acts against
//! it, for the trust tests, which run it as another uid (`setpriv`).
//!
//! ```text
//! impostor master PATH        listen on PATH and answer like a master:
//!                             welcome every hello, answer every request
//!                             with one app named "impostor"; prints
//!                             `listening` once it accepts
//! impostor squat NAME...      bind a datagram socket at each abstract NAME
//!                             (no leading `@`), print `squatting N`, hold
//!                             them until killed
//! impostor flood NAME COUNT   send COUNT `READY=1` datagrams to abstract
//!                             NAME, print `sent N` (N counts the sends
//!                             that went through)
//! ```

use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::process::ExitCode;

use ally_proto::{
    AppState, AppStatus, ControlRequest, ControlResponse, Hello, HelloReply, PROTOCOL_VERSION,
    frame,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["master", path] => master(path),
        ["squat", names @ ..] if !names.is_empty() => squat(names),
        ["flood", name, count] => match count.parse() {
            Ok(count) => flood(name, count),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("impostor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: impostor master PATH | squat NAME... | flood NAME COUNT");
    ExitCode::from(2)
}

/// Prints one line on stdout at once (the test waits for it).
fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn master(path: &str) -> std::io::Result<()> {
    let listener = UnixListener::bind(path)?;
    say("listening")?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || serve(stream));
    }
    Ok(())
}

/// Plays a master for one client until it goes away.
fn serve(stream: UnixStream) {
    if frame::read_from::<_, Hello>(&stream).is_err() {
        return;
    }
    let welcome = HelloReply::Welcome {
        version: PROTOCOL_VERSION,
        master_pid: std::process::id(),
    };
    if frame::write_to(&stream, &welcome).is_err() {
        return;
    }
    while frame::read_from::<_, ControlRequest>(&stream).is_ok() {
        let apps = ControlResponse::Apps(vec![AppStatus {
            name: "impostor".into(),
            state: AppState::Running,
            restarts: 0,
            main: None,
            reloading: None,
            queued_reloads: 0,
            dropped_lines: 0,
            last_error: None,
            instances: Vec::new(),
            family: None,
        }]);
        if frame::write_to(&stream, &apps).is_err() {
            return;
        }
    }
}

fn squat(names: &[&str]) -> std::io::Result<()> {
    let mut held = Vec::with_capacity(names.len());
    for name in names {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        held.push(UnixDatagram::bind_addr(&addr)?);
    }
    say(&format!("squatting {}", held.len()))?;
    loop {
        std::thread::park();
    }
}

fn flood(name: &str, count: u64) -> std::io::Result<()> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let socket = UnixDatagram::unbound()?;
    let mut sent = 0u64;
    for _ in 0..count {
        // Blocking: a full queue makes the sender wait for the master to
        // read, so every datagram reaches it.
        if socket.send_to_addr(b"READY=1", &addr).is_ok() {
            sent += 1;
        }
    }
    say(&format!("sent {sent}"))
}
