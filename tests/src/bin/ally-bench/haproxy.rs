//! HAProxy for the reload comparison: master-worker mode (`haproxy -W`)
//! in a child of the bench's own, from a config in a temporary directory,
//! one thread, reloaded with SIGUSR2 to the master.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ally_tests::fixture::free_port;
use ally_tests::harness::TestDir;
use ally_tests::proc::{signal, wait_until};
use rustix::process::Signal;

use crate::daemon::{SERVER_TIMEOUT, children, first_line, kill_leftovers, log_tail, new_child};
use crate::proxies::Proxy;
use crate::redis::die_with_parent;

/// `SIGUSR2`'s bit in the signal masks of `/proc/PID/status`.
const USR2_BIT: u64 = 1 << (12 - 1);

/// A running HAProxy: its master, our child, and every worker seen.
#[derive(Debug)]
pub struct Haproxy {
    master: Child,
    addr: SocketAddr,
    /// Every worker seen, to kill should one outlive the master.
    workers: BTreeSet<u32>,
    /// Holds the config and the log; dropped last.
    dir: TestDir,
}

impl Haproxy {
    /// The version `haproxy -v` states, e.g. `2.6.12-1+deb12u4`.
    pub fn version(exe: &Path) -> String {
        let line = first_line(exe, &["-v"]);
        let mut words = line.split_whitespace();
        words
            .find(|w| *w == "version")
            .and_then(|_| words.next())
            .map_or_else(|| "(unknown version)".to_owned(), str::to_owned)
    }

    /// Starts HAProxy on a free loopback port; returns once its master
    /// runs a worker and handles reloads.
    ///
    /// # Errors
    ///
    /// Why it did not start, with its log.
    pub fn start(exe: &Path) -> Result<Haproxy, String> {
        let dir = TestDir::new("bench_haproxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(addr)).map_err(|e| format!("cannot write haproxy.cfg: {e}"))?;
        let log = File::create(dir.path().join("haproxy.log"))
            .map_err(|e| format!("cannot create haproxy.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("haproxy.log: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("-W")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        die_with_parent(&mut cmd);
        let master = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut haproxy = Haproxy {
            master,
            addr,
            workers: BTreeSet::new(),
            dir,
        };
        let pid = haproxy.master.id();
        let worker = new_child(pid, &BTreeSet::new(), || handles_usr2(pid))
            .ok_or_else(|| format!("haproxy started no worker\n{}", haproxy.log()))?;
        haproxy.workers.insert(worker);
        Ok(haproxy)
    }

    fn log(&self) -> String {
        log_tail(&self.dir.path().join("haproxy.log"))
    }
}

impl Proxy for Haproxy {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn reload(&mut self) -> Result<(), String> {
        let pid = self.master.id();
        let before = children(pid);
        self.workers.extend(&before);
        signal(pid, Signal::USR2).map_err(|e| format!("kill -USR2 {pid}: {e}"))?;
        // The master re-executes itself, then starts the new worker; the
        // next SIGUSR2 must wait until it handles the signal again.
        let worker = new_child(pid, &before, || handles_usr2(pid))
            .ok_or_else(|| format!("no new haproxy worker after a reload\n{}", self.log()))?;
        self.workers.insert(worker);
        Ok(())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let pid = self.master.id();
        self.workers.extend(children(pid));
        // SIGTERM: the master stops its workers at once, then exits.
        let _ = signal(pid, Signal::TERM);
        let exited = wait_until(SERVER_TIMEOUT, || {
            self.master.try_wait().ok().flatten().is_some()
        });
        if !exited {
            eprintln!("ally-bench: haproxy {pid} ignored SIGTERM; killing it");
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        kill_leftovers(&self.workers, "haproxy");
    }
}

/// Whether `pid` catches SIGUSR2 and does not block it: from the `SigCgt`
/// and `SigBlk` masks of `/proc/PID/status`.
fn handles_usr2(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |field: &str| signal_mask(&status, field).unwrap_or(0);
    mask("SigCgt") & USR2_BIT != 0 && mask("SigBlk") & USR2_BIT == 0
}

/// A hexadecimal signal mask line of `/proc/PID/status`.
fn signal_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let hex = line.strip_prefix(field)?.strip_prefix(':')?.trim();
        u64::from_str_radix(hex, 16).ok()
    })
}

/// The config: one thread, keep-alive for 65 s, `ok` with the worker's pid
/// as `X-Ally-Instance` (the load client counts responses by it).
fn config(addr: SocketAddr) -> String {
    format!(
        "global
    nbthread 1

defaults
    mode http
    timeout connect 5s
    timeout client 65s
    timeout http-keep-alive 65s

frontend bench
    bind {addr}
    http-request return status 200 content-type text/plain string \"ok\" hdr X-Ally-Instance \"%pid\"
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_masks_are_read() {
        let status = "SigBlk:\t0000000000000000\nSigCgt:\t0000000180004a07\n";
        assert_eq!(signal_mask(status, "SigCgt"), Some(0x1_8000_4a07));
        assert_eq!(signal_mask(status, "SigCgt").unwrap() & USR2_BIT, USR2_BIT);
        assert_eq!(signal_mask(status, "SigBlk"), Some(0));
        assert_eq!(signal_mask(status, "SigIgn"), None);
    }
}
