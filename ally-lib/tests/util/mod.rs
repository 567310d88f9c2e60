//! Helpers for tests that need a process of their own: the test binary
//! runs itself again, with one test selected and a marker in the
//! environment that tells that test it is the child.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Names the child role; set only in children.
pub const ROLE: &str = "ALLY_LIB_TEST_ROLE";

/// Whether this process is the child playing `role`.
pub fn is_child(role: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|r| r == role)
}

/// A command running test `test` of this test binary as `role`, with every
/// `ALLY_*` variable of the parent removed.
pub fn child(test: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    for var in ally_proto::env::ALL {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` and returns its output, panicking with both streams if it
/// failed or did not run exactly one test (a misspelt test name would run
/// none and pass).
pub fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child {cmd:?} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ally-lib-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
