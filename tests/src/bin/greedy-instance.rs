//! `greedy-instance SECONDS` — an instance that speaks the protocol by
//! hand on its channel and takes all it can: it asks for connections until
//! the master refuses, stores a 512 KiB cache value, then pipelines reads
//! of it on every connection for `SECONDS` without reading one answer.
//!
//! It reports on stderr (the master's log): `greedy-instance: N
//! connections, then: <refusal>` and, at the end, `greedy-instance: sent
//! K requests unread`. It never calls ready.

use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ally_proto::frame::{encode, read_from, write_to};
use ally_proto::{Hello, HelloReply, InstanceRequest, InstanceResponse, Role, env};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

/// The size of the value every pipelined request reads back.
const VALUE: usize = 512 << 10;

fn main() -> ExitCode {
    let seconds: u64 = match std::env::args().nth(1).map(|s| s.parse()) {
        Some(Ok(s)) => s,
        _ => {
            eprintln!("usage: greedy-instance SECONDS");
            return ExitCode::from(2);
        }
    };
    match run(Duration::from_secs(seconds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greedy-instance: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(duration: Duration) -> Result<(), String> {
    let raw: i32 = std::env::var(env::CHANNEL_FD)
        .map_err(|e| format!("{}: {e}", env::CHANNEL_FD))?
        .parse()
        .map_err(|e| format!("{}: {e}", env::CHANNEL_FD))?;
    // SAFETY: the master passed this descriptor for this process's use,
    // and nothing else in the process knows of it.
    let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(raw) });
    write_to(&channel, &Hello::new(Role::Instance)).map_err(|e| format!("hello: {e}"))?;
    match read_from::<_, HelloReply>(&channel).map_err(|e| format!("welcome: {e}"))? {
        HelloReply::Welcome { .. } => {}
        HelloReply::Refused(f) => return Err(format!("refused: {f}")),
    }
    let mut conns = Vec::new();
    let refusal = loop {
        write_to(&channel, &InstanceRequest::Connect).map_err(|e| format!("connect: {e}"))?;
        match receive(&channel)? {
            (InstanceResponse::Connected { .. }, Some(fd)) => conns.push(UnixStream::from(fd)),
            (InstanceResponse::Error(failure), _) => break failure.to_string(),
            (other, _) => return Err(format!("connect answered {other:?}")),
        }
        if conns.len() > 1000 {
            break "no limit".to_owned();
        }
    };
    eprintln!(
        "greedy-instance: {} connections, then: {refusal}",
        conns.len()
    );
    let set = InstanceRequest::CacheSet {
        ns: "greedy".into(),
        key: "v".into(),
        value: vec![7; VALUE],
        ttl_ms: None,
    };
    write_to(&channel, &set).map_err(|e| format!("set: {e}"))?;
    let (done, _) = receive(&channel)?;
    if done != InstanceResponse::Done {
        return Err(format!("set answered {done:?}"));
    }
    let get = encode(&InstanceRequest::CacheGet {
        ns: "greedy".into(),
        key: "v".into(),
    })
    .map_err(|e| e.to_string())?;
    let batch = get.repeat(64);
    for conn in &conns {
        conn.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < duration {
        for mut conn in &conns {
            // Whatever the master still takes; nothing is ever read.
            if let Ok(n) = conn.write(&batch) {
                sent += n / get.len();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("greedy-instance: sent {sent} requests unread");
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

/// One response on `conn`, with the descriptor that came with it.
fn receive(conn: &UnixStream) -> Result<(InstanceResponse, Option<OwnedFd>), String> {
    let mut head = [0u8; 4];
    let mut fd = None;
    let mut got = 0;
    while got < 4 {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = recvmsg(
            conn,
            &mut [IoSliceMut::new(&mut head[got..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                fd = fds.into_iter().next().or(fd);
            }
        }
        if msg.bytes == 0 {
            return Err("the master closed the channel".into());
        }
        got += msg.bytes;
    }
    let len = u32::from_le_bytes(head) as usize;
    let mut body = vec![0u8; len];
    std::io::Read::read_exact(&mut &*conn, &mut body).map_err(|e| format!("read: {e}"))?;
    let response = ally_proto::frame::decode(&body).map_err(|e| format!("decode: {e}"))?;
    Ok((response, fd))
}
