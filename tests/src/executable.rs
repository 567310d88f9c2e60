//! Putting an executable in place so that it can be executed at once.
//!
//! `execve` of a file that any process holds open for writing fails with
//! `ETXTBSY`. A test process runs many tests on many threads, and each
//! spawn forks: a child forked while this thread had the file open for
//! writing carries that descriptor until its own exec, and an exec of the
//! file meanwhile fails ("Text file busy"). So the executable is written
//! by a `cp` child, never through a descriptor of the test process, and
//! put at its path by rename (as a package manager replaces a running
//! binary).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Puts a copy of `from` at `to`, with `mode`.
///
/// # Panics
///
/// When the copy, the chmod or the rename fails.
pub fn install(from: &Path, to: &Path, mode: u32) {
    let tmp = to.with_extension("new");
    let status = Command::new("cp")
        .arg("-f")
        .arg(from)
        .arg(&tmp)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cp: {e}"));
    assert!(
        status.success(),
        "cp {} {}: {status}",
        from.display(),
        tmp.display()
    );
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", tmp.display()));
    std::fs::rename(&tmp, to)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), to.display()));
}

/// Puts `text` at `to`, with `mode`. The text is written to a file beside
/// it that is never executed, and copied from there.
///
/// # Panics
///
/// When a write, the copy or the rename fails.
pub fn install_text(text: &str, to: &Path, mode: u32) {
    let data = to.with_extension("text");
    std::fs::write(&data, text).unwrap_or_else(|e| panic!("write {}: {e}", data.display()));
    install(&data, to, mode);
    let _ = std::fs::remove_file(&data);
}
