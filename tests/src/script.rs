//! Small shell-script services, processes a test starts itself (killed on
//! drop), and the stamped lines of the master's log.
//!
//! The demo is the service for anything that must become main; a script is
//! for what the demo does not do: exit at once, trap a signal and say so,
//! leave an orphan behind. A script never reports ready, so its instance
//! stays `starting` until its `ready_timeout`; tests that use one set a
//! long `ready_timeout`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use rustix::process::Signal;

use crate::clock::unstamped;
use crate::proc::{signal, wait_until};

/// A `ready_timeout` long enough that a script's instance outlives any
/// test while `starting`.
pub const NEVER_READY: &str = "1h";

/// Writes `<dir>/<name>.sh`, executable: `#!/bin/sh`, then `body`.
///
/// # Panics
///
/// When the file cannot be written.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.sh"));
    crate::executable::install_text(&format!("#!/bin/sh\n{body}"), &path, 0o755);
    path
}

/// How many `start line N` lines [`signal_script`] prints at start.
pub const START_LINES: usize = 7;

/// A script that prints `start line 1` to `start line 7` on stderr, then
/// `usr1 N` on stderr at the Nth SIGUSR1, and otherwise idles until its
/// stop signal (SIGTERM ends it).
pub fn signal_script(dir: &Path, name: &str) -> PathBuf {
    let body = format!(
        "n=0\n\
         trap 'n=$((n+1)); echo \"usr1 $n\" >&2' USR1\n\
         i=1\n\
         while [ $i -le {START_LINES} ]; do echo \"start line $i\" >&2; i=$((i+1)); done\n\
         while :; do sleep 0.05; done\n"
    );
    write_script(dir, name, &body)
}

/// Single-quotes `word` for the shell.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The lines of a stamped log (see [`Master::log`](crate::harness::Master::log))
/// that contain `pattern`, each with its stamp in seconds.
pub fn stamped_lines(log: &str, pattern: &str) -> Vec<(f64, String)> {
    log.lines()
        .filter(|l| l.contains(pattern))
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?.parse::<f64>().ok()?;
            Some((stamp, unstamped(l).to_string()))
        })
        .collect()
}

/// A process the test started itself, SIGKILLed (by its pid) and reaped on
/// drop; its stdout, if piped, is read line by line by a thread.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    lines: Option<Receiver<String>>,
}

impl Spawned {
    /// Starts `cmd` with stdin closed, stdout read line by line, stderr
    /// inherited.
    ///
    /// # Panics
    ///
    /// When it cannot be started.
    pub fn with_stdout_lines(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines: Some(rx),
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of its stdout, waiting at most `timeout`; `None` when
    /// none came (or stdout closed).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Waits (at most `timeout`) for a line of its stdout containing
    /// `pattern`; returns it and every line read before it.
    pub fn wait_line(&self, pattern: &str, timeout: Duration) -> (Option<String>, Vec<String>) {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next_line(left) {
                Some(line) if line.contains(pattern) => return (Some(line), seen),
                Some(line) => seen.push(line),
                None => return (None, seen),
            }
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.running() {
            let _ = signal(self.child.id(), Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

/// Waits up to `timeout` for `path` to hold a line containing `pattern`;
/// returns the file's text then (or what it held at the deadline).
pub fn wait_file_line(path: &Path, pattern: &str, timeout: Duration) -> (bool, String) {
    let mut text = String::new();
    let found = wait_until(timeout, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().any(|l| l.contains(pattern))
    });
    (found, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_lines_keep_the_time() {
        let log = "   1.250 ally-master: a#1: started, pid 9\n   2.500 other\n";
        assert_eq!(
            stamped_lines(log, ": started"),
            vec![(1.25, "ally-master: a#1: started, pid 9".to_string())]
        );
    }

    #[test]
    fn the_signal_script_counts_usr1() {
        let dir = std::env::temp_dir().join(format!("ally-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = signal_script(&dir, "sig");
        let mut cmd = Command::new("sh");
        // Its stderr to our stdout pipe, to read it.
        cmd.arg("-c")
            .arg(format!("exec {} 2>&1", sh_quote(&path.to_string_lossy())));
        let child = Spawned::with_stdout_lines(cmd);
        let (line, _) = child.wait_line(
            &format!("start line {START_LINES}"),
            Duration::from_secs(10),
        );
        assert!(line.is_some());
        signal(child.pid(), Signal::USR1).unwrap();
        let (line, _) = child.wait_line("usr1 1", Duration::from_secs(10));
        assert_eq!(line.as_deref(), Some("usr1 1"));
        drop(child);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
