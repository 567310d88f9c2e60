//! `incoming-service ADDR` — the plainest std service on an ally listener:
//! `for stream in ally::listen_tcp(ADDR)?.incoming()`, a thread per
//! connection, each request answered `200` with `X-Ally-Instance` and
//! `Connection: close`.
//!
//! It takes the stop signal (so the master's SIGTERM does not kill it
//! mid-request) but, as `incoming()` never ends, keeps serving after it,
//! next to the instance that replaced it, until the master kills it at the
//! app's `stop_timeout`: the two share the socket, and each is woken for
//! connections the other takes. An error from `incoming()` ends it:
//! `incoming-service: pid P: incoming() failed: ERR`, exit status 1.
//!
//! Lines on stderr: `incoming-service: instance N pid P listening on
//! ADDR`, `incoming-service: pid P got the stop signal; serving on`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// How long a connection may take to send its request, and to close
/// after the response.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Longest request head read.
const MAX_HEAD: u64 = 16 << 10;

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: incoming-service ADDR");
        return ExitCode::from(2);
    };
    let pid = std::process::id();
    match run(&addr, pid) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("incoming-service: pid {pid}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str, pid: u32) -> Result<(), String> {
    let stop = ally::stop_signal().map_err(|e| format!("stop signal: {e}"))?;
    let listener = ally::listen_tcp(addr).map_err(|e| format!("listen: {e}"))?;
    let id = ally::instance().map_err(|e| format!("instance: {e}"))?.id;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("incoming-service: instance {id} pid {pid} listening on {local}");
    std::thread::spawn(move || {
        stop.wait();
        eprintln!("incoming-service: pid {pid} got the stop signal; serving on");
    });
    ally::ready().map_err(|e| format!("ready: {e}"))?;
    for stream in listener.incoming() {
        let stream = stream.map_err(|e| format!("incoming() failed: {e}"))?;
        std::thread::spawn(move || {
            let _ = answer(stream, id);
        });
    }
    Ok(())
}

/// Reads one request head, answers it and closes gracefully.
fn answer(stream: TcpStream, id: u64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut reader = BufReader::new((&stream).take(MAX_HEAD));
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim_end().is_empty() {
            break;
        }
    }
    let body = format!("instance {id} pid {}\n", std::process::id());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Ally-Instance: {id}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    (&stream).write_all(response.as_bytes())?;
    // Closing with unread bytes would reset: shut down writes, read to EOF.
    stream.shutdown(Shutdown::Write)?;
    let _ = std::io::copy(&mut (&stream).take(MAX_HEAD), &mut std::io::sink());
    Ok(())
}
