//! One start of an app as the master holds it: its process, channel,
//! notify socket, status report, and the output it writes. Its life-cycle
//! state is the app's machine's ([`crate::app::machine`]), by id.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ally_proto::{Report, env};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Rlimit, Signal};

use crate::config::{self, AppConfig, CLEAN_ENV};
use crate::handover::fds::{Export, Import};
use crate::handover::snapshot::{InstanceSnap, NotifySnap, PipeSnap};
use crate::handover::{self, HandoverError};
use crate::limits::{READ_CHUNK, STDERR_TAIL_LINES};
use crate::lines::Splitter;
use crate::listeners::Bound;
use crate::notify::{NotifySocket, Strangers};
use crate::spawn;
use crate::sys::{self, PeerCred};
use crate::users;

/// What every instance is started with, whatever its app.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The master's control socket (never handed to instances: they talk
    /// to the master over their own channel).
    pub socket: PathBuf,
    /// The file-descriptor limit to give back to children, if the master
    /// raised its own.
    pub fd_limit: Option<Rlimit>,
}

/// Which output stream a pipe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The instance's stdout.
    Stdout,
    /// The instance's stderr; its last lines are kept for failure reports.
    Stderr,
}

/// The master's read end of an instance's stdout or stderr.
#[derive(Debug)]
pub struct OutputPipe {
    fd: OwnedFd,
    stream: Stream,
    lines: Splitter,
}

impl AsFd for OutputPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A running (or not yet reaped) instance.
#[derive(Debug)]
pub struct Instance {
    /// Id within the app, from 1.
    pub id: u64,
    /// Its process id; also its process group and session id.
    pub pid: Pid,
    /// When it was started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// What it last reported about itself.
    pub report: Report,
    /// Its stdout and stderr pipes, until they reach end of file.
    pub pipes: Vec<OutputPipe>,
    /// Its private `NOTIFY_SOCKET`.
    pub notify: NotifySocket,
    /// The master's end of the instance's channel, until the event loop
    /// takes it to serve it.
    channel: Option<UnixStream>,
    /// Who it runs as, for the channel's peer credentials.
    pub cred: PeerCred,
    tail: VecDeque<String>,
}

/// Milliseconds since the Unix epoch for `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Instance {
    /// Starts instance `id` of `app`, reading its command from disk anew.
    ///
    /// The child gets its own session, stdin from `/dev/null`, stdout and
    /// stderr on pipes to the master, the app's environment, and the `ALLY_*`
    /// variables that tell the library where its master is.
    ///
    /// # Errors
    ///
    /// If the command cannot be executed (missing, not executable, bad cwd).
    pub fn spawn(
        app: &AppConfig,
        id: u64,
        launch: &Launch,
        sockets: &[(String, Bound)],
    ) -> io::Result<Instance> {
        let (program, args) = app
            .command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let identity = users::resolve(app.user.as_deref(), app.group.as_deref())
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
        // The sockets go to 3.., the instance's channel right after them
        // (clear of the LISTEN_FDS range socket-activated programs count),
        // placed by the launcher, which also sets LISTEN_PID: the child's
        // pid is not known before it exists.
        let (channel, theirs) = UnixStream::pair()?;
        let (out_read, out_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        let (err_read, err_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        let mut fds: Vec<_> = sockets.iter().map(|(_, bound)| bound.fd.as_fd()).collect();
        fds.push(theirs.as_fd());
        // Every instance also holds the read ends of its own output pipes,
        // never reading them while the master lives: so the master's death
        // leaves them with a reader, and a line written after it cannot
        // fail with EPIPE (killing a C program with SIGPIPE, making Rust's
        // `println!` panic, Python raise) in the middle of its drain. One
        // that links ally points stdout and stderr at /dev/null on the
        // channel's end of file (`ALLY_OUTPUT_FDS` names them); one that
        // does not writes into the pipe until it is full (64 KiB each by
        // default: many lines of a drain), then blocks — until its exit,
        // or systemd's stop timeout. A blocked writer drains nothing more,
        // but a dead one fails every request it had in flight.
        fds.extend([out_read.as_fd(), err_read.as_fd()]);
        let setup = spawn::Setup {
            fds,
            listen_pid: !sockets.is_empty(),
            nofile: launch.fd_limit,
            identity: identity.as_ref().map(|who| (who.uid, who.gid)),
            death_signal: Some(app.stop_signal),
        };
        let (mut cmd, inherited) = spawn::command(program.as_ref(), args, &setup)?;
        let channel_fd = sys::FIRST_PASSED_FD + i32::try_from(sockets.len()).unwrap_or(i32::MAX);
        let notify = NotifySocket::bind(&app.name, id)?;
        cmd.current_dir(&app.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_write))
            .stderr(Stdio::from(err_write));
        if !app.inherit_env {
            cmd.env_clear();
            let passed = std::env::vars_os().filter(|(name, _)| clean_env_allows(name));
            cmd.envs(passed);
        }
        for var in env::ALL {
            cmd.env_remove(var);
        }
        if let Some(who) = identity.as_ref().filter(|_| app.user.is_some()) {
            cmd.env("USER", &who.name)
                .env("LOGNAME", &who.name)
                .env("HOME", &who.home);
        }
        cmd.envs(&app.env)
            .env(env::CHANNEL_FD, channel_fd.to_string())
            .env(env::MASTER_PID, std::process::id().to_string())
            .env(
                env::REQUEST_TIMEOUT_MS,
                app.request_timeout.as_millis().to_string(),
            )
            .env(env::APP, &app.name)
            .env(env::INSTANCE, id.to_string())
            .env(env::STOP_SIGNAL, signal_name(app.stop_signal))
            .env("NOTIFY_SOCKET", notify.address());
        let first = channel_fd + 1;
        cmd.env(env::OUTPUT_FDS, format!("{first},{}", first + 1));
        // The master's own from systemd, with `inherit_env`: the store is not theirs.
        for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "FDSTORE"] {
            cmd.env_remove(var);
        }
        if !sockets.is_empty() {
            let names: Vec<&str> = sockets.iter().map(|(name, _)| name.as_str()).collect();
            cmd.env("LISTEN_FDS", sockets.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
        }
        let child = cmd.spawn()?;
        drop((inherited, theirs));
        channel.set_nonblocking(true)?;
        let pid =
            Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("child has pid 0"))?;
        let pipes = vec![
            OutputPipe::new(out_read, Stream::Stdout)?,
            OutputPipe::new(err_read, Stream::Stderr)?,
        ];
        // The master reaps every child itself with waitpid; `Child` holds
        // nothing else, so dropping it is fine.
        drop(child);
        let cred = PeerCred {
            pid: Some(pid),
            uid: identity
                .as_ref()
                .map_or_else(rustix::process::geteuid, |who| {
                    rustix::process::Uid::from_raw(who.uid)
                }),
            gid: identity
                .as_ref()
                .map_or_else(|| rustix::process::getegid().as_raw(), |who| who.gid),
        };
        Ok(Instance {
            id,
            pid,
            notify,
            channel: Some(channel),
            cred,
            started_unix_ms: unix_ms(SystemTime::now()),
            report: Report::default(),
            pipes,
            tail: VecDeque::new(),
        })
    }

    /// The master's end of the instance's channel, the first time only.
    pub fn take_channel(&mut self) -> Option<UnixStream> {
        self.channel.take()
    }

    /// Sends `signal` to the instance's process.
    pub fn signal(&self, signal: Signal) {
        let _ = rustix::process::kill_process(self.pid, signal);
    }

    /// Sends SIGKILL to the instance's whole process group, so helpers it
    /// started die with it.
    pub fn kill(&self) {
        if rustix::process::kill_process_group(self.pid, Signal::KILL).is_err() {
            self.signal(Signal::KILL);
        }
    }

    /// Reads at most `budget` bytes from each output pipe (only
    /// `stream`'s, if given), without blocking, and calls `emit(stream,
    /// line, cut)` for every line they finish (and, at end of file, the
    /// last unfinished one). A pipe at end of file is removed. The last
    /// stderr lines are also kept for failure reports.
    pub fn read_output(
        &mut self,
        stream: Option<Stream>,
        budget: usize,
        mut emit: impl FnMut(Stream, &[u8], bool),
    ) {
        let mut buf = vec![0u8; READ_CHUNK.min(budget)];
        let tail = &mut self.tail;
        let mut line = |stream: Stream, bytes: &[u8], cut: bool| {
            if stream == Stream::Stderr {
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line_text(bytes, cut));
            }
            emit(stream, bytes, cut);
        };
        self.pipes.retain_mut(|pipe| {
            if stream.is_some_and(|s| s != pipe.stream) {
                return true;
            }
            let mut read = 0;
            while read < budget {
                let want = buf.len().min(budget - read);
                match rustix::io::read(&pipe.fd, &mut buf[..want]) {
                    Ok(0) => {
                        pipe.lines.finish(|l, cut| line(pipe.stream, l, cut));
                        return false;
                    }
                    Ok(n) => {
                        read += n;
                        pipe.lines
                            .push(&buf[..n], |l, cut| line(pipe.stream, l, cut));
                        if n < want {
                            // It held no more; poll says when it does.
                            break;
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(_) => {
                        pipe.lines.finish(|l, cut| line(pipe.stream, l, cut));
                        return false;
                    }
                }
            }
            true
        });
    }

    /// The last lines the instance wrote to stderr, for failure reports.
    pub fn stderr_tail(&self) -> String {
        if self.tail.is_empty() {
            return "(its stderr was empty)".to_owned();
        }
        let mut out = String::from("last lines of its stderr:");
        for line in &self.tail {
            out.push_str("\n  ");
            out.push_str(line);
        }
        out
    }
}

impl Instance {
    /// As plain data, its descriptors listed in `fds`, times relative to
    /// `now`.
    pub fn snapshot<'a>(&'a self, fds: &mut Export<'a>, now: Instant) -> InstanceSnap {
        let (unreported, last) = self.notify.strangers.parts();
        InstanceSnap {
            id: self.id,
            pid: self.pid.as_raw_nonzero().get(),
            started_unix_ms: self.started_unix_ms,
            report: self.report.clone(),
            pipes: self
                .pipes
                .iter()
                .map(|pipe| {
                    let (partial, skipping) = pipe.lines.parts();
                    PipeSnap {
                        fd: fds.add(pipe.fd.as_fd()),
                        stderr: pipe.stream == Stream::Stderr,
                        partial: partial.to_vec(),
                        skipping,
                    }
                })
                .collect(),
            notify: NotifySnap {
                fd: fds.add(self.notify.fd()),
                address: self.notify.address().to_owned(),
                unreported,
                last_report_ago_ms: last.map(|t| handover::ago_ms(t, now)),
            },
            channel: self.channel.as_ref().map(|c| fds.add(c.as_fd())),
            cred: self.cred.snapshot(),
            tail: self.tail.iter().cloned().collect(),
        }
    }

    /// The instance `snap` describes: the same process, still the
    /// master's child.
    ///
    /// # Errors
    ///
    /// A missing descriptor or a pid that is not one.
    pub fn restore(
        snap: InstanceSnap,
        fds: &mut Import,
        now: Instant,
    ) -> Result<Instance, HandoverError> {
        let pid = Pid::from_raw(snap.pid)
            .ok_or_else(|| HandoverError::Restore(format!("instance pid {}", snap.pid)))?;
        let pipes = snap
            .pipes
            .into_iter()
            .map(|p| {
                Ok(OutputPipe {
                    fd: fds.take(p.fd)?,
                    stream: if p.stderr {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    },
                    lines: Splitter::from_parts(p.partial, p.skipping),
                })
            })
            .collect::<Result<Vec<_>, HandoverError>>()?;
        let strangers = Strangers::from_parts(
            snap.notify.unreported,
            snap.notify
                .last_report_ago_ms
                .map(|ms| handover::before(now, ms)),
        );
        let notify = NotifySocket::adopt(fds.take(snap.notify.fd)?, snap.notify.address, strangers);
        let channel = snap
            .channel
            .map(|i| fds.take(i).map(UnixStream::from))
            .transpose()?;
        let mut tail: VecDeque<String> = snap.tail.into();
        while tail.len() > STDERR_TAIL_LINES {
            tail.pop_front();
        }
        Ok(Instance {
            id: snap.id,
            pid,
            started_unix_ms: snap.started_unix_ms,
            report: snap.report,
            pipes,
            notify,
            channel,
            cred: PeerCred::restore(snap.cred),
            tail,
        })
    }
}

impl OutputPipe {
    /// Which stream it carries.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    fn new(fd: OwnedFd, stream: Stream) -> io::Result<OutputPipe> {
        // Our own end of a fresh pipe: an instance that holds a copy too
        // (see `spawn`) polls before it reads.
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(OutputPipe {
            fd,
            stream,
            lines: Splitter::default(),
        })
    }
}

/// One output line as text: invalid UTF-8 replaced, a `…` after one that
/// was cut.
fn line_text(line: &[u8], cut: bool) -> String {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if cut {
        text.push('…');
    }
    text
}

/// The conventional name of `signal`, such as `SIGTERM`.
pub fn signal_name(signal: Signal) -> String {
    if signal == Signal::KILL {
        return "SIGKILL".to_owned();
    }
    config::signal_name(signal).map_or_else(|| format!("signal {}", signal.as_raw()), str::to_owned)
}

/// Explains how a process ended, from its wait status.
pub fn describe_exit(status: rustix::process::WaitStatus) -> String {
    if let Some(code) = status.exit_status() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.terminating_signal() {
        let name = Signal::from_named_raw(sig).map_or_else(|| format!("signal {sig}"), signal_name);
        format!("was killed by {name}")
    } else {
        "ended".to_owned()
    }
}

/// Whether `name` is one of [`CLEAN_ENV`] (`LC_*` matching every locale
/// variable).
fn clean_env_allows(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    CLEAN_ENV
        .iter()
        .any(|allowed| match allowed.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *allowed,
        })
}
