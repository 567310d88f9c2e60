//! The few calls that need `unsafe`.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use rustix::process::{Resource, Rlimit};

/// The first descriptor number of sockets handed over (`SD_LISTEN_FDS_START`).
pub const FIRST_PASSED_FD: i32 = 3;

/// A duplicate of `fd` numbered at least `3 + count` and **not**
/// close-on-exec, for the launcher to inherit (see [`crate::spawn`]), which
/// places it with [`place_passed_fds`]. The master is one thread and drops
/// it right after the spawn, so no other child inherits it.
pub fn dup_inheritable_above(fd: impl AsFd, count: usize) -> std::io::Result<OwnedFd> {
    let min = FIRST_PASSED_FD.saturating_add(i32::try_from(count).unwrap_or(i32::MAX));
    let dup = rustix::io::fcntl_dupfd_cloexec(fd, min)?;
    rustix::io::fcntl_setfd(&dup, rustix::io::FdFlags::empty())?;
    Ok(dup)
}

/// The number of `fd`, for the launcher's command line.
pub fn fd_number(fd: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd().to_string()
}

/// In the launcher: moves the inherited descriptors `fds` (numbers from its
/// command line) to 3, 4, ... in order, and closes the originals, so the
/// program gets exactly systemd's layout.
///
/// # Errors
///
/// If a number is below `3 + fds.len()` (placing one could overwrite
/// another) or not open, or `dup2` fails.
pub fn place_passed_fds(fds: &[i32]) -> std::io::Result<()> {
    let floor = FIRST_PASSED_FD.saturating_add(i32::try_from(fds.len()).unwrap_or(i32::MAX));
    if let Some(low) = fds.iter().find(|&&fd| fd < floor) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("descriptor {low} is below {floor}"),
        ));
    }
    for (index, &raw) in fds.iter().enumerate() {
        let target = FIRST_PASSED_FD + index as i32;
        // SAFETY: the master passed descriptor `raw` to the launcher, which
        // is one thread and has no other use for it; it is only borrowed
        // here, and checked open by dup2 (EBADF otherwise).
        let source = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        // SAFETY: `target` is below every passed number, so it is none of
        // them, and the launcher owns nothing else there (it opened nothing
        // yet); `ManuallyDrop` keeps it open, as dup2 leaves it.
        let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(target) });
        rustix::io::dup2(source, &mut target)?;
    }
    for &raw in fds {
        // SAFETY: each original was passed for the launcher alone and is now
        // placed at its target: closing it once, here, is its only close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    Ok(())
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
    /// As plain data, for an upgrade.
    pub fn snapshot(&self) -> crate::handover::snapshot::CredSnap {
        crate::handover::snapshot::CredSnap {
            pid: self
                .pid
                .map(rustix::process::Pid::as_raw_nonzero)
                .map(i32::from),
            uid: self.uid.as_raw(),
            gid: self.gid,
        }
    }

    /// What [`snapshot`](Self::snapshot) gave.
    pub fn restore(snap: crate::handover::snapshot::CredSnap) -> PeerCred {
        PeerCred {
            pid: snap.pid.and_then(rustix::process::Pid::from_raw),
            uid: rustix::process::Uid::from_raw(snap.uid),
            gid: snap.gid,
        }
    }

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

/// Removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment once the master has taken the sockets they describe, so
/// that no child, and not this binary executed again in place, takes
/// them for its own.
///
/// Call it from `main` while no other thread exists.
pub fn forget_listen_env() {
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called from main before any other thread is started (the
        // stderr writer starts with the first log line, which comes later),
        // so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(var) };
    }
}

/// `fcntl(F_SETFD)` — makes `fd` inherited across exec (`inherit`) or
/// close-on-exec again: an upgrade clears `FD_CLOEXEC` on exactly the
/// descriptors it hands over, right before the exec, and sets it back if
/// the exec fails.
///
/// # Errors
///
/// If `fd` is not open.
pub fn set_inherited(fd: impl AsFd, inherit: bool) -> std::io::Result<()> {
    use rustix::io::FdFlags;
    let flags = if inherit {
        FdFlags::empty()
    } else {
        FdFlags::CLOEXEC
    };
    Ok(rustix::io::fcntl_setfd(fd, flags)?)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)` — runs the program open
/// at `fd` in this process, in place (same pid, same children). Returns
/// only on failure, with why.
///
/// Call it from the main thread with every other thread idle: the kernel
/// ends them, and the children's death signal (`PR_SET_PDEATHSIG`) is tied
/// to the thread that spawned them, which is the main one.
pub fn exec_fd(
    fd: impl AsFd,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> std::io::Error {
    use std::os::fd::AsRawFd;

    let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: `fd` is open (borrowed for the call); the empty path is a
    // NUL-terminated literal; `args` and `env` are NULL-terminated arrays
    // of pointers into `argv` and `envp`, which outlive the call. On
    // success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            args.as_ptr(),
            env.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    std::io::Error::last_os_error()
}
