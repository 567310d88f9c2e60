//! Running a server's processes for the reload comparison: its commands,
//! its workers (children found through `/proc`), and whatever outlives it.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ally_tests::cmd::show;
use ally_tests::proc::{alive, signal, wait_until, wait_until_every};
use rustix::process::Signal;

/// How often a reload is checked for completion: fine, so that the pacing
/// stays that of `reload --wait`, which is told at once.
pub const RELOAD_POLL: Duration = Duration::from_millis(2);
/// How long a server may take to start, finish a reload, or stop.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// `name` in a directory of `PATH`, or in `/usr/sbin` or `/sbin` (where
/// Debian puts both servers, and which a user's `PATH` may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The first line `program ARGS` prints on stdout or stderr.
pub fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|out| {
            let text = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

/// Runs `cmd` to completion within [`SERVER_TIMEOUT`], its output appended
/// to `log` (never a pipe: a daemon it starts would hold that open).
///
/// # Errors
///
/// It could not start, ran too long (it is killed), or failed.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let shown = show(cmd);
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    let mut status = None;
    wait_until(SERVER_TIMEOUT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("`{shown}` failed with {s}\n{}", log_tail(log))),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "`{shown}` did not finish within {SERVER_TIMEOUT:?}"
            ))
        }
    }
}

/// The last lines of a server's log, for error messages.
pub fn log_tail(log: &Path) -> String {
    ally_tests::cmd::tail(&std::fs::read_to_string(log).unwrap_or_default(), 10)
}

/// Waits until `parent` has a child not in `before` and `ready` holds,
/// polling every [`RELOAD_POLL`]: that child's pid, or `None` after
/// [`SERVER_TIMEOUT`] or once `parent` is gone.
pub fn new_child(
    parent: u32,
    before: &BTreeSet<u32>,
    mut ready: impl FnMut() -> bool,
) -> Option<u32> {
    let mut found = None;
    wait_until_every(RELOAD_POLL, SERVER_TIMEOUT, || {
        found = children(parent).into_iter().find(|p| !before.contains(p));
        (found.is_some() && ready()) || !alive(parent)
    });
    found.filter(|_| alive(parent))
}

/// Pids of the live children of `parent`, from the parent field of every
/// `/proc/PID/stat`.
pub fn children(parent: u32) -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| parent_of(&stat) == Some(parent))
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// The parent pid in a `/proc/PID/stat` line: the second field after the
/// parenthesised command name (which may itself hold `)`).
fn parent_of(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// SIGKILLs each pid of `pids` still alive whose command line starts with
/// `name` (a pid reused by another program is left alone), and waits for
/// them to be gone.
pub fn kill_leftovers(pids: &BTreeSet<u32>, name: &str) {
    let ours = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let c = String::from_utf8_lossy(&c);
            let argv0 = c.split('\0').next().unwrap_or_default();
            // nginx rewrites its title to `nginx: worker process`.
            argv0.starts_with(name) || Path::new(argv0).file_name().is_some_and(|b| b == name)
        })
    };
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| alive(p) && ours(&p))
        .collect();
    for &pid in &left {
        eprintln!("ally-bench: {name} process {pid} outlived its server; killing it");
        let _ = signal(pid, Signal::KILL);
    }
    wait_until(SERVER_TIMEOUT, || left.iter().all(|&p| !alive(p)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_survives_parens_in_the_name() {
        assert_eq!(parent_of("12 (nginx: a) b) S 7 12 12"), Some(7));
        assert_eq!(parent_of("12 (sh) S 1 12"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = parent_of(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(children(parent).contains(&me));
    }
}
