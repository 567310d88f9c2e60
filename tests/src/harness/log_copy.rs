//! The master's log: its stderr copied into `master.log`, each line
//! stamped with the time, by a thread of the test; held back on request.

use std::io::{BufRead, BufReader, PipeReader, Write};
use std::thread::JoinHandle;

use crate::clock::stamp;

/// Holds the master's stderr unread (see
/// [`Master::start_with_stderr_held`]) until released or dropped.
#[derive(Debug)]
pub struct StderrGate(pub(super) Option<std::sync::mpsc::Sender<()>>);

impl StderrGate {
    /// Lets the master's stderr be read (into its log) from now on.
    pub fn release(&mut self) {
        if let Some(open) = self.0.take() {
            let _ = open.send(());
        }
    }
}

/// Copies lines from `from` to `to`, each prefixed with the time; with a
/// `gate`, only once it opens (or its sender is gone).
pub(super) fn stamp_lines(
    from: PipeReader,
    mut to: std::fs::File,
    gate: Option<std::sync::mpsc::Receiver<()>>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("master-log".into())
        .spawn(move || {
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            let mut from = BufReader::new(from);
            let mut line = Vec::new();
            while matches!(from.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut out = format!("{} ", stamp()).into_bytes();
                out.extend_from_slice(&line);
                if to.write_all(&out).is_err() {
                    break;
                }
                line.clear();
            }
        })
        .expect("spawn the log thread")
}
