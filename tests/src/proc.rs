//! Looking at processes and sockets through `/proc`, and signalling them.
//!
//! Everything here is read-only except [`signal`] and [`kill_all_with_env`].

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Poll interval for every wait in this crate: short enough that waits add
/// no noticeable latency, long enough to cost nothing.
pub const POLL: Duration = Duration::from_millis(10);

/// Whether `pid` is a live process: it exists and is not a zombie.
///
/// Reads the state field of `/proc/PID/stat` (the field after the command
/// name, which is parenthesised and may itself contain `)`).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(state_of(&stat), Some('Z' | 'X') | None),
        Err(_) => false,
    }
}

fn state_of(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Polls until `pid` is no longer [`alive`]; `false` if it still is after
/// `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    wait_until(timeout, || !alive(pid))
}

/// Polls `cond` every [`POLL`] until it holds; `false` if it still does not
/// after `timeout`. `cond` is always checked at least once, and once more
/// after the deadline.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_until_every(POLL, timeout, cond)
}

/// [`wait_until`] with another poll interval (finer, for measurements).
pub fn wait_until_every(
    interval: Duration,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        std::thread::sleep(interval);
    }
}

/// `kill(2)` — sends `sig` to `pid`. Errors (no such process) are returned,
/// not panicked on.
pub fn signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let pid = Pid::from_raw(raw).ok_or(std::io::ErrorKind::InvalidInput)?;
    rustix::process::kill_process(pid, sig).map_err(Into::into)
}

/// Inodes of every socket `pid` holds open, from the `socket:[N]` links in
/// `/proc/PID/fd`. Empty when the process is gone or unreadable.
pub fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| parse_socket_link(&target.to_string_lossy()))
        .collect()
}

fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Inodes of the TCP sockets in LISTEN state on `127.0.0.1:port`, from
/// `/proc/net/tcp` (IPv4 only). Normally zero or one.
pub fn listen_inodes(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    listen_inodes_in(&table, port)
}

fn listen_inodes_in(table: &str, port: u16) -> Vec<u64> {
    // 127.0.0.1 as the kernel prints it: the address in host (little-endian)
    // byte order, then the port in big-endian hex.
    let local = format!("0100007F:{port:04X}");
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            if f.len() > 9 && f[1] == local && f[3] == LISTEN {
                f[9].parse().ok()
            } else {
                None
            }
        })
        .collect()
}

/// A few lines on what `pid` is doing, for failure messages: its state,
/// where it sleeps in the kernel (`wchan`, and the kernel stack when
/// readable), and its open file descriptors.
pub fn describe(pid: u32) -> String {
    let read = |what: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{what}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("({e})"))
    };
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| state_of(&stat))
        .map_or_else(|| "gone".to_string(), String::from);
    let cmdline = read("cmdline").replace('\0', " ");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{}={}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect()
        })
        .unwrap_or_default();
    format!(
        "pid {pid} ({}) state {state}, wchan {}\n  fds: {}\n  kernel stack:\n{}",
        cmdline.trim(),
        read("wchan"),
        fds.join(" "),
        read("stack")
    )
}

/// Pids of every process (the caller excepted) whose environment contains
/// `needle`, from `/proc/PID/environ`. Unreadable processes are skipped.
pub fn pids_with_env(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ"))
                .is_ok_and(|env| contains(&env, needle.as_bytes()))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// SIGKILLs every live process whose environment contains `needle`, and
/// waits (up to `timeout`) until they are gone. Returns the pids it killed.
///
/// This finds instances orphaned by a master that died or was killed: each
/// inherits a variable naming the test's own directory.
pub fn kill_all_with_env(needle: &str, timeout: Duration) -> Vec<u32> {
    let pids: Vec<u32> = pids_with_env(needle)
        .into_iter()
        .filter(|&p| alive(p))
        .collect();
    for &pid in &pids {
        let _ = signal(pid, Signal::KILL);
    }
    wait_until(timeout, || pids.iter().all(|&p| !alive(p)));
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_survives_parens_in_the_name() {
        assert_eq!(state_of("12 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(state_of("12 (sh) S 1 2"), Some('S'));
        assert_eq!(state_of("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_holds_its_sockets() {
        assert!(alive(std::process::id()));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let inodes = listen_inodes(port);
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        assert!(socket_inodes(std::process::id()).contains(&inodes[0]));
        drop(l);
        assert!(listen_inodes(port).is_empty());
    }

    #[test]
    fn net_tcp_lines_are_parsed() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n\
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listen_inodes_in(table, 8080), vec![4242]);
        assert!(listen_inodes_in(table, 8081).is_empty());
    }

    #[test]
    fn description_names_state_and_fds() {
        let d = describe(std::process::id());
        assert!(d.contains("state R") || d.contains("state S"), "{d}");
        assert!(d.contains("0="), "{d}");
        assert!(describe(u32::MAX).contains("gone"));
    }

    #[test]
    fn socket_links_are_parsed() {
        assert_eq!(parse_socket_link("socket:[123]"), Some(123));
        assert_eq!(parse_socket_link("pipe:[123]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    #[test]
    fn a_dead_child_is_gone_once_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(alive(pid));
        signal(pid, Signal::KILL).unwrap();
        // A zombie counts as gone before it is reaped.
        assert!(wait_gone(pid, Duration::from_secs(5)));
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
