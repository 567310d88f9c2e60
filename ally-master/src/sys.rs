//! The few calls that need `unsafe`.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{Resource, Rlimit};

/// Prepares the child started by `cmd`, between fork and exec:
///
/// - makes it a session leader (`setsid(2)`), so it has its own process
///   group: signals for the master's terminal do not reach it, and the
///   master can signal its whole group;
/// - gives it back the file-descriptor limit the master started with
///   (`setrlimit(2)`), since the master raises its own (see
///   [`raise_fd_limit`]) and programs using `select(2)` break above 1024.
///
/// `pass` are sockets to hand over at fds 3, 4, ... (systemd's socket
/// activation layout). They must all be numbered at or above
/// `3 + pass.len()`, so that placing one never overwrites another: see
/// [`dup_above`].
pub fn prepare_child(cmd: &mut Command, fd_limit: Option<Rlimit>, pass: Vec<OwnedFd>) {
    // SAFETY: the closure runs in the forked child before exec; it calls only
    // setsid(2), setrlimit(2) and dup2(2), which are async-signal-safe, and
    // allocates nothing (`fd_limit` and `pass` are moved in). The targets
    // 3.. are wrapped in `ManuallyDrop`, so nothing is closed twice: dup2
    // replaces whatever the number held, and exec keeps the result (dup2
    // clears close-on-exec on the new descriptor).
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setsid()?;
            if let Some(limit) = fd_limit {
                rustix::process::setrlimit(Resource::Nofile, limit)?;
            }
            for (index, fd) in pass.iter().enumerate() {
                let target = FIRST_PASSED_FD + index as i32;
                let mut target = ManuallyDrop::new(OwnedFd::from_raw_fd(target));
                rustix::io::dup2(fd, &mut target)?;
            }
            Ok(())
        });
    }
}

/// The first descriptor number of sockets handed over (`SD_LISTEN_FDS_START`).
pub const FIRST_PASSED_FD: i32 = 3;

/// A close-on-exec duplicate of `fd` numbered at least `3 + count`, for
/// [`prepare_child`].
pub fn dup_above(fd: impl AsFd, count: usize) -> std::io::Result<OwnedFd> {
    let min = FIRST_PASSED_FD.saturating_add(i32::try_from(count).unwrap_or(i32::MAX));
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, min)?)
}

/// `setrlimit(RLIMIT_NOFILE)` — raises the master's soft limit on open files
/// to its hard limit, so thousands of client connections and listeners fit.
/// Returns the limit it started with, for children, or `None` if nothing
/// changed.
pub fn raise_fd_limit() -> Option<Rlimit> {
    let original = rustix::process::getrlimit(Resource::Nofile);
    if original.current == original.maximum {
        return None;
    }
    let raised = Rlimit {
        current: original.maximum,
        maximum: original.maximum,
    };
    rustix::process::setrlimit(Resource::Nofile, raised).ok()?;
    Some(original)
}

/// Marks every file descriptor above stderr close-on-exec, so whatever the
/// master inherited (a job-server pipe, a descriptor leaked by a shell) is
/// not passed on to instances: they get only their stdio.
///
/// Call it first thing in `main`, while no other thread exists.
///
/// # Errors
///
/// If `/proc/self/fd` cannot be read.
pub fn cloexec_inherited_fds() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, BorrowedFd};

    use rustix::fs::{CWD, Dir, Mode, OFlags};
    use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};

    let dir_fd = rustix::fs::openat(
        CWD,
        "/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = Dir::read_from(&dir_fd)?;
    let mut fds = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        if let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>()
            && fd > 2
            && fd != dir_fd.as_raw_fd()
        {
            fds.push(fd);
        }
    }
    for raw in fds {
        // SAFETY: `raw` was listed as open in /proc/self/fd just now, and
        // nothing closes descriptors meanwhile: this runs before any other
        // thread exists, and `dir` (whose own descriptor may be listed)
        // lives until the end of the function.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        if let Ok(flags) = fcntl_getfd(fd) {
            let _ = fcntl_setfd(fd, flags | FdFlags::CLOEXEC);
        }
    }
    drop(dir);
    Ok(())
}

/// Who is at the other end of a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Its pid; `None` when it lives in a PID namespace this process cannot
    /// see (a client on the host talking to a master in a container).
    pub pid: Option<rustix::process::Pid>,
    /// Its effective uid.
    pub uid: rustix::process::Uid,
    /// Its effective primary gid.
    pub gid: u32,
}

impl PeerCred {
    /// The pid for messages: the number, or `?` when unknown.
    pub fn pid_text(&self) -> String {
        self.pid
            .map_or_else(|| "?".to_owned(), |p| p.as_raw_nonzero().to_string())
    }
}

/// `SO_PEERCRED` — the credentials of the peer of a unix socket.
///
/// Read with `getsockopt(2)` directly because the kernel reports pid 0 for
/// a peer in a PID namespace the caller cannot see, which rustix's typed
/// wrapper cannot represent.
///
/// # Errors
///
/// If `fd` is not a connected unix socket.
pub fn peer_cred(fd: impl AsFd) -> std::io::Result<PeerCred> {
    use std::os::fd::AsRawFd;

    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the whole call (borrowed), and
    // `cred`/`len` point to writable memory of the size `len` declares.
    let result = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: rustix::process::Pid::from_raw(cred.pid),
        uid: rustix::process::Uid::from_raw(cred.uid),
        gid: cred.gid,
    })
}

/// Takes ownership of descriptor `raw`, given on the command line by a
/// supervisor (`--ready-fd`), after checking it is open.
///
/// # Errors
///
/// If `raw` is not an open descriptor above stderr.
pub fn adopt_fd(raw: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::BorrowedFd;

    if raw <= 2 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is stdio; give one above 2"),
        ));
    }
    // SAFETY: only used for one fcntl(F_GETFD) while nothing else in the
    // process closes descriptors (called from main; the only other thread
    // that may exist by then, the stderr writer, closes none).
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(borrowed)?;
    // SAFETY: `raw` is open (just checked), was inherited from the parent,
    // and nothing in this process has taken ownership of it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
