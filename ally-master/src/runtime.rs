//! The control socket: where it lives, and binding it safely next to a
//! stale one left by a crashed master.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
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

/// Why the control socket could not be set up.
#[derive(Debug)]
pub enum RuntimeError {
    /// No runtime directory applies.
    NoRuntimeDir,
    /// A master already answers on the socket.
    AlreadyRunning(PathBuf),
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
            RuntimeError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for RuntimeError {}

/// The control socket path for the master of `config`: `explicit` if given,
/// else `<runtime dir>/<config stem>.sock`.
pub fn socket_path(explicit: Option<&Path>, config: &Path) -> Result<PathBuf, RuntimeError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
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
/// [`SOCKET_MODE`]), creating its directory if needed and replacing a
/// stale socket nobody answers on.
///
/// With `group`, the socket is owned by that group and mode 0660, so its
/// members can connect (the master checks their groups again on hello).
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, RuntimeError> {
    let io_err = |e| RuntimeError::Io(path.to_owned(), e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| RuntimeError::Io(dir.to_owned(), e))?;
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
