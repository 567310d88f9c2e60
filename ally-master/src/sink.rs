//! Where log lines are written without the event loop ever waiting: each
//! sink is a bounded queue that a writer thread of its own empties.
//!
//! Why a thread rather than non-blocking writes: a log file is a regular
//! file, for which `O_NONBLOCK` means nothing (a write waits for a slow or
//! full disk, an NFS server); and the master's stderr is a descriptor it
//! shares with whoever started it (a terminal, a shell's pipe, journald's
//! stream): setting `O_NONBLOCK` on it would change that file description
//! for the parent too. A writer thread blocks in `write(2)` instead of the
//! loop, whatever the descriptor is.
//!
//! The loop [`push`](Sink::push)es a line if it fits within the queue's
//! bound; one that does not is dropped and counted against its source
//! (`web#3`, `ally-master`). The count becomes one marker line, `ally: 1234
//! lines of web#3 dropped: log sink too slow`, written as soon as the sink
//! takes lines again: before that source's next line, or by the writer
//! thread once it has emptied the queue.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use rustix::event::{PollFd, PollFlags};

use crate::limits::SINK_THREAD_STACK;

/// A bounded queue of lines and the thread that writes them.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
}

/// Where a writer thread writes.
#[derive(Debug)]
pub enum Target {
    /// The master's stderr: markers are bare lines.
    Stderr,
    /// A log file: markers carry a timestamp, like every line of it.
    File(File),
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Something to write (or the sink closed).
    work: Condvar,
    /// The queue emptied.
    idle: Condvar,
}

#[derive(Debug)]
enum Chunk {
    Lines(Vec<u8>),
    /// Write what follows to this file (`reopen`).
    Switch(File),
}

#[derive(Debug)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Bytes queued in `chunks`.
    bytes: usize,
    /// Most bytes `chunks` may hold.
    limit: usize,
    /// Lines dropped per source since its last marker.
    dropped: Vec<(String, u64)>,
    /// The writer thread is writing a chunk it took.
    busy: bool,
    /// No more lines: the thread exits once the queue is written.
    closed: bool,
    /// The writer thread could not be started: every line is dropped.
    dead: bool,
}

impl Sink {
    /// A sink writing to `target` through a thread named `name`, queueing
    /// at most `limit` bytes. If the thread cannot be started, the sink
    /// drops every line (and counts them).
    pub fn new(name: &str, target: Target, limit: usize) -> Sink {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                bytes: 0,
                limit,
                dropped: Vec::new(),
                busy: false,
                closed: false,
                dead: false,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name(name.to_owned())
            .stack_size(SINK_THREAD_STACK)
            .spawn(move || write_loop(&theirs, target));
        if started.is_err() {
            shared.lock().dead = true;
        }
        Sink { shared }
    }

    /// Queues `line` (which ends with a newline) from `source`, after the
    /// marker of what `source` lost before, if any. Returns `false` if it
    /// was dropped: the queue is full (or the writer is gone).
    pub fn push(&self, source: &str, line: &[u8]) -> bool {
        let mut state = self.shared.lock();
        let pending = state.dropped.iter().position(|(s, _)| s == source);
        // Room for the marker too (formatted only once it fits: a flood
        // that is being dropped costs no formatting).
        let reserve = pending.map_or(0, |_| source.len() + MARKER_RESERVE);
        if state.dead || state.closed || state.bytes + line.len() + reserve > state.limit {
            match pending {
                Some(index) => state.dropped[index].1 += 1,
                None => state.dropped.push((source.to_owned(), 1)),
            }
            return false;
        }
        if let Some(index) = pending {
            let (_, count) = state.dropped.swap_remove(index);
            state.append(marker(source, count).as_bytes());
        }
        state.append(line);
        drop(state);
        self.shared.work.notify_one();
        true
    }

    /// Writes what is queued to `file` from now on (after logrotate moved
    /// the old one); what was queued before still goes to the old one.
    pub fn switch(&self, file: File) {
        self.shared.lock().chunks.push_back(Chunk::Switch(file));
        self.shared.work.notify_one();
    }

    /// Waits until everything queued is written, or `deadline` passes.
    /// Returns whether it was all written.
    pub fn flush(&self, deadline: Instant) -> bool {
        let mut state = self.shared.lock();
        while !state.dead && (state.busy || !state.chunks.is_empty()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.shared.idle.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

impl Drop for Sink {
    /// The thread writes what is queued, then exits.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code that holds the lock can panic; if some did, the queue
        // is still consistent enough to go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn append(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
        if let Some(Chunk::Lines(last)) = self.chunks.back_mut() {
            last.extend_from_slice(bytes);
        } else {
            self.chunks.push_back(Chunk::Lines(bytes.to_vec()));
        }
    }
}

/// Bytes of a marker line besides its source's name.
const MARKER_RESERVE: usize = 80;

/// The marker line for `count` lines of `source` dropped.
fn marker(source: &str, count: u64) -> String {
    let lines = if count == 1 { "line" } else { "lines" };
    format!("ally: {count} {lines} of {source} dropped: log sink too slow\n")
}

/// The writer thread: writes chunks in order, then the markers of lines
/// dropped since, and waits for more.
fn write_loop(shared: &Shared, mut target: Target) {
    let mut state = shared.lock();
    loop {
        if let Some(chunk) = state.chunks.pop_front() {
            state.busy = true;
            drop(state);
            let written = match chunk {
                Chunk::Lines(bytes) => {
                    // A failed write (disk full) loses its lines, as a
                    // write by the loop would have; the next may succeed.
                    let _ = target.write_all(&bytes);
                    bytes.len()
                }
                Chunk::Switch(file) => {
                    target = Target::File(file);
                    0
                }
            };
            state = shared.lock();
            state.bytes -= written;
            state.busy = false;
            if state.chunks.is_empty() {
                shared.idle.notify_all();
            }
            continue;
        }
        if !state.dropped.is_empty() {
            let dropped = std::mem::take(&mut state.dropped);
            drop(state);
            for (source, count) in dropped {
                let _ = target.write_marker(&marker(&source, count));
            }
            state = shared.lock();
            continue;
        }
        if state.closed {
            return;
        }
        state = match shared.work.wait(state) {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
    }
}

impl Target {
    /// Writes all of `bytes`, waiting (in this thread) while the
    /// descriptor is full: stderr may have been left non-blocking by
    /// whoever shares it, and a log file is opened `O_NONBLOCK`.
    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = match self {
                Target::Stderr => io::stderr().lock().write(bytes),
                Target::File(file) => file.write(bytes),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let stderr = io::stderr();
                    let fd = match &*self {
                        Target::Stderr => stderr.as_fd(),
                        Target::File(file) => file.as_fd(),
                    };
                    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                    let _ = rustix::event::poll(&mut fds, None);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_marker(&mut self, marker: &str) -> io::Result<()> {
        match self {
            Target::Stderr => self.write_all(marker.as_bytes()),
            Target::File(_) => {
                let stamped = format!("{} {marker}", crate::logs::timestamp(SystemTime::now()));
                self.write_all(stamped.as_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_blocked_writer_drops_lines_counts_them_and_marks_them_later() {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(writer));
        // As a stderr someone else made non-blocking: a full pipe is
        // waited for, nothing already queued is lost.
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        rustix::fs::fcntl_setfl(&file, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
        let sink = Sink::new("test-sink", Target::File(file), 100);
        // Nobody reads the pipe: once it and the queue are full, lines drop
        // without the caller ever waiting.
        let started = Instant::now();
        let line = [b'z'; 50];
        let mut line = line.to_vec();
        line.push(b'\n');
        let mut dropped = 0;
        for _ in 0..100_000 {
            if !sink.push("web#3", &line) {
                dropped += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(dropped > 0);
        // Read everything: the marker comes once the writer has room.
        let reading = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = reader.read_to_end(&mut all);
            String::from_utf8_lossy(&all).into_owned()
        });
        assert!(sink.flush(Instant::now() + Duration::from_secs(10)));
        assert!(sink.push("web#3", b"after\n"));
        assert!(sink.flush(Instant::now() + Duration::from_secs(10)));
        drop(sink);
        let text = reading.join().unwrap();
        let markers: Vec<&str> = text.lines().filter(|l| l.contains("dropped")).collect();
        let counted: u64 = markers
            .iter()
            .filter_map(|l| {
                l.split(" ally: ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(counted, dropped, "{markers:?}");
        let written = text.lines().filter(|l| l.starts_with('z')).count() as u64;
        assert_eq!(written + dropped, 100_000, "every line written or counted");
        assert!(markers[0].ends_with("of web#3 dropped: log sink too slow"));
        assert!(text.ends_with("after\n"), "{text:?}");
    }
}
