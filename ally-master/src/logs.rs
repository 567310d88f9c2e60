//! Where an app's output goes: a log file of its own (by default), or the
//! master's stderr; and what `ally-ctl logs` reads back.
//!
//! A file line reads `2026-11-23T17:40:01.123Z web#3 err| text`: when, which
//! instance, which stream. Files are opened for appending, so logrotate can
//! move them away; `ally-ctl reopen` (or SIGHUP) then opens a new one.
//! Opening (and reopening) follows no symlink in the last component and
//! takes only a regular file with one link, close-on-exec.
//!
//! Lines are written through a [`Sink`] (a bounded queue and a writer
//! thread: the file's own, or the stderr one), so a slow disk or a stuck
//! stderr reader never holds up the loop; lines the sink has no room for
//! are dropped, counted here for `ally-ctl status`, and marked in the
//! output. `ally-ctl logs` is answered from the last lines kept in memory
//! ([`RECENT_LOG_LINES`], [`RECENT_LOG_BYTES`]), seeded from the end of
//! the file when it is opened: the loop never reads a log file back while
//! it serves.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::LogTarget;
use crate::handover::HandoverError;
use crate::handover::fds::{Export, Import};
use crate::handover::snapshot::LogSnap;
use crate::instance::Stream;
use crate::limits::{LOG_SEED_BYTES, LOG_SINK_BYTES, RECENT_LOG_BYTES, RECENT_LOG_LINES};
use crate::sink::{Sink, Target};

/// An app's log.
#[derive(Debug)]
pub struct AppLog {
    app: String,
    file: Option<(PathBuf, Sink)>,
    /// A duplicate of the descriptor the sink writes to, to hand it over
    /// in an upgrade (the sink's thread owns the other).
    handle: Option<File>,
    /// The last lines, as `ally-ctl logs` shows them.
    recent: VecDeque<String>,
    /// Bytes of the lines in `recent`.
    recent_bytes: usize,
    /// Lines its sink had no room for.
    dropped: u64,
    /// The timestamp of the last line, reused within its millisecond.
    stamp: (u64, String),
    /// `APP#ID` of the last line's instance.
    source: (u64, String),
    /// Where a line for stderr is put together.
    scratch: Vec<u8>,
}

/// The default directory of log files: `/var/log/ally` for root, else
/// `$XDG_STATE_HOME/ally`, else `~/.local/state/ally`.
pub fn default_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/log/ally");
    }
    let non_empty = |v: Option<std::ffi::OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    non_empty(std::env::var_os("XDG_STATE_HOME"))
        .or_else(|| non_empty(std::env::var_os("HOME")).map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("ally")
}

impl AppLog {
    /// Opens the log of `app` for `target`, creating its directory.
    ///
    /// # Errors
    ///
    /// If the file cannot be created or opened; the message names it.
    pub fn open(app: &str, target: &LogTarget, dir: &Path) -> Result<AppLog, String> {
        let path = match target {
            LogTarget::Inherit => None,
            LogTarget::Default => Some(dir.join(format!("{app}.log"))),
            LogTarget::File(path) => Some(path.clone()),
        };
        let mut log = AppLog {
            app: app.to_owned(),
            file: None,
            handle: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            dropped: 0,
            stamp: (u64::MAX, String::new()),
            source: (0, String::new()),
            scratch: Vec::new(),
        };
        if let Some(path) = path {
            let mut file =
                open_append(&path).map_err(|e| format!("log file {}: {e}", path.display()))?;
            log.seed(&mut file);
            log.handle = Some(
                file.try_clone()
                    .map_err(|e| format!("log file {}: {e}", path.display()))?,
            );
            let sink = Sink::new(
                &format!("ally-log-{app}"),
                Target::File(file),
                LOG_SINK_BYTES,
            );
            log.file = Some((path, sink));
        }
        Ok(log)
    }

    /// The file it writes to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Lines dropped because the sink could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes one line of instance `id`'s output (`cut`: it was longer
    /// than the limit, only its start is here); returns it as `ally-ctl
    /// logs` shows it. Never blocks: a line the sink has no room for is
    /// dropped and counted.
    pub fn write(&mut self, id: u64, stream: Stream, raw: &[u8], cut: bool) -> &str {
        let text = String::from_utf8_lossy(raw);
        let tag = match stream {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        };
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if self.stamp.0 != ms {
            self.stamp = (ms, timestamp(now));
        }
        if self.source.0 != id || self.source.1.is_empty() {
            self.source = (id, format!("{}#{id}", self.app));
        }
        // The oldest kept line's buffer is reused once the ring is full.
        let mut line = if self.recent.len() >= RECENT_LOG_LINES {
            self.pop_recent().unwrap_or_default()
        } else {
            String::new()
        };
        line.clear();
        for part in [&self.stamp.1, " ", &self.source.1, " ", tag, "| ", &text] {
            line.push_str(part);
        }
        if cut {
            line.push('…');
        }
        let accepted = match &self.file {
            Some((_, sink)) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(line.as_bytes());
                self.scratch.push(b'\n');
                sink.push(&self.source.1, &self.scratch)
            }
            None => {
                self.scratch.clear();
                self.scratch.push(b'[');
                self.scratch.extend_from_slice(self.source.1.as_bytes());
                self.scratch.extend_from_slice(b"] ");
                self.scratch.extend_from_slice(text.as_bytes());
                if cut {
                    self.scratch.extend_from_slice("…".as_bytes());
                }
                self.scratch.push(b'\n');
                crate::log::stderr().push(&self.source.1, &self.scratch)
            }
        };
        if !accepted {
            self.dropped += 1;
        }
        self.keep(line);
        self.recent.back().map_or("", String::as_str)
    }

    /// Keeps `line` among the recent ones, forgetting the oldest past the
    /// bounds.
    fn keep(&mut self, line: String) {
        self.recent_bytes += line.len();
        self.recent.push_back(line);
        while self.recent.len() > RECENT_LOG_LINES || self.recent_bytes > RECENT_LOG_BYTES {
            if self.pop_recent().is_none() {
                break;
            }
        }
    }

    fn pop_recent(&mut self) -> Option<String> {
        let line = self.recent.pop_front()?;
        self.recent_bytes -= line.len();
        Some(line)
    }

    /// Fills the recent lines from the end of `file` (at most
    /// [`LOG_SEED_BYTES`] of it), so `logs` shows what earlier runs wrote.
    fn seed(&mut self, file: &mut File) {
        self.recent.clear();
        self.recent_bytes = 0;
        for line in tail_of_file(file).unwrap_or_default() {
            self.keep(line);
        }
    }

    /// Opens the file again at its path (after logrotate moved it); what
    /// was queued before still goes to the old file.
    ///
    /// # Errors
    ///
    /// If the new file cannot be opened; the old one stays in use.
    pub fn reopen(&mut self) -> Result<(), String> {
        let Some((path, _)) = &self.file else {
            return Ok(());
        };
        let mut file =
            open_append(path).map_err(|e| format!("log file {}: {e}", path.display()))?;
        let handle = file
            .try_clone()
            .map_err(|e| format!("log file {}: {e}", path.display()))?;
        self.seed(&mut file);
        if let Some((_, sink)) = &self.file {
            sink.switch(file);
        }
        self.handle = Some(handle);
        Ok(())
    }

    /// Waits until the lines queued for the file are written, or
    /// `deadline`.
    pub fn flush(&self, deadline: Instant) {
        if let Some((_, sink)) = &self.file {
            sink.flush(deadline);
        }
    }

    /// The last `n` lines (of at most the last [`RECENT_LOG_LINES`]).
    pub fn tail(&self, n: usize) -> Vec<String> {
        let skip = self.recent.len().saturating_sub(n);
        self.recent.iter().skip(skip).cloned().collect()
    }
}

impl AppLog {
    /// As plain data, the file's descriptor listed in `fds`.
    pub fn snapshot<'a>(&'a self, fds: &mut Export<'a>) -> LogSnap {
        let file = match (&self.file, &self.handle) {
            (Some((path, _)), Some(handle)) => Some((path.clone(), fds.add(handle.as_fd()))),
            _ => None,
        };
        LogSnap {
            file,
            recent: self.recent.iter().cloned().collect(),
            dropped: self.dropped,
        }
    }

    /// The log of `app` that `snap` describes: the same file, a new writer
    /// thread.
    ///
    /// # Errors
    ///
    /// A missing descriptor.
    pub fn restore(app: &str, snap: LogSnap, fds: &mut Import) -> Result<AppLog, HandoverError> {
        let mut log = AppLog {
            app: app.to_owned(),
            file: None,
            handle: None,
            recent: VecDeque::new(),
            recent_bytes: 0,
            dropped: snap.dropped,
            stamp: (u64::MAX, String::new()),
            source: (0, String::new()),
            scratch: Vec::new(),
        };
        for line in snap.recent {
            log.keep(line);
        }
        if let Some((path, fd)) = snap.file {
            let file = File::from(fds.take(fd)?);
            let theirs = file
                .try_clone()
                .map_err(|e| HandoverError::Io(format!("log file {}", path.display()), e))?;
            let sink = Sink::new(
                &format!("ally-log-{app}"),
                Target::File(theirs),
                LOG_SINK_BYTES,
            );
            log.file = Some((path, sink));
            log.handle = Some(file);
        }
        Ok(log)
    }
}

/// Opens the log file at `path` for appending, creating it (and its
/// directory) if needed.
///
/// The last component is opened with `O_NOFOLLOW` and `O_NONBLOCK` (a FIFO
/// put there cannot stall the master) and must then be a regular file with
/// one link: a symlink or hard link planted in the log directory cannot
/// make the master append to a file elsewhere.
fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link; refusing to follow it (name the real file in `log`)",
            ),
            _ => e,
        })?;
    check_log_file(&file.metadata()?)?;
    Ok(file)
}

/// Refuses anything but a regular file with a single link.
fn check_log_file(meta: &fs::Metadata) -> io::Result<()> {
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file; refusing to write to it",
        ));
    }
    if meta.nlink() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "has {} hard links; refusing to write to a file linked elsewhere \
                 (remove the extra links or name another file)",
                meta.nlink()
            ),
        ));
    }
    Ok(())
}

/// The lines in the last [`LOG_SEED_BYTES`] of `file`, oldest first
/// (the first one dropped if it was cut), leaving it at its end.
fn tail_of_file(file: &mut File) -> io::Result<Vec<String>> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(LOG_SEED_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.by_ref().take(LOG_SEED_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // probably cut mid-line
    }
    Ok(lines.into_iter().map(str::to_owned).collect())
}

/// `t` as RFC 3339 UTC with milliseconds: `2026-11-23T17:40:01.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of the day `days` after 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_455_601_123);
        assert_eq!(timestamp(t), "2026-11-23T17:40:01.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    #[test]
    fn file_log_writes_tails_and_reopens() {
        let dir = std::env::temp_dir().join(format!("ally-logs-{}", std::process::id()));
        let mut log = AppLog::open("web", &LogTarget::Default, &dir).unwrap();
        for i in 0..5 {
            log.write(1, Stream::Stdout, format!("line {i}").as_bytes(), false);
        }
        let tail = log.tail(2);
        assert_eq!(tail.len(), 2);
        assert!(tail[1].ends_with("web#1 out| line 4"), "{tail:?}");
        // logrotate: move the file, reopen, write: the new file has it.
        let path = log.path().unwrap().to_owned();
        fs::rename(&path, dir.join("web.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(2, Stream::Stderr, b"after", false);
        let tail = log.tail(10);
        assert_eq!(tail.len(), 1);
        assert!(tail[0].ends_with("web#2 err| after"));
        // What was queued before the reopen went to the old file, the rest
        // to the new one.
        log.flush(Instant::now() + Duration::from_secs(5));
        let old = fs::read_to_string(dir.join("web.log.1")).unwrap();
        assert_eq!(old.lines().count(), 5, "{old:?}");
        let new = fs::read_to_string(&path).unwrap();
        assert!(new.ends_with("web#2 err| after\n"), "{new:?}");
        // A new master shows what the file already holds.
        drop(log);
        let log = AppLog::open("web", &LogTarget::Default, &dir).unwrap();
        assert_eq!(log.tail(10), [new.trim_end()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_hard_links_and_fifos_are_refused() {
        let dir = std::env::temp_dir().join(format!("ally-logs-refuse-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("precious");
        fs::write(&target, "keep\n").unwrap();
        let open = |name: &str| {
            let target = LogTarget::File(dir.join(name));
            AppLog::open("web", &target, &dir).map(|_| ())
        };

        std::os::unix::fs::symlink(&target, dir.join("link.log")).unwrap();
        let e = open("link.log").unwrap_err();
        assert!(e.contains("link.log: is a symbolic link"), "{e}");

        fs::hard_link(&target, dir.join("hard.log")).unwrap();
        let e = open("hard.log").unwrap_err();
        assert!(e.contains("hard.log: has 2 hard links"), "{e}");

        let fifo = dir.join("fifo.log");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = open("fifo.log").unwrap_err();
        assert!(e.contains("fifo.log: "), "{e}");

        fs::create_dir(dir.join("dir.log")).unwrap();
        let e = open("dir.log").unwrap_err();
        assert!(e.contains("dir.log: "), "{e}");

        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopen_refuses_a_symlink_put_in_place_of_the_file() {
        let dir = std::env::temp_dir().join(format!("ally-logs-reopen-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut log = AppLog::open("web", &LogTarget::Default, &dir).unwrap();
        let path = log.path().unwrap().to_owned();
        let target = dir.join("precious");
        fs::write(&target, "keep\n").unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = log.reopen().unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        log.write(1, Stream::Stdout, b"still to the old file", false);
        log.flush(Instant::now() + Duration::from_secs(5));
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
