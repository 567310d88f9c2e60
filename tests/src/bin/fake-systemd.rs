//! `fake-systemd [--max N] [--starts N] PROGRAM ARGS...` — a stand-in for
//! systemd above a `Type=notify` service with `NotifyAccess=main`,
//! `FileDescriptorStoreMax=N` (default 64) and `Restart=on-failure`, for
//! tests on machines where systemd is not PID 1.
//!
//! It owns the service's `NOTIFY_SOCKET` (an abstract socket), keeps what
//! the main process stores there ([`ally_tests::fd_store`] has the rules),
//! and when the main process dies of a signal or exits non-zero, starts it
//! again (at most `--starts` times in all, default 5) with the stored
//! descriptors at 3.., `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID` (the
//! new process's pid: a `sh` shim executes the program in its own
//! process), and `FDSTORE=N`. It is a child subreaper, as PID 1 is, so the
//! service's orphans are reparented to it; every exit it reaps is one line
//! on stderr. SIGTERM or SIGINT is passed to the main process, and it exits
//! once that one has (0, or 1 if it failed).
//!
//! Lines on stderr, for tests to wait on: `fake-systemd: start N: pid P
//! with K descriptor(s) [names]`, `fake-systemd: READY=1 from pid P`,
//! `fake-systemd: stored NAME (K held)`, `fake-systemd: removed NAME`,
//! `fake-systemd: pid P exited with status S` / `was killed by signal S`.

#![allow(unsafe_code)]

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use ally_tests::fd_store::{Event, Store};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use rustix::process::{Pid, Signal, WaitOptions};

/// Most descriptors it passes to a start (`--max` above this is cut).
const MAX_PASSED: usize = 256;

/// One line on stderr, in one write: the master writes to the same file,
/// and `eprintln!` may split a line into several writes.
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("fake-systemd: {line}\n").as_bytes());
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut option = |flag: &str, default: usize| -> usize {
        match args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < args.len() => {
                let v = args.remove(i + 1);
                args.remove(i);
                v.parse().unwrap_or(default)
            }
            _ => default,
        }
    };
    let max = option("--max", 64).min(MAX_PASSED);
    let starts = option("--starts", 5);
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("usage: fake-systemd [--max N] [--starts N] PROGRAM ARGS...");
        return ExitCode::from(2);
    }
    match run(&args, max, starts) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say(&format!("{e}"));
            ExitCode::FAILURE
        }
    }
}

fn run(program: &[String], max: usize, starts: usize) -> std::io::Result<u8> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    let signals = SignalFd::new()?;
    let name = format!("fake-systemd/{}/notify", std::process::id());
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, flags, None)?;
    rustix::net::sockopt::set_socket_passcred(&socket, true)?;
    rustix::net::bind(
        &socket,
        &SocketAddrUnix::new_abstract_name(name.as_bytes())?,
    )?;
    let mut store = Store::new(max);
    let mut started = 1;
    let mut main = start(program, &name, max, &store, started)?;
    let mut stopping = false;
    loop {
        let mut fds = [
            PollFd::new(&socket, PollFlags::IN),
            PollFd::new(&signals.fd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let (notified, signalled) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if notified {
            receive(&socket, &mut store, main);
        }
        if !signalled {
            continue;
        }
        for sig in signals.read() {
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                say(&format!("signal {sig}: stopping pid {main}"));
                stopping = true;
                let _ = rustix::process::kill_process(pid(main), Signal::TERM);
            }
        }
        // Reap everything that ended: the main process, and orphans.
        while let Ok(Some((who, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            let who = who.as_raw_nonzero().get() as u32;
            let failed = match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => {
                    say(&format!("pid {who} exited with status {code}"));
                    code != 0
                }
                (_, Some(sig)) => {
                    say(&format!("pid {who} was killed by signal {sig}"));
                    true
                }
                _ => continue,
            };
            if who != main {
                continue;
            }
            // Whatever it still had to say counts (systemd reads the
            // socket before it handles the exit).
            receive(&socket, &mut store, main);
            if stopping || !failed {
                return Ok(u8::from(failed));
            }
            if started >= starts {
                say(&format!(
                    "pid {main} failed; {starts} starts already, giving up"
                ));
                return Ok(1);
            }
            started += 1;
            main = start(program, &name, max, &store, started)?;
        }
    }
}

fn pid(raw: u32) -> Pid {
    Pid::from_raw(raw as i32).expect("a pid is not 0")
}

/// Reads every datagram waiting and hands it to the store.
fn receive(socket: &OwnedFd, store: &mut Store, main: u32) {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut space =
            [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253), ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT;
        let Ok(got) = rustix::net::recvmsg(socket, &mut iov, &mut control, flags) else {
            return;
        };
        let mut sender = None;
        let mut fds = Vec::new();
        for message in control.drain() {
            match message {
                RecvAncillaryMessage::ScmCredentials(cred) => {
                    sender = Some(cred.pid.as_raw_nonzero().get() as u32);
                }
                RecvAncillaryMessage::ScmRights(rights) => fds.extend(rights),
                _ => {}
            }
        }
        let text = &buf[..got.bytes.min(buf.len())];
        for event in store.handle(sender, main, text, fds) {
            match event {
                Event::Ready => say(&format!("READY=1 from pid {main}")),
                Event::Stopping => say(&format!("STOPPING=1 from pid {main}")),
                Event::Reloading => say(&format!("RELOADING=1 from pid {main}")),
                Event::Status(s) => say(&format!("STATUS={s}")),
                Event::Stored(name) => say(&format!("stored {name} ({} held)", store.len())),
                Event::Removed(name, n) => say(&format!("removed {name} ({n} descriptor(s))")),
                Event::Refused(why) => say(&format!("refused: {why}")),
                Event::Ignored(who) => say(&format!("ignored a message from pid {who:?}")),
            }
        }
    }
}

/// Starts `program` as start number `n`, with the store's descriptors.
fn start(
    program: &[String],
    notify: &str,
    max: usize,
    store: &Store,
    n: usize,
) -> std::io::Result<u32> {
    let (fds, names) = store.listen_env();
    let raw: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let count = raw.len();
    if count > MAX_PASSED {
        return Err(std::io::Error::other(format!(
            "more than {MAX_PASSED} descriptors stored"
        )));
    }
    let mut cmd = Command::new("/bin/sh");
    // `$$` is the shell's pid, which the program keeps through exec.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"")
        .arg("sh")
        .args(program)
        .env("NOTIFY_SOCKET", format!("@{notify}"))
        .env("FDSTORE", max.to_string())
        .env_remove("LISTEN_PID");
    if count == 0 {
        cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_FDNAMES");
    } else {
        cmd.env("LISTEN_FDS", count.to_string())
            .env("LISTEN_FDNAMES", &names);
    }
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // system calls (fcntl, dup2, sigprocmask) on descriptors this process
    // owns (`raw`, borrowed from the store for the call), and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            let base = 3 + raw.len() as i32;
            // Out of the way first, so that placing one cannot overwrite
            // another; the copies are close-on-exec, the placed ones not.
            let mut high = [0i32; MAX_PASSED];
            for (i, &fd) in raw.iter().enumerate() {
                high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &fd) in high.iter().enumerate().take(raw.len()) {
                if libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let id = child.id();
    say(&format!(
        "start {n}: pid {id} with {count} descriptor(s) [{names}]"
    ));
    Ok(id)
}

/// SIGTERM, SIGINT and SIGCHLD, blocked and read from a `signalfd`.
struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    fn new() -> std::io::Result<SignalFd> {
        // SAFETY: plain libc calls on a local signal set; the process is
        // one thread, so the mask is the process's.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
                libc::sigaddset(&mut set, sig);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let raw = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(SignalFd {
                fd: OwnedFd::from_raw_fd(raw),
            })
        }
    }

    /// The signals that arrived (SIGCHLD is always reported, so that the
    /// caller reaps).
    fn read(&self) -> Vec<i32> {
        let mut signals = vec![libc::SIGCHLD];
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        while let Ok(n) = rustix::io::read(self.fd.as_fd(), &mut info) {
            if n < info.len() {
                break;
            }
            signals.push(i32::from_ne_bytes([info[0], info[1], info[2], info[3]]));
        }
        signals
    }
}
