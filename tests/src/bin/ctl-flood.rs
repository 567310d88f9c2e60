//! `ctl-flood` — a control client that hoards connections, for the
//! `control_limits` end-to-end tests (run as another uid by `setpriv`).
//!
//! ```text
//! ctl-flood SOCKET EXTRA
//! ```
//!
//! Opens control connections to SOCKET, each saying hello, until the
//! master refuses one (or does not answer within a few seconds, or 10 000
//! are open); then tries EXTRA more, and keeps every connection it got
//! open until it is killed. It prints, one line each:
//!
//! ```text
//! held N
//! refused: WHY
//! then refused K of EXTRA
//! ```

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use ally_proto::{Hello, HelloReply, Role, frame};

/// Most connections tried before giving up on being refused.
const MAX_HELD: usize = 10_000;

/// How long to wait for the master's answer to a hello.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(extra)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: ctl-flood SOCKET EXTRA");
        return ExitCode::from(2);
    };
    let mut held = Vec::new();
    let why = loop {
        if held.len() >= MAX_HELD {
            break format!("never, after {MAX_HELD} connections");
        }
        match attempt(socket) {
            Ok(stream) => held.push(stream),
            Err(why) => break why,
        }
    };
    let refused = (0..extra).filter(|_| attempt(socket).is_err()).count();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "held {}", held.len());
    let _ = writeln!(out, "refused: {why}");
    let _ = writeln!(out, "then refused {refused} of {extra}");
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}

/// One connection and its hello: the stream if welcomed, else why not.
fn attempt(socket: &str) -> Result<UnixStream, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    for timeout in [
        stream.set_read_timeout(Some(REPLY_TIMEOUT)),
        stream.set_write_timeout(Some(REPLY_TIMEOUT)),
    ] {
        timeout.map_err(|e| format!("socket timeout: {e}"))?;
    }
    // A refused connection may be closed before the hello is written; what
    // the master sent is still read below.
    let wrote = frame::write_to(&stream, &Hello::new(Role::Control));
    match frame::read_from::<_, HelloReply>(&stream) {
        Ok(HelloReply::Welcome { .. }) => Ok(stream),
        Ok(HelloReply::Refused(failure)) => Err(format!("{:?}: {}", failure.code, failure.message)),
        Err(e) => Err(format!("no answer ({e}; the hello write gave {wrote:?})")),
    }
}
