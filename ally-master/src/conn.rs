//! One client connection: non-blocking, with its own input and output
//! buffers, so no client can stall the master.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use ally_proto::frame::{self, FrameBuf, MAX_CONTROL_FRAME_LEN};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde::Serialize;

use crate::budget::Held;
use crate::handover::fds::{Export, Import};
use crate::handover::snapshot::{ConnSnap, PeerSnap};
use crate::handover::{self, HandoverError};
use crate::limits::{MAX_PENDING_OUTPUT, OUTPUT_HIGH_WATER, READS_PER_WAKE};
use crate::slots::Slot;
use crate::sys::PeerCred;

/// What the peer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Has not said hello yet; closed if it does not by `deadline`.
    Unknown {
        /// Hello deadline.
        deadline: Instant,
    },
    /// The channel the master made for instance `id` of `app` at spawn,
    /// before the library's hello. It has no hello deadline: a program
    /// that does not link the library never speaks on it.
    Channel {
        /// Name of its app.
        app: String,
        /// Its instance id.
        id: u64,
    },
    /// One of the connections of instance `id` of `app`: its channel after
    /// the hello, or a connection the master made for it on request.
    Instance {
        /// Name of its app.
        app: String,
        /// Its instance id.
        id: u64,
    },
    /// A control client.
    Control,
    /// Refused or broken: flush what is queued, then close by `deadline`.
    Closing {
        /// When to close even if output is still queued.
        deadline: Instant,
    },
}

/// A frame waiting to be sent, with the fds that ride on its first byte.
#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    sent: usize,
    fds: Vec<OwnedFd>,
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    /// Who the kernel says the peer is.
    pub cred: PeerCred,
    /// What the peer is to the master.
    pub peer: Peer,
    input: FrameBuf,
    output: VecDeque<Outgoing>,
    pending: usize,
    /// Requests may be left in the input buffer: handle them next turn,
    /// and read nothing more until then.
    pub backlog: bool,
    /// The peer hung up (or the socket failed) with requests still
    /// buffered: close once they are handled.
    pub hung_up: Option<Broken>,
    /// Set when the connection came from the control socket: its slot, and
    /// its input held against the shared budget.
    accepted: Option<Accepted>,
    /// When the first byte of the frame at the head of `input` arrived.
    frame_started: Option<Instant>,
}

/// What a connection from the control socket holds of the shared limits.
#[derive(Debug)]
struct Accepted {
    /// Given back when the connection closes.
    _slot: Slot,
    input: Held,
    output: Held,
}

/// A reply that cannot be encoded as a frame (larger than the limit).
#[derive(Debug)]
pub struct Unsendable(pub ally_proto::Error);

/// Why a connection must be closed now.
#[derive(Debug)]
pub enum Broken {
    /// The peer closed or the socket failed.
    Gone,
    /// The peer sent bytes that are not a valid frame.
    Malformed(ally_proto::Error),
    /// The peer does not read its replies.
    Overflow,
    /// The first frame is not an ally hello.
    NotAlly,
}

impl Conn {
    /// Wraps a stream (already non-blocking and close-on-exec) as `peer`,
    /// with frames up to [`MAX_FRAME_LEN`](frame::MAX_FRAME_LEN) and no shared limit: one of an
    /// instance's own. Those from the control socket are made by
    /// [`accepted`](Self::accepted).
    pub fn new(stream: UnixStream, cred: PeerCred, peer: Peer) -> Conn {
        Conn {
            stream,
            cred,
            peer,
            input: FrameBuf::new(),
            output: VecDeque::new(),
            pending: 0,
            backlog: false,
            hung_up: None,
            accepted: None,
            frame_started: None,
        }
    }

    /// The app name and instance id whose connection this is, if it is an
    /// instance's.
    pub fn instance(&self) -> Option<(&str, u64)> {
        match &self.peer {
            Peer::Channel { app, id } | Peer::Instance { app, id } => Some((app, *id)),
            _ => None,
        }
    }

    /// Wraps a stream accepted from the control socket: it holds `slot`,
    /// may send frames up to [`MAX_CONTROL_FRAME_LEN`], and buffers its
    /// input against the budget `input` draws on.
    pub fn accepted(
        stream: UnixStream,
        cred: PeerCred,
        deadline: Instant,
        slot: Slot,
        input: Held,
        output: Held,
    ) -> Conn {
        let mut conn = Conn::new(stream, cred, Peer::Unknown { deadline });
        conn.input.set_limit(MAX_CONTROL_FRAME_LEN);
        conn.accepted = Some(Accepted {
            _slot: slot,
            input,
            output,
        });
        conn
    }

    /// How many bytes the next read may take: none with requests still
    /// buffered or, for a control-socket connection, as its budget allows.
    fn allowance(&self, scratch: usize) -> usize {
        if self.backlog {
            return 0;
        }
        self.accepted
            .as_ref()
            .map_or(scratch, |a| a.input.allowance().min(scratch))
    }

    /// Whether the connection may be read now (see [`read_ready`](Self::read_ready)).
    pub fn may_read(&self) -> bool {
        self.allowance(usize::MAX) > 0
    }

    /// When the frame being received started arriving, if one is. None
    /// while requests wait for the master (a backlog, or answers the peer
    /// has not read): what waits then is the master's delay, not an
    /// unfinished frame of the peer's.
    pub fn frame_started(&self) -> Option<Instant> {
        self.frame_started.filter(|_| !self.backlog)
    }

    /// Bytes received and not yet handled.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Accounts for a change in the input buffer: the budget's charge, and
    /// when the frame at its head started (`now` for one just begun).
    fn input_changed(&mut self) {
        if let Some(accepted) = &mut self.accepted {
            accepted.input.set(self.input.len());
        }
        self.frame_started = match self.frame_started {
            _ if self.input.is_empty() => None,
            Some(started) => Some(started),
            None => Some(Instant::now()),
        };
    }

    /// Whether so much output waits for an instance connection's peer that
    /// its further requests must wait too ([`OUTPUT_HIGH_WATER`]). A
    /// control-socket connection is instead cut off at
    /// [`MAX_PENDING_OUTPUT`]: it may come back, an instance's may not.
    pub fn output_stalled(&self) -> bool {
        self.accepted.is_none() && self.pending > OUTPUT_HIGH_WATER
    }

    /// Whether output is waiting for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Reads what is available into the input buffer, through `scratch`
    /// (the loop's one read buffer, so a read allocates nothing and the
    /// input buffer grows only by what arrived): at most
    /// [`READS_PER_WAKE`] reads, so one fast sender cannot starve the
    /// others (poll is level-triggered and reports the rest next time), and
    /// no more than the input budget allows.
    pub fn read_ready(&mut self, scratch: &mut [u8]) -> Result<(), Broken> {
        for _ in 0..READS_PER_WAKE {
            let room = self.allowance(scratch.len());
            if room == 0 {
                return Ok(());
            }
            let chunk = &mut scratch[..room];
            match (&self.stream).read(chunk) {
                Ok(0) => return Err(Broken::Gone),
                Ok(n) => {
                    self.input.extend(&chunk[..n]);
                    self.input_changed();
                    // A short read took everything there was: skip the
                    // read that would only say WouldBlock (poll reports
                    // new bytes).
                    if n < room {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Broken::Gone),
            }
        }
        Ok(())
    }

    /// The next complete message received, if any.
    pub fn next<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, Broken> {
        let msg = self.input.next().map_err(Broken::Malformed)?;
        if msg.is_some() {
            // The next frame, if any, is timed from now.
            self.frame_started = None;
            self.input_changed();
        }
        Ok(msg)
    }

    /// Queues `msg`, with `fds` attached to its first byte.
    ///
    /// A message that does not fit in a frame is not queued: the caller
    /// gets [`Unsendable`] and should answer with an error instead. Only a
    /// client that stops reading breaks the connection.
    pub fn send<T: Serialize>(
        &mut self,
        msg: &T,
        fds: Vec<OwnedFd>,
    ) -> Result<Result<(), Unsendable>, Broken> {
        let bytes = match frame::encode(msg) {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(Unsendable(e))),
        };
        self.pending += bytes.len();
        if self.pending > MAX_PENDING_OUTPUT {
            return Err(Broken::Overflow);
        }
        // A control client may always have one answer waiting; past that,
        // not while all of them together hold more than their budget.
        if let Some(accepted) = &mut self.accepted {
            accepted.output.set(self.pending);
            if accepted.output.overdrawn() && self.pending > frame::MAX_FRAME_LEN {
                return Err(Broken::Overflow);
            }
        }
        self.output.push_back(Outgoing {
            bytes,
            sent: 0,
            fds,
        });
        Ok(Ok(()))
    }

    /// Writes queued output until done or the socket is full.
    pub fn write_ready(&mut self) -> Result<(), Broken> {
        while let Some(out) = self.output.front_mut() {
            let iov = [IoSlice::new(&out.bytes[out.sent..])];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let borrowed: Vec<BorrowedFd<'_>> = out.fds.iter().map(AsFd::as_fd).collect();
            if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(Broken::Gone);
            }
            match rustix::net::sendmsg(&self.stream, &iov, &mut control, SendFlags::NOSIGNAL) {
                Ok(n) => {
                    drop(borrowed);
                    // The kernel took the fds with the first byte it took.
                    out.fds.clear();
                    out.sent += n;
                    self.pending -= n;
                    if let Some(accepted) = &mut self.accepted {
                        accepted.output.set(self.pending);
                    }
                    if out.sent == out.bytes.len() {
                        self.output.pop_front();
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Err(Broken::Gone),
            }
        }
        Ok(())
    }
}

impl Conn {
    /// The connection as plain data, its descriptors (the socket and those
    /// queued to be sent) listed in `fds`, times relative to `now`.
    pub fn snapshot<'a>(&'a self, fds: &mut Export<'a>, now: Instant) -> ConnSnap {
        let peer = match &self.peer {
            Peer::Unknown { deadline } => PeerSnap::Unknown {
                left_ms: handover::left_ms(*deadline, now),
            },
            Peer::Channel { app, id } => PeerSnap::Channel {
                app: app.clone(),
                id: *id,
            },
            Peer::Instance { app, id } => PeerSnap::Instance {
                app: app.clone(),
                id: *id,
            },
            Peer::Control => PeerSnap::Control,
            Peer::Closing { deadline } => PeerSnap::Closing {
                left_ms: handover::left_ms(*deadline, now),
            },
        };
        ConnSnap {
            fd: fds.add(self.stream.as_fd()),
            cred: self.cred.snapshot(),
            peer,
            input: self.input.pending().to_vec(),
            output: self
                .output
                .iter()
                .map(|out| {
                    let rest = out.bytes[out.sent..].to_vec();
                    (rest, out.fds.iter().map(|fd| fds.add(fd.as_fd())).collect())
                })
                .collect(),
            backlog: self.backlog,
            hung_up: self.hung_up.is_some(),
            accepted: self.accepted.is_some(),
            frame_ago_ms: self.frame_started.map(|t| handover::ago_ms(t, now)),
        }
    }

    /// The connection `snap` describes; `accepted` gives one from the
    /// control socket its slot and budgets back.
    ///
    /// # Errors
    ///
    /// A missing descriptor.
    pub fn restore(
        snap: ConnSnap,
        fds: &mut Import,
        now: Instant,
        accepted: Option<(Slot, Held, Held)>,
    ) -> Result<Conn, HandoverError> {
        let stream = UnixStream::from(fds.take(snap.fd)?);
        let peer = match snap.peer {
            PeerSnap::Unknown { left_ms } => Peer::Unknown {
                deadline: handover::after(now, left_ms),
            },
            PeerSnap::Channel { app, id } => Peer::Channel { app, id },
            PeerSnap::Instance { app, id } => Peer::Instance { app, id },
            PeerSnap::Control => Peer::Control,
            PeerSnap::Closing { left_ms } => Peer::Closing {
                deadline: handover::after(now, left_ms),
            },
        };
        let mut conn = Conn::new(stream, PeerCred::restore(snap.cred), peer);
        if let Some((slot, input, output)) = accepted {
            conn.input.set_limit(MAX_CONTROL_FRAME_LEN);
            conn.accepted = Some(Accepted {
                _slot: slot,
                input,
                output,
            });
        }
        conn.input.extend(&snap.input);
        for (bytes, out_fds) in snap.output {
            let out_fds = out_fds
                .into_iter()
                .map(|i| fds.take(i))
                .collect::<Result<Vec<_>, _>>()?;
            conn.pending += bytes.len();
            conn.output.push_back(Outgoing {
                bytes,
                sent: 0,
                fds: out_fds,
            });
        }
        if let Some(accepted) = &mut conn.accepted {
            accepted.input.set(conn.input.len());
            accepted.output.set(conn.pending);
        }
        conn.backlog = snap.backlog;
        conn.hung_up = snap.hung_up.then_some(Broken::Gone);
        conn.frame_started = snap.frame_ago_ms.map(|ms| handover::before(now, ms));
        Ok(conn)
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
