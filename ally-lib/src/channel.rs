//! The instance's own channel to the master.
//!
//! The master makes a unix socket pair for each instance it starts and
//! leaves one end at the descriptor `ALLY_CHANNEL_FD` names. The channel
//! *is* the instance's identity: no socket path, no file permission, no pid
//! lookup, so an instance running as any user reaches its master, and no
//! other process can pretend to be it. The library adopts the descriptor
//! once (close-on-exec from then on, so programs the instance executes do
//! not inherit it), says hello on it, and uses it only to ask for more
//! connections of the instance's own ([`Channel::connect`]), which the
//! [pool](crate::pool) then uses for requests.
//!
//! A thread watches the channel for end of file: the master died. It then
//! points stdout and stderr at `/dev/null` if their reader went with the
//! master (a pipe that now fails every write with `EPIPE`, on which
//! `println!` panics), and sends this process its stop signal, so the
//! instance drains and exits instead of holding its sockets with nobody
//! supervising it. From then on every call fails with
//! [`Error::MasterGone`].
//!
//! A fork of the instance shares the parent's descriptors but not its
//! threads or its requests: every call from it fails with
//! [`Error::Forked`] instead of mixing frames with the parent's.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ally_proto::frame;
use ally_proto::{Hello, HelloReply, InstanceRequest, InstanceResponse, PROTOCOL_VERSION, Role};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{AddressFamily, SocketType, getsockname, sockopt};
use rustix::process::{Signal, getpid, kill_process};

use crate::client::{Conn, encode};
use crate::error::Error;

/// The channel, shared by every thread of the instance.
#[derive(Debug)]
pub(crate) struct Channel {
    primary: Mutex<Primary>,
    /// The pid of the process that adopted the channel: the instance.
    owner: u32,
    /// Set by the watcher when the channel reached end of file.
    gone: Arc<AtomicBool>,
}

/// The channel's own connection and where its exchanges stand.
#[derive(Debug)]
struct Primary {
    conn: Conn,
    hello: Greeting,
    /// Answers to requests whose caller stopped waiting (the master was
    /// slow or stopped): read and dropped before the next exchange, so the
    /// channel stays in step instead of being lost.
    owed: usize,
}

/// Where the hello stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    /// Not sent yet.
    Unsent,
    /// Sent; the answer did not come in time and is still to be read.
    Owed,
    /// Welcomed.
    Done,
}

impl Channel {
    /// Adopts descriptor `fd` as the channel to the master `master_pid`,
    /// and starts the thread that sends `stop_signal` to this process when
    /// the master dies. `timeout` bounds each write on it.
    ///
    /// # Errors
    ///
    /// What the descriptor is instead of a channel from that master.
    pub(crate) fn adopt(
        fd: i32,
        output: Option<(i32, i32)>,
        master_pid: u32,
        stop_signal: i32,
        timeout: Duration,
    ) -> Result<Channel, String> {
        // The read ends of our own output, held so that the master's death
        // leaves it a reader (a number that is not a pipe is ignored).
        // Each must be the read end of the very pipe our stdout (or stderr)
        // writes to, else it is not ours to take.
        let id = |fd: std::os::fd::BorrowedFd<'_>| {
            rustix::fs::fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
        };
        let streams = [id(rustix::stdio::stdout()), id(rustix::stdio::stderr())];
        let held: Vec<OwnedFd> = output
            .into_iter()
            .flat_map(|(out, err)| [out, err])
            .zip(streams)
            .filter_map(|(raw, stream)| crate::sys::adopt_output_pipe(raw, stream?))
            .collect();
        let fd = crate::sys::adopt_channel(fd).ok_or("it is not an open socket")?;
        let ty = sockopt::socket_type(&fd).map_err(|e| format!("SO_TYPE: {e}"))?;
        let family = getsockname(&fd)
            .map_err(|e| format!("getsockname: {e}"))?
            .address_family();
        if ty != SocketType::STREAM || family != AddressFamily::UNIX {
            return Err(format!("a socket of type {ty:?}, family {family:?}"));
        }
        // The peer of a socket pair is the process that made it.
        let maker = sockopt::socket_peercred(&fd).map_err(|e| format!("SO_PEERCRED: {e}"))?;
        let maker = maker.pid.as_raw_nonzero().get().unsigned_abs();
        if maker != master_pid {
            return Err(format!(
                "its peer is pid {maker}, not the master (pid {master_pid})"
            ));
        }
        let stream = UnixStream::from(fd);
        let watched = stream
            .try_clone()
            .map_err(|e| format!("cannot duplicate it: {e}"))?;
        let gone = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&gone);
        // To tell the master's death from a close by a master that lives on
        // (it refused the hello): the end of file alone does not say.
        let master = rustix::process::Pid::from_raw(i32::try_from(master_pid).unwrap_or(0))
            .and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
        std::thread::Builder::new()
            .name("ally-channel".into())
            .spawn(move || watch(&watched, held, &flag, stop_signal, (master, master_pid)))
            .map_err(|e| format!("cannot start the thread that watches it: {e}"))?;
        let conn = Conn::new(stream, timeout).map_err(|e| e.to_string())?;
        Ok(Channel {
            primary: Mutex::new(Primary {
                conn,
                hello: Greeting::Unsent,
                owed: 0,
            }),
            owner: getpid().as_raw_nonzero().get().unsigned_abs(),
            gone,
        })
    }

    /// Whether this process may use the channel now.
    ///
    /// # Errors
    ///
    /// [`Error::Forked`] in a fork of the instance, [`Error::MasterGone`]
    /// once the master has died.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let pid = getpid().as_raw_nonzero().get().unsigned_abs();
        if pid != self.owner {
            return Err(Error::Forked {
                owner: self.owner,
                pid,
            });
        }
        if self.gone.load(Ordering::SeqCst) {
            return Err(Error::MasterGone);
        }
        Ok(())
    }

    /// A new connection of the instance's own, asked for over the channel
    /// (saying hello first, the first time), each answer awaited at most
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// The master refused (hello or the per-instance connection limit),
    /// did not answer in time, or the channel broke.
    pub(crate) fn connect(&self, timeout: Duration) -> Result<Conn, Error> {
        let mut p = self.primary.lock().unwrap_or_else(PoisonError::into_inner);
        p.greet(timeout)?;
        while p.owed > 0 {
            p.conn.receive_response("connect", Some(timeout))?;
            p.owed -= 1;
        }
        let bytes = encode(&InstanceRequest::Connect, "connect")?;
        p.conn.send(&bytes, "connect")?;
        let mut reply = match p.conn.receive_response("connect", Some(timeout)) {
            Ok(reply) => reply,
            Err(e @ Error::Timeout { .. }) => {
                p.owed += 1;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match (reply.response, reply.fds.pop()) {
            (InstanceResponse::Connected { .. }, Some(fd)) => {
                Conn::new(UnixStream::from(fd), timeout)
            }
            (InstanceResponse::Error(failure), _) => Err(Error::Master {
                request: "open another connection".into(),
                failure,
            }),
            (other, _) => Err(Error::Unexpected {
                request: "connect".into(),
                response: format!("{other:?}"),
            }),
        }
    }
}

impl Primary {
    /// Says hello unless done; reads an answer a timeout left owed.
    fn greet(&mut self, timeout: Duration) -> Result<(), Error> {
        if self.hello == Greeting::Done {
            return Ok(());
        }
        if self.hello == Greeting::Unsent {
            self.conn
                .send(&frame::encode(&Hello::new(Role::Instance))?, "hello")?;
            self.hello = Greeting::Owed;
        }
        match self.conn.receive_hello(timeout)? {
            HelloReply::Welcome { version, .. } if version == PROTOCOL_VERSION => {
                self.hello = Greeting::Done;
                Ok(())
            }
            HelloReply::Welcome { version, .. } => Err(Error::Version { master: version }),
            HelloReply::Refused(failure) => Err(Error::Refused(failure)),
        }
    }
}

/// How long, after the channel's end of file, the master's process may take
/// to be seen exited: it closes its descriptors just before it exits.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Waits for the channel's end of file, then sends `stop_signal` to this
/// process. If the master died — its pidfd `master` says so; without one,
/// this process was re-parented — it first quiets the orphaned output and
/// afterwards drains the `held` read ends of its output pipes for good (a
/// writer blocked on a full pipe goes on). A master that closed the channel
/// and lives on keeps reading the output itself.
fn watch(
    channel: &UnixStream,
    held: Vec<OwnedFd>,
    gone: &AtomicBool,
    stop_signal: i32,
    master: (Option<OwnedFd>, u32),
) {
    loop {
        // Only a hang-up wakes this poll: the answers arriving on the
        // channel are POLLIN, which it does not ask for.
        let mut fds = [PollFd::new(channel, PollFlags::RDHUP)];
        match poll(&mut fds, None) {
            Ok(_) if !fds[0].revents().is_empty() => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    gone.store(true, Ordering::SeqCst);
    let orphaned = master_exited(master.0.as_ref(), master.1);
    if orphaned {
        quiet_orphaned_output(&held);
    }
    if let Some(signal) = Signal::from_named_raw(stop_signal) {
        let _ = kill_process(getpid(), signal);
    }
    if orphaned {
        drain(held);
    }
}

/// Whether the master (pid `pid`) exited, waiting at most [`EXIT_GRACE`]
/// for it: its pidfd becomes readable when it has; without one (a kernel
/// before 5.3), this process is no longer its child.
fn master_exited(pidfd: Option<&OwnedFd>, pid: u32) -> bool {
    let Some(pidfd) = pidfd else {
        let deadline = std::time::Instant::now() + EXIT_GRACE;
        while std::time::Instant::now() < deadline {
            let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
            if parent != i32::try_from(pid).ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        return false;
    };
    let wait = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&wait)), Ok(n) if n > 0)
}

/// Reads and drops what `pipes` hold until every one reaches end of file.
fn drain(mut pipes: Vec<OwnedFd>) {
    let mut buf = [0u8; 4096];
    while !pipes.is_empty() {
        let mut fds: Vec<PollFd<'_>> = pipes
            .iter()
            .map(|p| PollFd::new(p, PollFlags::IN))
            .collect();
        if poll(&mut fds, None).is_err() {
            return;
        }
        let done: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut ended = Vec::new();
        for (index, ready) in done.into_iter().enumerate() {
            if ready {
                match rustix::io::read(&pipes[index], &mut buf) {
                    Ok(0) => ended.push(index),
                    Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    Err(_) => ended.push(index),
                }
            }
        }
        for index in ended.into_iter().rev() {
            pipes.remove(index);
        }
    }
}

/// Points stdout and stderr at `/dev/null` where they are pipes to the
/// master: one of the `held` pipes, or one whose reader is gone (`POLLERR`
/// on the write end), so a line written while draining neither fails nor
/// panics.
fn quiet_orphaned_output(held: &[OwnedFd]) {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::fs::fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
    };
    let held: Vec<_> = held.iter().filter_map(|fd| id(fd.as_fd())).collect();
    let broken = |fd: std::os::fd::BorrowedFd<'_>| {
        if id(fd).is_some_and(|pipe| held.contains(&pipe)) {
            return true;
        }
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        let _ = poll(&mut fds, Some(&Timespec::default()));
        fds[0].revents().contains(PollFlags::ERR)
    };
    if broken(rustix::stdio::stdout()) {
        let _ = rustix::stdio::dup2_stdout(null.as_fd());
    }
    if broken(rustix::stdio::stderr()) {
        let _ = rustix::stdio::dup2_stderr(null.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// The master closes an instance's channel while it lives on when it
    /// refuses the library's hello (another protocol version, a bad role):
    /// the output pipes are still the master's to read. The watcher must
    /// not take that end of file for the master's death and start reading
    /// them itself, or the lines the instance writes next (the reason it
    /// gives up, say) never reach the master's log.
    ///
    /// Here this process is the living master. (A fix that checks the
    /// master is really gone, e.g. with a pidfd of `ALLY_MASTER_PID`, will
    /// pass `watch` this process's pid.)
    #[test]
    fn a_channel_closed_by_a_living_master_leaves_the_output_to_it() {
        let (master_end, instance_end) = UnixStream::pair().unwrap();
        let (read, write) = rustix::pipe::pipe().unwrap();
        let held = rustix::io::dup(&read).unwrap();
        let gone = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&gone);
        let me = rustix::process::pidfd_open(getpid(), rustix::process::PidfdFlags::empty()).ok();
        let pid = std::process::id();
        let watcher =
            std::thread::spawn(move || watch(&instance_end, vec![held], &flag, 0, (me, pid)));
        // The master refuses the hello and closes the channel, and lives on.
        drop(master_end);
        let start = Instant::now();
        while !gone.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        let line = b"ally: the master refused this library's version\n";
        rustix::io::write(&write, line).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let flags = rustix::fs::fcntl_getfl(&read).unwrap();
        rustix::fs::fcntl_setfl(&read, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut buf = [0u8; 128];
        let got = rustix::io::read(&read, &mut buf).unwrap_or(0);
        drop(write);
        let _ = watcher.join();
        assert_eq!(
            &buf[..got],
            &line[..],
            "the instance read (and dropped) its own output while the master lived"
        );
    }
}
