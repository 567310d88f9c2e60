//! Running a command to completion within a time limit, and showing what it
//! did when an assertion about it fails.

use std::fmt;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::proc::{POLL, signal};

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub cmd: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// The exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.cmd)?;
        writeln!(f, "status: {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// Runs `cmd` with stdin closed, capturing both output streams, and waits for
/// it at most `timeout`.
///
/// # Panics
///
/// When the command cannot be started, or is still running after `timeout`
/// (it is killed first, and the message shows what it had printed).
pub fn run(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let shown = show(cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{shown}`: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    // A thread blocks in wait(), so the exit is seen the moment it happens
    // (the elapsed time is exact, which the benchmark relies on); the
    // deadline is a timed receive.
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let finished = rx.recv_timeout(timeout).is_ok();
    let elapsed = start.elapsed();
    if !finished {
        // Not reaped yet (the waiter is still in wait()), so the pid is
        // still this child's.
        let _ = signal(pid, Signal::KILL);
    }
    let status = waiter
        .join()
        .expect("waiter thread")
        .unwrap_or_else(|e| panic!("cannot wait for `{shown}`: {e}"));
    // A grandchild holding the pipes open must not hang us either: the
    // readers are joined only if they finish soon.
    let join = |h: std::thread::JoinHandle<String>| {
        let until = Instant::now() + Duration::from_secs(2);
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(POLL);
        }
        if h.is_finished() {
            h.join().unwrap_or_default()
        } else {
            "<output still open after exit>".to_string()
        }
    };
    let output = CmdOutput {
        cmd: shown,
        status,
        stdout: join(out),
        stderr: join(err),
        elapsed,
    };
    assert!(
        finished,
        "command did not finish within {timeout:?}\n{output}"
    );
    output
}

/// A command line as a shell would show it (arguments with spaces quoted).
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_both_streams_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.code(), Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(
            out.to_string()
                .contains("command: sh -c 'echo out; echo err >&2; exit 3'")
        );
    }

    #[test]
    #[should_panic(expected = "did not finish")]
    fn a_hung_command_is_killed_and_reported() {
        run(Command::new("sleep").arg("30"), Duration::from_millis(200));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
