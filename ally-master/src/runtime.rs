//! The control socket: where it lives, and binding it safely next to a
//! stale one left by a crashed master.
//!
//! The directory it lives in must be the master's: owned by its uid or
//! root, and writable by no one else (group- and world-writable are refused
//! outright, sticky bit or not), since whoever can write there can remove
//! the socket and put their own in its place.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use ally_proto::paths;

/// Mode of the control socket: only the master's user may connect (root
/// always can). The uid check on hello enforces the same rule.
pub const SOCKET_MODE: u32 = 0o600;

/// Mode of the control socket when `[master] group` grants a group.
pub const GROUP_SOCKET_MODE: u32 = 0o660;

/// Mode of a runtime directory the master creates.
pub const DIR_MODE: u32 = 0o700;

/// Mode of a runtime directory the master creates when `[master] group`
/// grants a group: owned by that group, which may enter it (to reach the
/// 0660 socket) but not write to it.
pub const GROUP_DIR_MODE: u32 = 0o750;

/// Why the control socket could not be set up.
#[derive(Debug)]
pub enum RuntimeError {
    /// No runtime directory applies.
    NoRuntimeDir,
    /// A master already answers on the socket.
    AlreadyRunning(PathBuf),
    /// The socket's directory is owned or writable by someone else.
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// Its permission bits.
        mode: u32,
        /// What is wrong, and what to do.
        problem: &'static str,
    },
    /// Creating the directory or binding the socket failed.
    Io(PathBuf, io::Error),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::NoRuntimeDir => write!(
                f,
                "no runtime directory: set {} or XDG_RUNTIME_DIR, or pass --socket",
                paths::RUNTIME_DIR_VAR
            ),
            RuntimeError::AlreadyRunning(p) => write!(
                f,
                "another ally-master is already running on {}; stop it first or use another --socket",
                p.display()
            ),
            RuntimeError::UnsafeDir {
                dir,
                uid,
                gid,
                mode,
                problem,
            } => write!(
                f,
                "refusing the runtime directory {} (owner uid {uid}, group {gid}, mode {mode:04o}): \
                 {problem}; or pass --socket in a directory of your own",
                dir.display()
            ),
            RuntimeError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// The control socket path for the master of `config`: `explicit` if given
/// (made absolute against the current directory, so instances started
/// elsewhere find it too), else `<runtime dir>/<config stem>.sock`.
pub fn socket_path(explicit: Option<&Path>, config: &Path) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = explicit {
        return std::path::absolute(path).map_err(|e| RuntimeError::Io(path.to_owned(), e));
    }
    let dir = paths::runtime_dir(
        std::env::var_os(paths::RUNTIME_DIR_VAR),
        rustix::process::geteuid().is_root(),
        std::env::var_os("XDG_RUNTIME_DIR"),
    )
    .ok_or(RuntimeError::NoRuntimeDir)?;
    Ok(paths::control_socket(&dir, config))
}

/// Binds the control socket at `path` (non-blocking, close-on-exec, mode
/// [`SOCKET_MODE`]), creating its directory if needed (mode [`DIR_MODE`])
/// and replacing a stale socket nobody answers on. The directory is then
/// checked (see the module doc).
///
/// With `group`, the socket is owned by that group and mode 0660, so its
/// members can connect (the master checks their groups again on hello); a
/// directory the master creates is then mode [`GROUP_DIR_MODE`] and owned
/// by that group, so they can reach it.
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, RuntimeError> {
    let io_err = |e| RuntimeError::Io(path.to_owned(), e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_dir(dir, group)?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(RuntimeError::AlreadyRunning(path.to_owned()));
        }
        fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
            GROUP_SOCKET_MODE
        }
        None => SOCKET_MODE,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(listener)
}

/// Creates `dir` if it is missing and checks that it is the master's.
fn prepare_dir(dir: &Path, group: Option<u32>) -> Result<(), RuntimeError> {
    let io_err = |e| RuntimeError::Io(dir.to_owned(), e);
    if !dir.exists() {
        let mode = if group.is_some() {
            GROUP_DIR_MODE
        } else {
            DIR_MODE
        };
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(io_err)?;
        if let Some(gid) = group {
            // Every directory made on the way, so the group can get through.
            for made in missing {
                let made_err = |e| RuntimeError::Io(made.to_owned(), e);
                std::os::unix::fs::chown(made, None, Some(gid)).map_err(made_err)?;
                // The umask may have taken bits away.
                fs::set_permissions(made, fs::Permissions::from_mode(mode)).map_err(made_err)?;
            }
        }
    }
    let meta = fs::metadata(dir).map_err(io_err)?;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_dir = |problem| RuntimeError::UnsafeDir {
        dir: dir.to_owned(),
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
        problem,
    };
    if let Some(problem) = dir_problem(meta.uid(), meta.mode(), me) {
        return Err(unsafe_dir(problem));
    }
    if let Some(gid) = group
        && !group_can_enter(meta.gid(), meta.mode(), gid)
    {
        crate::log!(
            "warning: members of group {gid} cannot reach the control socket: {} is mode {:04o} \
             and group {}; chgrp {gid} and chmod 0750 it to let them",
            dir.display(),
            meta.mode() & 0o7777,
            meta.gid()
        );
    }
    Ok(())
}

/// What makes a directory owned by `owner` with `mode` unfit to hold the
/// control socket of a master running as `me`, if anything.
fn dir_problem(owner: u32, mode: u32, me: u32) -> Option<&'static str> {
    if owner != me && owner != 0 {
        return Some(
            "it is owned by neither root nor the master's user; use a directory of your own",
        );
    }
    if mode & 0o002 != 0 {
        return Some(
            "anyone may write to it, and so replace the socket; `chmod o-w` it (0700 or 0750)",
        );
    }
    if mode & 0o020 != 0 {
        return Some(
            "its group may write to it, and so replace the socket; `chmod g-w` it (0700 or 0750)",
        );
    }
    None
}

/// Whether members of group `gid` may enter a directory of group
/// `dir_gid` and `mode`.
fn group_can_enter(dir_gid: u32, mode: u32, gid: u32) -> bool {
    mode & 0o001 != 0 || (dir_gid == gid && mode & 0o010 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_directory_of_the_master_or_root_writable_by_its_owner_is_fit() {
        assert_eq!(dir_problem(1000, 0o700, 1000), None);
        assert_eq!(dir_problem(0, 0o755, 1000), None);
        assert_eq!(dir_problem(0, 0o750, 0), None);
        assert!(
            dir_problem(1001, 0o700, 1000)
                .unwrap()
                .contains("owned by neither")
        );
        assert!(
            dir_problem(1000, 0o700, 0)
                .unwrap()
                .contains("owned by neither")
        );
        assert!(
            dir_problem(0, 0o1777, 0)
                .unwrap()
                .contains("anyone may write")
        );
        assert!(
            dir_problem(0, 0o707, 0)
                .unwrap()
                .contains("anyone may write")
        );
        assert!(
            dir_problem(0, 0o770, 0)
                .unwrap()
                .contains("its group may write")
        );
        assert!(
            dir_problem(0, 0o3770, 0)
                .unwrap()
                .contains("its group may write")
        );
    }

    #[test]
    fn a_group_enters_by_its_own_bit_or_the_world_s() {
        assert!(group_can_enter(50, 0o750, 50));
        assert!(!group_can_enter(0, 0o750, 50));
        assert!(!group_can_enter(50, 0o700, 50));
        assert!(group_can_enter(0, 0o711, 50));
    }

    #[test]
    fn a_world_writable_directory_is_refused_and_a_private_one_taken() {
        let base = std::env::temp_dir().join(format!("ally-runtime-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let open = base.join("open");
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = bind(&open.join("m.sock"), None).unwrap_err().to_string();
        assert!(e.contains(&format!(
            "refusing the runtime directory {}",
            open.display()
        )));
        assert!(
            e.contains("mode 0777") && e.contains("anyone may write"),
            "{e}"
        );
        assert!(!open.join("m.sock").exists());

        let private = base.join("private");
        let listener = bind(&private.join("m.sock"), None).unwrap();
        let mode = fs::metadata(&private).unwrap().mode() & 0o7777;
        assert_eq!(mode, DIR_MODE);
        drop(listener);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn with_a_group_every_directory_made_is_the_group_s_and_0750() {
        let base = std::env::temp_dir().join(format!("ally-runtime-g-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let gid = rustix::process::getegid().as_raw();
        let dir = base.join("a/b");
        let listener = bind(&dir.join("m.sock"), Some(gid)).unwrap();
        for made in [base.join("a"), dir.clone()] {
            let meta = fs::metadata(&made).unwrap();
            assert_eq!(meta.mode() & 0o7777, GROUP_DIR_MODE, "{}", made.display());
            assert_eq!(meta.gid(), gid);
        }
        let socket = fs::metadata(dir.join("m.sock")).unwrap();
        assert_eq!(socket.mode() & 0o777, GROUP_SOCKET_MODE);
        drop(listener);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_relative_socket_is_made_absolute() {
        let path = socket_path(Some(Path::new("ctl/m.sock")), Path::new("/etc/a.toml")).unwrap();
        assert_eq!(path, std::env::current_dir().unwrap().join("ctl/m.sock"));
    }
}
