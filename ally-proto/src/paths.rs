//! Where the master puts its control socket, decided the same way by the
//! master and by `ally-ctl`.
//!
//! The functions are pure: callers pass in the environment they read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Runtime directory override.
pub const RUNTIME_DIR_VAR: &str = "ALLY_RUNTIME_DIR";

/// Extension of control socket files in the runtime directory.
pub const SOCKET_EXTENSION: &str = "sock";

/// The runtime directory: `$ALLY_RUNTIME_DIR`, else `/run/ally` for root,
/// else `$XDG_RUNTIME_DIR/ally`. `None` when none applies (a non-root user
/// without `XDG_RUNTIME_DIR`): the caller must then be told to set one.
pub fn runtime_dir(
    ally_runtime_dir: Option<OsString>,
    is_root: bool,
    xdg_runtime_dir: Option<OsString>,
) -> Option<PathBuf> {
    let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty(ally_runtime_dir) {
        return Some(dir);
    }
    if is_root {
        return Some(PathBuf::from("/run/ally"));
    }
    non_empty(xdg_runtime_dir).map(|d| d.join("ally"))
}

/// The control socket of the master started with `config`:
/// `<runtime dir>/<config file stem>.sock`.
pub fn control_socket(runtime_dir: &Path, config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_owned())
        .unwrap_or_else(|| "ally".into());
    let mut name = stem;
    name.push(".");
    name.push(SOCKET_EXTENSION);
    runtime_dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(runtime_dir(some("/x"), true, some("/y")), Some("/x".into()));
        assert_eq!(runtime_dir(some(""), true, None), Some("/run/ally".into()));
        assert_eq!(runtime_dir(None, false, some("/y")), Some("/y/ally".into()));
        assert_eq!(runtime_dir(None, false, None), None);
    }

    #[test]
    fn socket_named_after_config() {
        assert_eq!(
            control_socket(Path::new("/r"), Path::new("/etc/ally/web.toml")),
            PathBuf::from("/r/web.sock")
        );
    }
}
