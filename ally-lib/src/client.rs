//! A connection to the master, and the exchanges on it.
//!
//! Every connection is the instance's own: the [channel](crate::channel)
//! the master left at spawn, or one it sent over that channel on request.
//! Requests go through a small [pool](crate::pool) of the latter, so a
//! thread waiting for a lock does not hold up other threads' requests.
//! Each connection carries one request at a time, answered in order. Each
//! read uses `recvmsg` with `MSG_CMSG_CLOEXEC`, so a descriptor the master
//! sends is close-on-exec from the moment it exists, and any descriptors
//! that arrive are queued until the response that announces them is
//! decoded.
//!
//! If a pooled connection breaks or its answer does not come in time, the
//! request in progress fails with an error (it may or may not have been
//! done) and the connection is dropped; a later request asks the channel
//! for a new one. Nothing the instance holds — locks, listeners — belongs
//! to a connection, so dropping one loses nothing.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ally_proto::frame::{self, FrameBuf};
use ally_proto::{HelloReply, InstanceRequest, InstanceResponse, LockMode};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags, recvmsg, send,
};

use crate::error::Error;
use crate::mode::Managed;
use crate::pool::{self, Use};

/// How long the master may take to answer a reload: a reload asked while
/// another runs is answered when that one ends, which takes up to the
/// app's ready timeout.
pub(crate) const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Most descriptors accepted on one read; the master sends one at a time.
const MAX_FDS_PER_READ: usize = 8;

/// Size of the buffer each read fills.
const READ_CHUNK: usize = 4096;

/// An answer and the descriptors it announced.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The decoded response.
    pub response: InstanceResponse,
    /// Exactly the descriptors the response announced, in order.
    pub fds: Vec<OwnedFd>,
}

/// Sends `req` to the master and waits for its answer.
///
/// `what` names the request in error messages (`"listen tcp :80"`). The
/// request must be one the master answers at once (not a lock that may
/// wait: see [`lock`]).
///
/// # Errors
///
/// A request too large for a frame, failure to connect or to verify the
/// master, a broken connection, a malformed answer, or missing
/// descriptors. An answer of [`InstanceResponse::Error`] is not an error
/// here: the caller maps it.
pub(crate) fn request(m: &Managed, req: &InstanceRequest, what: &str) -> Result<Reply, Error> {
    // Encoded before a connection is taken: a request refused here never
    // costs one.
    let bytes = encode(req, what)?;
    let timeout = match req {
        InstanceRequest::Reload => RELOAD_TIMEOUT,
        _ => m.request_timeout,
    };
    let mut lease = pool::take(m, Use::Prompt, None)?.ok_or_else(|| Error::Timeout {
        request: what.to_owned(),
    })?;
    lease.exchange(&bytes, what, Some(timeout))
}

/// Asks the master for lock `name` in `mode`, waiting at most `timeout_ms`
/// (`None`: as long as it takes; `Some(0)`: only if free now); whether it
/// was taken, or the master's failure as [`InstanceResponse::Error`].
///
/// A request that may wait holds a connection meanwhile, taken with
/// [`Use::LockWait`] so that waits never hold every connection. The time
/// spent waiting for such a connection counts against `timeout_ms`; if it
/// runs out first, one last try asks for the lock only if it is free.
///
/// The answer is awaited for as long as the master takes: the master ends
/// the wait at its timeout, and a request given up here could be granted
/// there with nobody to release it. If the master is stopped (`SIGSTOP`)
/// the call waits for it; if it dies, the connection's end of file ends
/// the call with an error.
///
/// # Errors
///
/// As [`request`].
pub(crate) fn lock(
    m: &Managed,
    name: &str,
    mode: LockMode,
    timeout_ms: Option<u64>,
    what: &str,
) -> Result<InstanceResponse, Error> {
    let req = |timeout_ms| InstanceRequest::Lock {
        name: name.to_owned(),
        mode,
        timeout_ms,
    };
    if timeout_ms == Some(0) {
        return Ok(request(m, &req(Some(0)), what)?.response);
    }
    encode(&req(timeout_ms), what)?;
    let started = Instant::now();
    let deadline = timeout_ms.and_then(|ms| started.checked_add(Duration::from_millis(ms)));
    let Some(mut lease) = pool::take(m, Use::LockWait, deadline)? else {
        return Ok(request(m, &req(Some(0)), what)?.response);
    };
    let left_ms = match (timeout_ms, deadline) {
        (Some(ms), Some(deadline)) => {
            Some(ceil_millis(deadline.saturating_duration_since(Instant::now())).min(ms))
        }
        // No timeout, or one beyond the clock's range.
        _ => timeout_ms,
    };
    let bytes = encode(&req(left_ms), what)?;
    Ok(lease.exchange(&bytes, what, None)?.response)
}

/// `d` in whole milliseconds, rounded up: the wire carries milliseconds,
/// and a wait must not end before the time asked.
pub(crate) fn ceil_millis(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// One request as a frame.
///
/// # Errors
///
/// [`Error::TooLarge`] when the request does not fit in a frame.
pub(crate) fn encode(req: &InstanceRequest, what: &str) -> Result<Vec<u8>, Error> {
    frame::encode(req).map_err(|e| match e {
        ally_proto::Error::TooLarge { len, max } => Error::TooLarge {
            request: what.to_owned(),
            len,
            max,
        },
        other => other.into(),
    })
}

/// One connection to the master.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: UnixStream,
    input: FrameBuf,
    fds: VecDeque<OwnedFd>,
    /// The read timeout the socket has now, so an exchange with the same
    /// timeout as the last one costs no `setsockopt`.
    read_timeout: Option<Duration>,
}

impl Conn {
    /// Wraps one of the instance's connections (close-on-exec already),
    /// with `timeout` for reads and writes.
    pub(crate) fn new(stream: UnixStream, timeout: Duration) -> Result<Conn, Error> {
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(Error::Io)?;
        Ok(Conn {
            stream,
            input: FrameBuf::new(),
            fds: VecDeque::new(),
            read_timeout: Some(timeout),
        })
    }

    /// Sends one encoded request and reads its answer, waiting at most
    /// `timeout` for it (`None`: for ever).
    ///
    /// After an error the stream may be mid-frame: the caller must drop the
    /// connection, or (the channel) read the owed answer before the next.
    pub(crate) fn exchange(
        &mut self,
        request: &[u8],
        what: &str,
        timeout: Option<Duration>,
    ) -> Result<Reply, Error> {
        self.send(request, what)?;
        self.receive_response(what, timeout)
    }

    /// Reads the next response and the descriptors it announced, waiting
    /// at most `timeout`.
    pub(crate) fn receive_response(
        &mut self,
        what: &str,
        timeout: Option<Duration>,
    ) -> Result<Reply, Error> {
        self.set_timeout(timeout)?;
        let response = self.receive(what, FrameBuf::next::<InstanceResponse>)?;
        let want = response.fd_count();
        if self.fds.len() < want {
            return Err(Error::MissingFds {
                expected: want,
                got: self.fds.len(),
            });
        }
        let fds = self.fds.drain(..want).collect();
        // Anything else that arrived belongs to no request: close it.
        self.fds.clear();
        Ok(Reply { response, fds })
    }

    /// Reads the master's answer to a hello, waiting at most `timeout`.
    pub(crate) fn receive_hello(&mut self, timeout: Duration) -> Result<HelloReply, Error> {
        self.set_timeout(Some(timeout))?;
        let reply = self.receive("hello", FrameBuf::next::<HelloReply>)?;
        // Descriptors never come with a hello.
        self.fds.clear();
        Ok(reply)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        if self.read_timeout != timeout {
            self.stream.set_read_timeout(timeout).map_err(Error::Io)?;
            self.read_timeout = timeout;
        }
        Ok(())
    }

    /// Writes one encoded frame.
    pub(crate) fn send(&mut self, bytes: &[u8], what: &str) -> Result<(), Error> {
        let mut rest = bytes;
        while !rest.is_empty() {
            // NOSIGNAL: a closed master must be an error, not a SIGPIPE.
            match send(&self.stream, rest, SendFlags::NOSIGNAL) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(Error::Timeout {
                        request: what.to_owned(),
                    });
                }
                Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => {
                    return Err(Error::Disconnected);
                }
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
        Ok(())
    }

    /// Reads until `next` takes a whole message from the frame buffer.
    fn receive<T>(
        &mut self,
        what: &str,
        next: fn(&mut FrameBuf) -> Result<Option<T>, ally_proto::Error>,
    ) -> Result<T, Error> {
        loop {
            if let Some(msg) = next(&mut self.input)? {
                return Ok(msg);
            }
            self.fill(what)?;
        }
    }

    /// One `recvmsg`: appends the bytes to the frame buffer and queues any
    /// descriptors.
    fn fill(&mut self, what: &str) -> Result<(), Error> {
        let mut buf = [0u8; READ_CHUNK];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_READ))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = loop {
            match recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(msg) => break msg,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(Error::Timeout {
                        request: what.to_owned(),
                    });
                }
                Err(rustix::io::Errno::CONNRESET) => return Err(Error::Disconnected),
                Err(e) => return Err(Error::Io(e.into())),
            }
        };
        // Take ownership of every descriptor before anything can fail, so
        // that each is closed if unused.
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                self.fds.extend(fds);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(Error::ControlTruncated);
        }
        if msg.bytes == 0 {
            return Err(if self.input.is_empty() {
                Error::Disconnected
            } else {
                Error::Io(io::ErrorKind::UnexpectedEof.into())
            });
        }
        self.input.extend(&buf[..msg.bytes]);
        Ok(())
    }
}
