//! A process's vital signs from `/proc`, for tests that look for leaks:
//! open file descriptors, resident memory, zombie children.

use std::fmt;
use std::time::Duration;

/// How many file descriptors `pid` has open (entries of `/proc/PID/fd`);
/// 0 when the process is gone.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// `VmRSS` of `pid` in KiB, from `/proc/PID/status`; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The parent pid and state letter of `pid`, from `/proc/PID/stat`.
fn ppid_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((fields.next()?.parse().ok()?, state))
}

/// Every process whose parent is `parent`, with its state letter.
pub fn children(parent: u32) -> Vec<(u32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (ppid, state) = ppid_and_state(pid)?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// The children of `parent` that are zombies: exited, never reaped.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    children(parent)
        .into_iter()
        .filter(|&(_, state)| state == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Open fds, resident memory and zombie children of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vitals {
    /// Open file descriptors.
    pub fds: usize,
    /// `VmRSS` in KiB.
    pub rss_kib: u64,
    /// Pids of its zombie children.
    pub zombies: Vec<u32>,
}

impl Vitals {
    /// The vital signs of `pid` now.
    pub fn of(pid: u32) -> Vitals {
        Vitals {
            fds: open_fds(pid),
            rss_kib: rss_kib(pid),
            zombies: zombie_children(pid),
        }
    }

    /// The vital signs of `pid` once its fd count and zombies are steady:
    /// the same in [`STEADY_READS`] reads in a row, polled (a control
    /// connection the master has not closed yet, or a child exiting right
    /// now, would otherwise be counted). After `timeout`, the last reading.
    pub fn settled(pid: u32, timeout: Duration) -> Vitals {
        let mut last = Vitals::of(pid);
        let mut same = 1;
        crate::proc::wait_until(timeout, || {
            let now = Vitals::of(pid);
            if (now.fds, &now.zombies) == (last.fds, &last.zombies) {
                same += 1;
            } else {
                same = 1;
            }
            last = now;
            same >= STEADY_READS
        });
        last
    }
}

/// How many equal readings, [`POLL`](crate::proc::POLL) apart, make a [`Vitals::settled`]
/// reading.
pub const STEADY_READS: usize = 10;

impl fmt::Display for Vitals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} open fds, VmRSS {} KiB, {} zombie children {:?}",
            self.fds,
            self.rss_kib,
            self.zombies.len(),
            self.zombies
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_fds_and_memory_and_a_reaped_child_is_no_zombie() {
        let me = std::process::id();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        assert!(crate::proc::wait_until(Duration::from_secs(5), || {
            zombie_children(me).contains(&pid)
        }));
        child.wait().unwrap();
        let v = Vitals::of(me);
        assert!(v.fds >= 3, "{v}");
        assert!(v.rss_kib > 0, "{v}");
        assert!(!v.zombies.contains(&pid), "{v}");
        assert_eq!(Vitals::of(u32::MAX).fds, 0);
    }
}
