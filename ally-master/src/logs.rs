//! Where an app's output goes: a log file of its own (by default), or the
//! master's stderr; and what `ally-ctl logs` reads back.
//!
//! A file line reads `2026-11-23T17:40:01.123Z web#3 err| text`: when, which
//! instance, which stream. Files are opened for appending, so logrotate can
//! move them away; `ally-ctl reopen` (or SIGHUP) then opens a new one.
//! Opening (and reopening) follows no symlink in the last component and
//! takes only a regular file with one link, close-on-exec.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogTarget;
use crate::instance::Stream;
use crate::limits::{MAX_LOG_TAIL_BYTES, RECENT_LOG_LINES};

/// An app's log.
#[derive(Debug)]
pub struct AppLog {
    app: String,
    file: Option<(PathBuf, File)>,
    recent: VecDeque<String>,
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
        let file = match path {
            Some(path) => {
                let file =
                    open_append(&path).map_err(|e| format!("log file {}: {e}", path.display()))?;
                Some((path, file))
            }
            None => None,
        };
        Ok(AppLog {
            app: app.to_owned(),
            file,
            recent: VecDeque::new(),
        })
    }

    /// The file it writes to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Writes one line of instance `id`'s output; returns it as
    /// `ally-ctl logs` shows it.
    pub fn write(&mut self, id: u64, stream: Stream, text: &str) -> String {
        let tag = match stream {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        };
        let line = format!(
            "{} {}#{id} {tag}| {text}",
            timestamp(SystemTime::now()),
            self.app
        );
        match &mut self.file {
            Some((_, file)) => {
                let _ = writeln!(file, "{line}");
            }
            None => {
                let _ = writeln!(io::stderr().lock(), "[{}#{id}] {text}", self.app);
            }
        }
        if self.recent.len() == RECENT_LOG_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.clone());
        line
    }

    /// Opens the file again at its path (after logrotate moved it).
    ///
    /// # Errors
    ///
    /// If the new file cannot be opened; the old one stays in use.
    pub fn reopen(&mut self) -> Result<(), String> {
        if let Some((path, file)) = &mut self.file {
            *file = open_append(path).map_err(|e| format!("log file {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// The last `n` lines: read back from the file, or, for output that
    /// goes to the master's stderr, from the last lines kept in memory.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = match &self.file {
            Some((path, _)) => tail_of_file(path, n).unwrap_or_default(),
            None => self.recent.iter().cloned().collect(),
        };
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).collect()
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

/// The last `n` lines of the file at `path`, reading at most
/// [`MAX_LOG_TAIL_BYTES`] from its end.
fn tail_of_file(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    check_log_file(&file.metadata()?)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(MAX_LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // probably cut mid-line
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines.into_iter().skip(skip).map(str::to_owned).collect())
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
            log.write(1, Stream::Stdout, &format!("line {i}"));
        }
        let tail = log.tail(2);
        assert_eq!(tail.len(), 2);
        assert!(tail[1].ends_with("web#1 out| line 4"), "{tail:?}");
        // logrotate: move the file, reopen, write: the new file has it.
        let path = log.path().unwrap().to_owned();
        fs::rename(&path, dir.join("web.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(2, Stream::Stderr, "after");
        let tail = log.tail(10);
        assert_eq!(tail.len(), 1);
        assert!(tail[0].ends_with("web#2 err| after"));
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
        log.write(1, Stream::Stdout, "still to the old file");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
