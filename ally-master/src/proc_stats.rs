//! CPU time and resident memory of a process, read from `/proc`.

use std::fs;

use rustix::process::Pid;

/// What `ally-ctl list` shows of an instance's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User + system CPU time, milliseconds.
    pub cpu_ms: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Effective user id.
    pub uid: Option<u32>,
}

/// Clock ticks per second for `/proc/<pid>/stat` times. Linux reports them
/// in `USER_HZ`, which is 100 on every architecture it supports.
const USER_HZ: u64 = 100;

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; zeros for a process
/// that is gone or unreadable.
pub fn usage(pid: Pid) -> Usage {
    let pid = pid.as_raw_nonzero();
    let cpu_ms = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| cpu_ticks(&stat))
        .map_or(0, |ticks| ticks * 1000 / USER_HZ);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_bytes = vm_rss_kib(&status).map_or(0, |kib| kib * 1024);
    Usage {
        cpu_ms,
        rss_bytes,
        uid: effective_uid(&status),
    }
}

/// The effective uid (the second of the `Uid:` line) from
/// `/proc/<pid>/status`.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after the last
/// `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from `/proc/<pid>/status`.
fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 200";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert_eq!(effective_uid("Uid:\t0\t65534\t0\t0\n"), Some(65534));
    }

    #[test]
    fn own_process_has_usage() {
        let me = rustix::process::getpid();
        assert!(usage(me).rss_bytes > 0);
    }
}
