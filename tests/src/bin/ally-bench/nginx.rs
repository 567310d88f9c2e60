//! nginx for the reload comparison: a daemon of the bench's own, from a
//! config in a temporary directory, one worker, reloaded with
//! `nginx -s reload`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ally_tests::fixture::free_port;
use ally_tests::harness::TestDir;
use ally_tests::proc::{signal, wait_gone, wait_until};
use rustix::process::Signal;

use crate::daemon::{
    SERVER_TIMEOUT, children, first_line, kill_leftovers, log_tail, new_child, run_logged,
};
use crate::proxies::Proxy;

/// A running nginx: its master and every worker it was seen with.
#[derive(Debug)]
pub struct Nginx {
    exe: PathBuf,
    addr: SocketAddr,
    master: u32,
    /// Every worker seen, to kill should one outlive the master.
    workers: BTreeSet<u32>,
    /// Holds the config, pid file, logs and temp paths; dropped last.
    dir: TestDir,
}

impl Nginx {
    /// The version `nginx -v` states, e.g. `1.22.1`.
    pub fn version(exe: &Path) -> String {
        let line = first_line(exe, &["-v"]);
        line.rsplit('/')
            .next()
            .filter(|v| line.contains("nginx/") && !v.is_empty())
            .map_or_else(|| "(unknown version)".to_owned(), |v| v.trim().to_owned())
    }

    /// Starts nginx on a free loopback port; returns once its master runs
    /// a worker.
    ///
    /// # Errors
    ///
    /// Why it did not start, with its log.
    pub fn start(exe: &Path) -> Result<Nginx, String> {
        let dir = TestDir::new("bench_nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(dir.path().join("nginx.conf"), config(dir.path(), addr))
            .map_err(|e| format!("cannot write nginx.conf: {e}"))?;
        let mut nginx = Nginx {
            exe: exe.to_owned(),
            addr,
            master: 0,
            workers: BTreeSet::new(),
            dir,
        };
        nginx.command(None)?;
        let pid_file = nginx.dir.path().join("nginx.pid");
        let mut master = None;
        wait_until(SERVER_TIMEOUT, || {
            master = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok());
            master.is_some()
        });
        nginx.master = master.ok_or_else(|| {
            format!(
                "nginx wrote no pid file within {SERVER_TIMEOUT:?}\n{}",
                nginx.log()
            )
        })?;
        let worker = new_child(nginx.master, &BTreeSet::new(), || true);
        let worker = worker.ok_or_else(|| format!("nginx started no worker\n{}", nginx.log()))?;
        nginx.workers.insert(worker);
        Ok(nginx)
    }

    /// `nginx [-s SIGNAL]` with this server's config, prefix and error log.
    fn command(&self, signal: Option<&str>) -> Result<(), String> {
        let dir = self.dir.path();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(format!("{}/", dir.display()));
        if let Some(s) = signal {
            cmd.args(["-s", s]);
        }
        run_logged(&mut cmd, &dir.join("launch.log"))
    }

    fn log(&self) -> String {
        let dir = self.dir.path();
        format!(
            "{}\n{}",
            log_tail(&dir.join("launch.log")),
            log_tail(&dir.join("error.log"))
        )
    }
}

impl Proxy for Nginx {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn reload(&mut self) -> Result<(), String> {
        let before = children(self.master);
        self.workers.extend(&before);
        self.command(Some("reload"))?;
        let worker = new_child(self.master, &before, || true)
            .ok_or_else(|| format!("no new nginx worker after a reload\n{}", self.log()))?;
        self.workers.insert(worker);
        Ok(())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.master == 0 {
            return;
        }
        self.workers.extend(children(self.master));
        if let Err(e) = self.command(Some("quit")) {
            eprintln!("ally-bench: {e}");
        }
        if !wait_gone(self.master, SERVER_TIMEOUT) {
            eprintln!("ally-bench: nginx {} did not quit; killing it", self.master);
            let _ = signal(self.master, Signal::KILL);
            wait_gone(self.master, SERVER_TIMEOUT);
        }
        kill_leftovers(&self.workers, "nginx");
    }
}

/// The config: one worker, keep-alive for 65 s, `ok` with the worker's
/// pid as `X-Ally-Instance` (the load client counts responses by it);
/// every path under `dir`.
fn config(dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "daemon on;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout 65s;
    server {{
        listen {addr};
        location / {{
            add_header X-Ally-Instance $pid always;
            return 200 \"ok\\n\";
        }}
    }}
}}
"
    )
}
