//! The demo's drain, in process: keep-alive clients that never stop sending
//! must see no failed request when the server stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ally::StopSignal;
use ally::drain::Drain;

use crate::http::Settings;

/// Sends `GET /` until the server answers `Connection: close`; returns the
/// number of requests answered, or the first failure.
fn client(addr: std::net::SocketAddr) -> Result<usize, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for n in 1.. {
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .map_err(|e| format!("request {n}: write: {e}"))?;
        let mut close = false;
        let mut length = 0;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("request {n}: read: {e}"))?;
        if !line.starts_with("HTTP/1.1 200 ") {
            return Err(format!("request {n}: status line {line:?}"));
        }
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("request {n}: {e}"))?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            close |= l == "connection: close";
        }
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("request {n}: body: {e}"))?;
        if close {
            // The server closes gracefully: end of stream, not a reset.
            let mut rest = Vec::new();
            reader
                .read_to_end(&mut rest)
                .map_err(|e| format!("after close: {e}"))?;
            return Ok(n);
        }
    }
    unreachable!()
}

#[test]
fn keep_alive_clients_see_no_failure_across_a_stop() {
    let listener = ally::listen_tcp("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = StopSignal::new().unwrap();
    let drain = Drain::new();
    let settings = Arc::new(Settings {
        instance: 1,
        pid: std::process::id(),
        idle_timeout: Duration::from_secs(5),
        delay: Duration::from_millis(2),
    });
    let server = {
        let (stop, drain) = (stop.clone(), drain.clone());
        thread::spawn(move || {
            crate::serve(&listener, &stop, &drain, &settings, "test");
            drop(listener);
            drain.start();
            drain.wait_idle(Duration::from_secs(20))
        })
    };
    let clients: Vec<_> = (0..8)
        .map(|_| thread::spawn(move || client(addr)))
        .collect();
    thread::sleep(Duration::from_millis(200));
    stop.trigger();
    for c in clients {
        let answered = c.join().unwrap().unwrap();
        assert!(answered > 1, "{answered}");
    }
    assert!(server.join().unwrap(), "connections left after the drain");
}
