//! Splitting an instance's output into lines, in time linear in the bytes
//! read and in memory bounded by [`MAX_LOG_LINE`].
//!
//! Each read is searched for newlines once, from its first byte: whole
//! lines inside it are handed out as slices of the read itself, and only
//! an unfinished last line is copied, into a buffer that never holds more
//! than [`MAX_LOG_LINE`] bytes. A longer line is handed out cut at that
//! length (marked `cut`) as soon as it is known to be too long, and the
//! rest of it, up to its newline, is skipped.

use crate::limits::MAX_LOG_LINE;

/// The line splitter of one output pipe.
#[derive(Debug, Default)]
pub struct Splitter {
    /// The unfinished line so far, at most [`MAX_LOG_LINE`] bytes.
    partial: Vec<u8>,
    /// The current line was cut: skip up to its newline.
    skipping: bool,
}

impl Splitter {
    /// Splits `bytes`, the next bytes read, calling `emit(line, cut)` for
    /// every line they finish (without its newline); `cut` says the line
    /// was longer than [`MAX_LOG_LINE`] and only its start is given.
    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let line = &bytes[..end];
            bytes = &bytes[end + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                let cut = line.len() > MAX_LOG_LINE;
                emit(&line[..line.len().min(MAX_LOG_LINE)], cut);
            } else {
                let room = MAX_LOG_LINE - self.partial.len();
                self.partial
                    .extend_from_slice(&line[..line.len().min(room)]);
                emit(&self.partial, line.len() > room);
                self.partial.clear();
            }
        }
        if self.skipping {
            return;
        }
        let room = MAX_LOG_LINE - self.partial.len();
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            emit(&self.partial, true);
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// End of file: hands out the unfinished last line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            emit(&self.partial, false);
        }
        self.partial = Vec::new();
        self.skipping = false;
    }

    /// The unfinished line and whether the rest of a cut line is being
    /// skipped: what an upgraded master carries over.
    pub fn parts(&self) -> (&[u8], bool) {
        (&self.partial, self.skipping)
    }

    /// A splitter in the middle of a line, as [`parts`](Self::parts) gave
    /// it (cut to [`MAX_LOG_LINE`]).
    pub fn from_parts(mut partial: Vec<u8>, skipping: bool) -> Splitter {
        partial.truncate(MAX_LOG_LINE);
        Splitter { partial, skipping }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn split(reads: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut splitter = Splitter::default();
        let mut lines = Vec::new();
        for read in reads {
            splitter.push(read, |l, cut| lines.push((l.to_vec(), cut)));
        }
        splitter.finish(|l, cut| lines.push((l.to_vec(), cut)));
        lines
    }

    #[test]
    fn a_line_split_across_reads_comes_out_whole() {
        let lines = split(&[b"one\ntw", b"", b"o\nthr", b"ee\n", b"last"]);
        let texts: Vec<&[u8]> = lines.iter().map(|(l, _)| l.as_slice()).collect();
        assert_eq!(texts, [&b"one"[..], b"two", b"three", b"last"]);
        assert!(lines.iter().all(|(_, cut)| !cut));
        assert_eq!(split(&[b"\n\n"]), [(vec![], false), (vec![], false)]);
    }

    #[test]
    fn a_line_over_the_limit_is_cut_and_marked_and_its_rest_skipped() {
        let long = vec![b'x'; MAX_LOG_LINE * 3 + 5];
        // In one read.
        let mut one = long.clone();
        one.extend_from_slice(b"\nnext\n");
        let lines = split(&[&one]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], (vec![b'x'; MAX_LOG_LINE], true));
        assert_eq!(lines[1], (b"next".to_vec(), false));
        // In small reads: cut as soon as it is too long, the buffer never
        // above the limit.
        let mut splitter = Splitter::default();
        let mut lines = Vec::new();
        for chunk in long.chunks(1000) {
            splitter.push(chunk, |l, cut| lines.push((l.len(), cut)));
            assert!(splitter.partial.len() <= MAX_LOG_LINE);
        }
        assert_eq!(lines, [(MAX_LOG_LINE, true)], "cut once, before its end");
        splitter.push(b"\nafter\n", |l, cut| lines.push((l.len(), cut)));
        assert_eq!(lines, [(MAX_LOG_LINE, true), (5, false)]);
        // Exactly at the limit: whole, not cut.
        let exact = vec![b'y'; MAX_LOG_LINE];
        let lines = split(&[&exact[..10], &exact[10..], b"\n"]);
        assert_eq!(lines, [(exact, false)]);
    }

    #[test]
    fn a_flood_of_short_lines_splits_in_linear_time() {
        // 10 MB of one-byte lines, read in 64 KiB pieces as the master does.
        let flood = b"y\n".repeat(5 << 20);
        let started = Instant::now();
        let mut splitter = Splitter::default();
        let mut count = 0usize;
        for chunk in flood.chunks(64 << 10) {
            splitter.push(chunk, |l, _| {
                assert_eq!(l, b"y");
                count += 1;
            });
        }
        let took = started.elapsed();
        assert_eq!(count, 5 << 20);
        // Splitting by moving the rest of the buffer down after each line
        // moves about 32 KiB per line here: 160 GB in all, far beyond this
        // bound on any machine, while the linear split takes well under a
        // second unloaded (a debug build on a busy machine, a few).
        assert!(took < Duration::from_secs(8), "10 MB took {took:?}");
        // And lines that never end on a read boundary.
        let odd = b"ab\n".repeat(1 << 20);
        let mut count = 0;
        for chunk in odd.chunks(4093) {
            splitter.push(chunk, |l, _| {
                assert_eq!(l, b"ab");
                count += 1;
            });
        }
        assert_eq!(count, 1 << 20);
    }
}
