//! The path-socket helper, `ally-master --path-socket-helper JOB ...`: a
//! short-lived child that does the file-system work of a unix socket path
//! for the master, as the user of the app the socket is for.
//!
//! The master runs as root, but binds for an app only what that app's user
//! could bind itself. So everything that touches the path happens here,
//! under that user's identity (set by the master when it spawns this), and
//! never through a symlink:
//!
//! - the parent directory is walked from `/` one component at a time with
//!   `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)`; a symlink or `..`
//!   anywhere in the path is refused, and so is a directory on the way that
//!   someone other than root and the app's user could change (writable by
//!   others, unless sticky with the entry owned by root or the user). So
//!   the path `bind` is given — the absolute one, which is what the
//!   socket's address must read — reaches the directory walked;
//! - a file already at the name is replaced only if it is a socket nobody
//!   is bound to: a non-blocking connect of a stream *and* a datagram
//!   socket both get `ECONNREFUSED`. Anything else — an answer, a full
//!   listen queue (`EAGAIN`), a socket of the other type (`EPROTOTYPE`), a
//!   denied connect — means it is in use, and it is left alone;
//! - the requested mode comes from the umask at `bind`, never from a
//!   `chmod` by path;
//! - `unlink` removes the file only if it is still the socket that was
//!   bound (same device and inode).
//!
//! The socket to bind is created by the master and passed at fd 3; the
//! outcome is one line on stdout: `ok`, `ok DEV INO` or `error MESSAGE`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::sys;

/// The first argument that makes `ally-master` this helper.
pub const HELPER_ARG: &str = "--path-socket-helper";

/// Where the master passes the socket to bind.
const PASSED_SOCKET: i32 = sys::FIRST_PASSED_FD;

/// How a refusal to replace a socket file something is bound to begins.
pub const FILE_IN_USE: &str = "the socket file is in use";

/// A socket file, by device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// What the helper is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Bind the socket at fd 3 to `path`, replacing a stale socket file;
    /// with `mode`, the file gets exactly that mode.
    Bind {
        /// Absolute path.
        path: PathBuf,
        /// File mode, at most 0o777.
        mode: Option<u32>,
    },
    /// Remove `path` if it is still the socket file `file`.
    Unlink {
        /// Absolute path.
        path: PathBuf,
        /// The file that was bound.
        file: FileId,
    },
}

impl Job {
    /// The helper's arguments after [`HELPER_ARG`].
    pub fn args(&self) -> Vec<OsString> {
        match self {
            Job::Bind { path, mode } => vec![
                "bind".into(),
                path.into(),
                mode.map_or_else(|| "-".into(), |m| format!("{m:o}").into()),
            ],
            Job::Unlink { path, file } => vec![
                "unlink".into(),
                path.into(),
                file.dev.to_string().into(),
                file.ino.to_string().into(),
            ],
        }
    }

    fn parse(args: &[OsString]) -> Option<Job> {
        let text = |a: &OsString| a.to_str().map(str::to_owned);
        match args {
            [job, path, mode] if job == "bind" => Some(Job::Bind {
                path: PathBuf::from(path),
                mode: match text(mode)?.as_str() {
                    "-" => None,
                    m => Some(u32::from_str_radix(m, 8).ok().filter(|m| *m <= 0o777)?),
                },
            }),
            [job, path, dev, ino] if job == "unlink" => Some(Job::Unlink {
                path: PathBuf::from(path),
                file: FileId {
                    dev: text(dev)?.parse().ok()?,
                    ino: text(ino)?.parse().ok()?,
                },
            }),
            _ => None,
        }
    }
}

/// How a job went, as the helper reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; a bind gives the file it created.
    Done(Option<FileId>),
    /// Not done, and why.
    Failed(String),
}

impl Outcome {
    /// The report line.
    pub fn encode(&self) -> String {
        match self {
            Outcome::Done(None) => "ok\n".to_owned(),
            Outcome::Done(Some(id)) => format!("ok {} {}\n", id.dev, id.ino),
            Outcome::Failed(why) => format!("error {}\n", why.replace('\n', " ")),
        }
    }

    /// Reads a report: its first line.
    pub fn decode(report: &[u8]) -> Outcome {
        let line = report.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        if let Some(why) = line.strip_prefix("error ") {
            return Outcome::Failed(why.to_owned());
        }
        let mut words = line.split(' ');
        let parsed = match (words.next(), words.next(), words.next(), words.next()) {
            (Some("ok"), None, None, None) => Some(None),
            (Some("ok"), Some(dev), Some(ino), None) => dev
                .parse()
                .ok()
                .zip(ino.parse().ok())
                .map(|(dev, ino)| Some(FileId { dev, ino })),
            _ => None,
        };
        parsed.map_or_else(
            || Outcome::Failed(format!("the helper gave no answer (it wrote {line:?})")),
            Outcome::Done,
        )
    }
}

/// Why the file-system work was refused or failed. Messages say what is
/// wrong with the path; the master names the socket and the user.
#[derive(Debug)]
#[non_exhaustive]
pub enum PathError {
    /// The path is not absolute.
    NotAbsolute,
    /// The path names no file (it ends in `/` or `..`).
    NoName,
    /// A `..` component.
    ParentDir,
    /// A component of the directory is a symlink.
    Symlink(PathBuf),
    /// A component of the directory is not a directory.
    NotDirectory(PathBuf),
    /// A directory on the way can be changed by another user: the entry
    /// walked through it could be swapped for a symlink.
    Unstable {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode.
        mode: u32,
    },
    /// A directory of the path cannot be opened or entered.
    Open(PathBuf, Errno),
    /// The name exists and is not a socket.
    NotSocket,
    /// A socket is at the name and something is bound to it: what a stream
    /// and a datagram connect got.
    InUse {
        /// The stream connect's result.
        stream: Result<(), Errno>,
        /// The datagram connect's result.
        datagram: Result<(), Errno>,
    },
    /// `fstatat` of the name failed.
    Stat(Errno),
    /// Removing the stale socket file failed.
    Remove(Errno),
    /// `bind` failed.
    Bind(Errno),
    /// No socket at fd 3.
    NoSocket(io::Error),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = |e: &Errno| io::Error::from(*e);
        match self {
            PathError::NotAbsolute => f.write_str("the path is not absolute"),
            PathError::NoName => f.write_str("the path names no file"),
            PathError::ParentDir => {
                f.write_str("`..` in a socket path is refused: give the path without it")
            }
            PathError::Symlink(p) => write!(
                f,
                "{} is a symbolic link, and socket paths are never followed through one: \
                 give the real path",
                p.display()
            ),
            PathError::NotDirectory(p) => write!(f, "{} is not a directory", p.display()),
            PathError::Unstable { dir, uid, mode } => write!(
                f,
                "directory {} (owner uid {uid}, mode {mode:#o}) can be changed by other users, \
                 so the path could be redirected while it is bound: use directories that only \
                 root and the app's user can change",
                dir.display()
            ),
            PathError::Open(p, e) => write!(f, "cannot enter directory {}: {}", p.display(), os(e)),
            PathError::NotSocket => {
                f.write_str("the path exists and is not a socket: remove it or choose another path")
            }
            PathError::InUse { stream, datagram } => write!(
                f,
                "{FILE_IN_USE} (a stream connect {}, a datagram connect {}); only \
                 a socket file nobody is bound to is replaced: stop what uses it or choose \
                 another path",
                probe_result(stream),
                probe_result(datagram)
            ),
            PathError::Stat(e) => write!(f, "cannot look at the path: {}", os(e)),
            PathError::Remove(e) => write!(f, "cannot remove the stale socket file: {}", os(e)),
            PathError::Bind(e) => write!(f, "bind: {}", os(e)),
            PathError::NoSocket(e) => write!(f, "no socket was passed at fd 3: {e}"),
        }
    }
}

impl std::error::Error for PathError {}

fn probe_result(r: &Result<(), Errno>) -> String {
    match r {
        Ok(()) => "was answered".to_owned(),
        Err(Errno::AGAIN) => "found its queue full (EAGAIN)".to_owned(),
        Err(Errno::PROTOTYPE) => "found a socket of the other type (EPROTOTYPE)".to_owned(),
        Err(e) => format!("got {}", io::Error::from(*e)),
    }
}

/// The helper's `main`: runs the job in `args` and reports on stdout (a
/// failure to remove a file also on stderr, which goes to the master's log).
pub fn main(args: &[OsString]) -> ExitCode {
    let Some(job) = Job::parse(args) else {
        eprintln!("ally-master: {HELPER_ARG} is internal to ally-master");
        return ExitCode::from(2);
    };
    let outcome = match &job {
        Job::Bind { path, mode } => sys::adopt_fd(PASSED_SOCKET)
            .map_err(PathError::NoSocket)
            .and_then(|socket| bind(&socket, path, *mode))
            .map(Some),
        Job::Unlink { path, file } => unlink(path, *file).map(|_| None),
    };
    let outcome = match outcome {
        Ok(file) => Outcome::Done(file),
        Err(e) => Outcome::Failed(e.to_string()),
    };
    let _ = io::stdout().write_all(outcome.encode().as_bytes());
    match (&job, &outcome) {
        (_, Outcome::Done(_)) => ExitCode::SUCCESS,
        (Job::Unlink { path, .. }, Outcome::Failed(why)) => {
            eprintln!(
                "ally-master: cannot remove socket file {}: {why}",
                path.display()
            );
            ExitCode::FAILURE
        }
        (Job::Bind { .. }, Outcome::Failed(_)) => ExitCode::FAILURE,
    }
}

/// Binds `socket` to `path`: walks to its directory without following a
/// symlink, makes it the working directory, replaces a stale socket file,
/// and binds with a umask that gives `mode`.
///
/// Changes this process's working directory and (during the bind) umask:
/// only for the helper.
///
/// # Errors
///
/// A [`PathError`] saying which component or check refused it.
fn bind(socket: &OwnedFd, path: &Path, mode: Option<u32>) -> Result<FileId, PathError> {
    let (dir, name) = open_parent(path)?;
    rustix::process::fchdir(&dir).map_err(|e| PathError::Open(parent_of(path), e))?;
    clear_stale(name)?;
    // The absolute path, so the socket's address is the one asked for; the
    // walk made sure it resolves to `dir`.
    let addr = SocketAddrUnix::new(path).map_err(PathError::Bind)?;
    let old = mode.map(|m| rustix::process::umask(Mode::from_bits_truncate(!m & 0o777)));
    let bound = rustix::net::bind(socket, &addr);
    if let Some(old) = old {
        rustix::process::umask(old);
    }
    bound.map_err(PathError::Bind)?;
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(PathError::Stat)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(PathError::NotSocket);
    }
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Removes `path` if it is still the socket `file`. Returns whether it did.
fn unlink(path: &Path, file: FileId) -> Result<bool, PathError> {
    let (dir, name) = open_parent(path)?;
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(PathError::Stat(e)),
        Ok(st)
            if FileType::from_raw_mode(st.st_mode) == FileType::Socket
                && st.st_dev == file.dev
                && st.st_ino == file.ino =>
        {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(PathError::Remove)?;
            Ok(true)
        }
        Ok(_) => Ok(false),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_owned()
}

/// Opens the directory of `path` (`O_PATH`), walking from `/` one component
/// at a time without following a symlink; returns it and the last
/// component.
fn open_parent(path: &Path) -> Result<(OwnedFd, &OsStr), PathError> {
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir) {
        return Err(PathError::NotAbsolute);
    }
    let parts: Vec<Component<'_>> = parts.filter(|c| *c != Component::CurDir).collect();
    if parts.contains(&Component::ParentDir) {
        return Err(PathError::ParentDir);
    }
    let Some((Component::Normal(name), dirs)) = parts.split_last() else {
        return Err(PathError::NoName);
    };
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut walked = PathBuf::from("/");
    let mut dir = rustix::fs::openat(CWD, "/", flags, Mode::empty())
        .map_err(|e| PathError::Open(walked.clone(), e))?;
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    for part in dirs {
        let Component::Normal(part) = part else {
            return Err(PathError::NoName);
        };
        let next = match rustix::fs::openat(&dir, *part, flags, Mode::empty()) {
            Ok(next) => next,
            Err(e) => {
                walked.push(part);
                return Err(explain(&dir, part, walked, e));
            }
        };
        stable(&dir, &next, me).map_err(|(uid, mode)| PathError::Unstable {
            dir: walked.clone(),
            uid,
            mode,
        })?;
        walked.push(part);
        dir = next;
    }
    Ok((dir, name))
}

/// Whether the entry `next` of directory `dir` can be swapped only by root
/// or `me` (uid, gid): `dir` is theirs and nobody else may write it, or it
/// is sticky and `next` is theirs too. Else `dir`'s owner and mode.
fn stable(dir: &OwnedFd, next: &OwnedFd, me: (u32, u32)) -> Result<(), (u32, u32)> {
    const STICKY: u32 = 0o1000;
    const GROUP_WRITE: u32 = 0o020;
    const OTHER_WRITE: u32 = 0o002;
    let trusted = |uid: u32| uid == 0 || uid == me.0;
    let (Ok(d), Ok(n)) = (rustix::fs::fstat(dir), rustix::fs::fstat(next)) else {
        return Err((u32::MAX, 0));
    };
    let mode = d.st_mode & 0o7777;
    let others_write = mode & OTHER_WRITE != 0 || (mode & GROUP_WRITE != 0 && d.st_gid != me.1);
    let safe = trusted(d.st_uid) && (!others_write || (mode & STICKY != 0 && trusted(n.st_uid)));
    if safe { Ok(()) } else { Err((d.st_uid, mode)) }
}

/// Why opening directory `part` of `dir` (the path `walked`) failed.
fn explain(dir: &OwnedFd, part: &OsStr, walked: PathBuf, e: Errno) -> PathError {
    match rustix::fs::statat(dir, part, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            PathError::Symlink(walked)
        }
        Ok(_) if e == Errno::NOTDIR => PathError::NotDirectory(walked),
        _ => PathError::Open(walked, e),
    }
}

/// Removes `name` (in the working directory) if it is a socket file nobody
/// is bound to; nothing there is fine too.
fn clear_stale(name: &OsStr) -> Result<(), PathError> {
    let st = match rustix::fs::statat(CWD, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(PathError::Stat(e)),
        Ok(st) => st,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(PathError::NotSocket);
    }
    let addr = SocketAddrUnix::new(name).map_err(PathError::Stat)?;
    let stream = probe(SocketType::STREAM, &addr);
    let datagram = probe(SocketType::DGRAM, &addr);
    if stream == Err(Errno::CONNREFUSED) && datagram == Err(Errno::CONNREFUSED) {
        return rustix::fs::unlinkat(CWD, name, AtFlags::empty()).map_err(PathError::Remove);
    }
    Err(PathError::InUse { stream, datagram })
}

/// A non-blocking connect of a `kind` socket to `addr`.
fn probe(kind: SocketType, addr: &SocketAddrUnix) -> Result<(), Errno> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = rustix::net::socket_with(AddressFamily::UNIX, kind, flags, None)?;
    rustix::net::connect(&fd, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_outcomes_round_trip() {
        let jobs = [
            Job::Bind {
                path: "/run/x.sock".into(),
                mode: Some(0o660),
            },
            Job::Bind {
                path: "/run/x.sock".into(),
                mode: None,
            },
            Job::Unlink {
                path: "/run/x.sock".into(),
                file: FileId { dev: 7, ino: 42 },
            },
        ];
        for job in jobs {
            assert_eq!(Job::parse(&job.args()), Some(job));
        }
        let bad = ["bind", "/x", "1777"].map(OsString::from);
        assert_eq!(Job::parse(&bad), None, "modes above 0o777 are refused");
        for outcome in [
            Outcome::Done(None),
            Outcome::Done(Some(FileId { dev: 1, ino: 2 })),
            Outcome::Failed("no\nway".into()),
        ] {
            let back = Outcome::decode(outcome.encode().as_bytes());
            match &outcome {
                Outcome::Failed(_) => assert_eq!(back, Outcome::Failed("no way".into())),
                _ => assert_eq!(back, outcome),
            }
        }
        assert!(matches!(Outcome::decode(b""), Outcome::Failed(_)));
        assert!(matches!(Outcome::decode(b"ok 1"), Outcome::Failed(_)));
    }

    #[test]
    fn the_walk_refuses_symlinks_and_dotdot() {
        let dir = std::env::temp_dir().join(format!("ally-walk-{}", std::process::id()));
        let real = dir.join("real");
        std::fs::create_dir_all(&real).unwrap();
        let link = dir.join("link");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();

        assert!(open_parent(&real.join("x.sock")).is_ok());
        let err = open_parent(&link.join("x.sock")).unwrap_err();
        assert!(matches!(&err, PathError::Symlink(p) if *p == link), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = open_parent(&link.join("sub/x.sock")).unwrap_err();
        assert!(matches!(err, PathError::Symlink(_)), "{err}");
        let err = open_parent(&file.join("x.sock")).unwrap_err();
        assert!(matches!(err, PathError::NotDirectory(_)), "{err}");
        let dotdot = PathBuf::from(format!("{}/../real/x.sock", real.display()));
        assert!(matches!(
            open_parent(&dotdot).unwrap_err(),
            PathError::ParentDir
        ));
        assert!(matches!(
            open_parent(Path::new("x.sock")).unwrap_err(),
            PathError::NotAbsolute
        ));
        assert!(matches!(
            open_parent(Path::new("/")).unwrap_err(),
            PathError::NoName
        ));
        // A directory anyone may write could have its entries swapped.
        let open = dir.join("open");
        std::fs::create_dir_all(open.join("sub")).unwrap();
        let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
        std::fs::set_permissions(&open, mode(0o777)).unwrap();
        let err = open_parent(&open.join("sub/x.sock")).unwrap_err();
        assert!(
            matches!(&err, PathError::Unstable { dir, .. } if *dir == open),
            "{err}"
        );
        assert!(
            open_parent(&open.join("x.sock")).is_ok(),
            "the last directory may be open"
        );
        // Sticky, with the entry owned by this user: it cannot be swapped.
        std::fs::set_permissions(&open, mode(0o1777)).unwrap();
        assert!(open_parent(&open.join("sub/x.sock")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unlink_removes_only_the_socket_it_bound() {
        let dir = std::env::temp_dir().join(format!("ally-unlink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let st = rustix::fs::stat(&path).unwrap();
        let id = FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        };
        let other = FileId {
            dev: id.dev,
            ino: id.ino + 1,
        };
        assert!(
            !unlink(&path, other).unwrap(),
            "another inode is left alone"
        );
        assert!(path.exists());
        assert!(unlink(&path, id).unwrap());
        assert!(!path.exists());
        assert!(!unlink(&path, id).unwrap(), "a missing file is fine");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
