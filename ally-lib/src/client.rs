//! The connection to the master.
//!
//! One connection per process, opened on first use and shared by every
//! thread; a mutex serializes requests, which the protocol answers one at a
//! time and in order. Each read uses `recvmsg` with `MSG_CMSG_CLOEXEC`, so a
//! descriptor the master sends is close-on-exec from the moment it exists,
//! and any descriptors that arrive are queued until the response that
//! announces them is decoded.
//!
//! If the connection breaks, the request in progress fails with an error
//! (it may or may not have been done) and the connection is dropped; the next
//! request connects again to the same socket and checks the peer again.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ally_proto::frame::{self, FrameBuf};
use ally_proto::{Hello, HelloReply, InstanceRequest, InstanceResponse, PROTOCOL_VERSION, Role};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags, recvmsg, send,
    sockopt,
};

use crate::error::Error;
use crate::mode::{self, Managed};

/// How long the master may take to answer one request.
///
/// The master never blocks on anything slow; this only bounds how long a
/// call hangs if the master is stopped (`SIGSTOP`) or wedged.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the master may take to answer a reload: a reload asked while
/// another runs is answered when that one ends, which takes up to the
/// app's ready timeout.
pub(crate) const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Most descriptors accepted on one read; the master sends one at a time.
const MAX_FDS_PER_READ: usize = 8;

/// Size of the buffer each read fills.
const READ_CHUNK: usize = 4096;

/// The process's connection; `None` until first use and after a failure.
static CONN: Mutex<Option<Conn>> = Mutex::new(None);

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
/// `what` names the request in error messages (`"listen tcp :80"`).
///
/// # Errors
///
/// Failure to connect or to verify the master, a broken connection, a
/// malformed answer, or missing descriptors. An answer of
/// [`InstanceResponse::Error`] is not an error here: the caller maps it.
pub(crate) fn request(m: &Managed, req: &InstanceRequest, what: &str) -> Result<Reply, Error> {
    let mut guard = lock();
    let conn = match &mut *guard {
        Some(conn) => conn,
        empty => empty.insert(Conn::open(m)?),
    };
    let timeout = match req {
        InstanceRequest::Reload => RELOAD_TIMEOUT,
        _ => REQUEST_TIMEOUT,
    };
    let reply = conn.exchange(req, what, timeout);
    if reply.is_err() {
        // The stream may be mid-frame: never reuse it.
        *guard = None;
    }
    reply
}

fn lock() -> MutexGuard<'static, Option<Conn>> {
    CONN.lock().unwrap_or_else(|poisoned| {
        // A panic while holding the lock may have left a frame half read.
        CONN.clear_poison();
        let mut guard = poisoned.into_inner();
        *guard = None;
        guard
    })
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    input: FrameBuf,
    fds: VecDeque<OwnedFd>,
}

impl Conn {
    /// Connects to the master, checks that it is the master, and says hello.
    fn open(m: &Managed) -> Result<Conn, Error> {
        // Checked again on every connect: if the master died this process
        // was re-parented, and whoever now owns the socket path is a stranger.
        let parent = mode::parent_pid();
        if parent != Some(m.master_pid) {
            return Err(Error::NotMasterChild {
                parent,
                master: m.master_pid,
            });
        }
        let stream = UnixStream::connect(&m.socket).map_err(|source| Error::Connect {
            path: m.socket.clone(),
            source,
        })?;
        let cred = sockopt::socket_peercred(&stream).map_err(|e| Error::Io(e.into()))?;
        let peer = cred.pid.as_raw_nonzero().get().unsigned_abs();
        if peer != m.master_pid {
            return Err(Error::WrongPeer {
                path: m.socket.clone(),
                expected: m.master_pid,
                found: peer,
            });
        }
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
            .map_err(Error::Io)?;
        let mut conn = Conn {
            stream,
            input: FrameBuf::new(),
            fds: VecDeque::new(),
        };
        conn.send(&frame::encode(&Hello::new(Role::Instance))?, "hello")?;
        match conn.receive("hello", FrameBuf::next::<HelloReply>)? {
            HelloReply::Welcome {
                version,
                master_pid,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::Version { master: version });
                }
                if master_pid != m.master_pid {
                    return Err(Error::WrongPeer {
                        path: m.socket.clone(),
                        expected: m.master_pid,
                        found: master_pid,
                    });
                }
            }
            HelloReply::Refused(failure) => return Err(Error::Refused(failure)),
        }
        // Descriptors never come with a hello.
        conn.fds.clear();
        Ok(conn)
    }

    fn exchange(
        &mut self,
        req: &InstanceRequest,
        what: &str,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(Error::Io)?;
        self.send(&frame::encode(req)?, what)?;
        let response = self.receive(what, FrameBuf::next::<InstanceResponse>)?;
        let want = match &response {
            InstanceResponse::Listening { fds, .. } => usize::from(*fds),
            _ => 0,
        };
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

    /// Writes one encoded frame.
    fn send(&mut self, bytes: &[u8], what: &str) -> Result<(), Error> {
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
