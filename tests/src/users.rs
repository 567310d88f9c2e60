//! A second uid for the tests that need one: the throwaway system user
//! `ally-e2e-user`, created (as root) on first use.

use std::process::Command;
use std::sync::Mutex;

/// The throwaway user's name.
pub const USER: &str = "ally-e2e-user";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and primary gid of `user`, from `/etc/passwd`.
pub fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
}

/// [`USER`]'s ids, creating it first (a system user without a home) if
/// needed; `None`, with a message saying why the test is skipped, when
/// that is not possible (not root, no `useradd`).
pub fn test_user() -> Option<(u32, u32)> {
    static CREATE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ids) = passwd_ids(USER) {
        return Some(ids);
    }
    if !is_root() {
        eprintln!("skipped: creating the user {USER} needs root");
        return None;
    }
    match Command::new("useradd")
        .args(["--system", "--no-create-home", USER])
        .output()
    {
        Ok(out) if out.status.success() => passwd_ids(USER),
        Ok(out) => {
            eprintln!(
                "skipped: `useradd {USER}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("skipped: cannot run useradd: {e}");
            None
        }
    }
}
