//! Whether the master may execute a binary as its upgrade: only one that
//! no user but root and the master's own could have put in place.
//!
//! An upgrade executes, with the master's privileges, whatever is at the
//! master's path when it is asked, and members of `[master] group` may ask
//! for one. So the binary must be owned by root or the master's user and
//! writable by no one else, and so must every directory on the way to it
//! (both the path it was started by and the path that resolves to, so a
//! symlink's own directory counts): a directory writable by others is
//! accepted only if sticky, with the entry in it owned by root or the
//! master's user (then no one else can rename or remove it). The same
//! rule as for the directory of the control socket, for the same reason.

use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::{FileType, Stat};
use rustix::process::Uid;

/// Group- and world-writable bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// The sticky bit.
const STICKY: u32 = 0o1000;

/// Checks `binary` (opened from `path`) and the directories on the way to
/// it, for a master running as `uid`.
///
/// # Errors
///
/// What another user could write, with its owner and mode, and what to
/// do about it.
pub fn check(binary: BorrowedFd<'_>, path: &Path, uid: Uid) -> Result<(), String> {
    let trusted = |owner: u32| owner == 0 || owner == uid.as_raw();
    let refuse = |what: &Path, st: &Stat| {
        format!(
            "{} is writable by users other than root and uid {} (owner uid {}, mode {:04o}): \
             any of them could replace the binary; make it owned by one of those two and \
             writable by no one else",
            what.display(),
            uid.as_raw(),
            st.st_uid,
            st.st_mode & 0o7777
        )
    };
    let file =
        rustix::fs::fstat(binary).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    if !trusted(file.st_uid) || file.st_mode & WRITABLE_BY_OTHERS != 0 {
        return Err(refuse(path, &file));
    }
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    for chain in [path, resolved.as_path()] {
        for (dir, entry) in chain.ancestors().skip(1).zip(chain.ancestors()) {
            let st =
                rustix::fs::stat(dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                continue;
            }
            let safe = trusted(st.st_uid)
                && (st.st_mode & WRITABLE_BY_OTHERS == 0
                    || (st.st_mode & STICKY != 0
                        && rustix::fs::lstat(entry).is_ok_and(|e| trusted(e.st_uid))));
            if !safe {
                return Err(refuse(dir, &st));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ally-trust-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn a_binary_or_directory_others_may_write_is_refused() {
        let dir = scratch("modes");
        let bin = dir.join("ally-master");
        std::fs::write(&bin, b"").unwrap();
        let me = rustix::process::geteuid();
        let checked = |mode_bin: u32, mode_dir: u32| {
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(mode_bin)).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode_dir)).unwrap();
            let file = std::fs::File::open(&bin).unwrap();
            check(file.as_fd(), &bin, me)
        };
        assert_eq!(checked(0o755, 0o755), Ok(()));
        assert!(checked(0o775, 0o755).unwrap_err().contains("mode 0775"));
        assert!(checked(0o757, 0o755).is_err());
        let err = checked(0o755, 0o777).unwrap_err();
        assert!(err.starts_with(&dir.display().to_string()), "{err}");
        // Sticky, with the entry owned by a trusted user: no one else can
        // rename or remove it.
        assert_eq!(checked(0o755, 0o1777), Ok(()));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        let file = std::fs::File::open(&bin).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check(file.as_fd(), &link, me).is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
