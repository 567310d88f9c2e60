//! A test's own directory, and a guard around a real `ally-master`.
//!
//! Every test gets a [`TestDir`]; its master runs with
//! `ALLY_RUNTIME_DIR=<dir>/run`, logs to `<dir>/master.log`, and every
//! instance it starts inherits `LC_ALLY_E2E_DIR=<dir>/` (an `LC_*` variable,
//! so it passes the clean environment instances get by default). So every
//! process a test caused — even one orphaned by a killed master — is found by
//! its environment naming the test directory, and the [`Master`] guard kills
//! them all on drop, failure or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::Signal;

mod listing;
mod log_copy;

pub use log_copy::StderrGate;
use log_copy::stamp_lines;

use crate::bins::{Bins, bins};
use crate::cmd::{CmdOutput, run, tail};
use crate::proc::{POLL, describe, kill_all_with_env, signal, wait_until};

pub use crate::config::{AppConfig, config_toml};
pub use crate::testdir::TestDir;

/// How long the master may take to answer on its control socket at start.
pub const MASTER_START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the guard waits for the master to exit after SIGTERM before it
/// sends SIGKILL.
pub const MASTER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound for one `ally-ctl` run.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// A reload slower than this has the state of its processes captured, to
/// explain a failure that follows.
pub const SLOW_RELOAD: Duration = Duration::from_secs(3);

/// Lines of `master.log` shown when an assertion fails.
const LOG_TAIL: usize = 60;

/// The main instance of an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainInstance {
    /// Its id.
    pub id: u64,
    /// Its pid.
    pub pid: u32,
}

/// A running `ally-master`, stopped on drop together with everything it
/// started.
#[derive(Debug)]
pub struct Master {
    child: Option<Child>,
    log_thread: Option<JoinHandle<()>>,
    pid: u32,
    dir: PathBuf,
    marker: String,
    socket: PathBuf,
    log: PathBuf,
    ctl: PathBuf,
    /// What [`ctl`](Self::ctl) runs `ally-ctl` behind: empty, or the
    /// `setpriv` that runs it as the master's user.
    ctl_wrapper: Vec<String>,
}

impl Master {
    /// Writes `<dir>/ally.toml` with `apps` and starts the master built for
    /// this test run; returns once its control socket answers `list`.
    pub fn start(dir: &TestDir, apps: &[AppConfig]) -> Master {
        Master::start_with(bins(), dir, &config_toml(apps))
    }

    /// Like [`start`](Self::start), with explicit binaries and config text.
    ///
    /// # Panics
    ///
    /// When the master cannot be started, exits, or does not answer on its
    /// control socket within [`MASTER_START_TIMEOUT`] (the message carries
    /// its log).
    pub fn start_with(bins: &Bins, dir: &TestDir, config: &str) -> Master {
        Master::start_wrapped(bins, dir, config, &[])
    }

    /// Like [`start_with`](Self::start_with), with the master run through
    /// `wrapper` (a program and its arguments, e.g. `unshare --pid --fork`,
    /// that ends by running the command line it is given); [`pid`](Self::pid)
    /// is then the wrapper's.
    pub fn start_wrapped(bins: &Bins, dir: &TestDir, config: &str, wrapper: &[&str]) -> Master {
        let mut master = Master::spawn(bins, dir, config, wrapper);
        master.wait_answering();
        master
    }

    /// Like [`start_wrapped`](Self::start_wrapped) with `as_user`, a
    /// command that runs the rest of its command line as another user
    /// (`setpriv --reuid=...`): [`ctl`](Self::ctl) then runs `ally-ctl`
    /// behind it too, since ally-ctl trusts only a master that runs as
    /// root or as itself.
    pub fn start_as(bins: &Bins, dir: &TestDir, config: &str, as_user: &[&str]) -> Master {
        let mut master = Master::spawn(bins, dir, config, as_user);
        master.ctl_wrapper = as_user.iter().map(|a| (*a).to_owned()).collect();
        master.wait_answering();
        master
    }

    /// Like [`start_wrapped`](Self::start_wrapped), but returns once a line
    /// of the log contains `pattern`, without asking the master anything:
    /// for a master that `ally-ctl` cannot reach from here.
    pub fn start_wrapped_until_log(
        bins: &Bins,
        dir: &TestDir,
        config: &str,
        wrapper: &[&str],
        pattern: &str,
    ) -> Master {
        let master = Master::spawn(bins, dir, config, wrapper);
        master.wait_for_log(pattern, MASTER_START_TIMEOUT);
        master
    }

    /// Writes `<dir>/ally.toml` with `config`, runs the master with `args`
    /// (and the test's runtime directory) and returns once it exited: for
    /// a master that must refuse to start. The runtime directory is
    /// `runtime_dir` if given, else `<dir>/run`.
    ///
    /// # Panics
    ///
    /// When it cannot be started or is still running after
    /// [`MASTER_START_TIMEOUT`] (it is killed first).
    pub fn run_to_exit(
        bins: &Bins,
        dir: &TestDir,
        config: &str,
        args: &[&str],
        runtime_dir: Option<&Path>,
    ) -> CmdOutput {
        let config_path = dir.path().join("ally.toml");
        std::fs::write(&config_path, config).expect("write ally.toml");
        let run_dir = runtime_dir.map_or_else(|| dir.path().join("run"), Path::to_path_buf);
        let mut cmd = Command::new(&bins.master);
        cmd.arg("--config")
            .arg(&config_path)
            .args(args)
            .env(ally_proto::paths::RUNTIME_DIR_VAR, &run_dir);
        for var in ally_proto::env::ALL {
            cmd.env_remove(var);
        }
        die_with_parent(&mut cmd);
        // A master that wrongly started may have left instances behind,
        // also when `run` panics on the timeout.
        struct Reaper(String);
        impl Drop for Reaper {
            fn drop(&mut self) {
                kill_all_with_env(&self.0, Duration::from_secs(5));
            }
        }
        let _reaper = Reaper(dir.env_marker());
        run(&mut cmd, MASTER_START_TIMEOUT)
    }

    /// Like [`start_with`](Self::start_with), but nothing reads the
    /// master's stderr (a pipe) until the returned gate is
    /// [`release`](StderrGate::release)d (or dropped): for a master whose
    /// stderr reader stops reading. The log file stays empty meanwhile.
    pub fn start_with_stderr_held(
        bins: &Bins,
        dir: &TestDir,
        config: &str,
    ) -> (Master, StderrGate) {
        let (open, gate) = std::sync::mpsc::channel();
        let mut master = Master::spawn_gated(bins, dir, Launch::Config(config), &[], Some(gate));
        master.wait_answering();
        (master, StderrGate(Some(open)))
    }

    /// `ally-master run ARGS` (which end with `-- CMD ...`): a master with
    /// no config file, its app named `name` (its control socket
    /// `<name>.sock`); returns once it answers `list`.
    pub fn start_run(bins: &Bins, dir: &TestDir, name: &str, args: &[&str]) -> Master {
        let mut master = Master::spawn_gated(bins, dir, Launch::Run { name, args }, &[], None);
        master.wait_answering();
        master
    }

    /// Sends SIGINT (Ctrl-C) and waits at most `timeout` for the master
    /// to exit.
    ///
    /// # Panics
    ///
    /// When it does not exit in time (it is killed then).
    pub fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the master was already stopped");
        let _ = signal(self.pid, Signal::INT);
        let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ally-master did not exit within {timeout:?} of SIGINT\n{}",
                self.log_tail()
            );
        });
        self.wait_log_copied();
        status
    }

    /// After the master's exit: waits until its log is copied to the end,
    /// so that [`log`](Self::log) has its last lines (the copy runs in a
    /// thread, and may lag). At most 5 s: something the master started
    /// may still hold its stderr.
    fn wait_log_copied(&self) {
        if let Some(copy) = &self.log_thread {
            wait_until(Duration::from_secs(5), || copy.is_finished());
        }
    }

    fn spawn(bins: &Bins, dir: &TestDir, config: &str, wrapper: &[&str]) -> Master {
        Master::spawn_gated(bins, dir, Launch::Config(config), wrapper, None)
    }

    /// Writes `<dir>/<name>.toml` with `config` and starts a master on it
    /// whose runtime directory is `run_dir`, which other masters may share:
    /// its socket is `<run_dir>/<name>.sock`. Returns once it answers.
    pub fn start_in(
        bins: &Bins,
        dir: &TestDir,
        name: &str,
        run_dir: &Path,
        config: &str,
    ) -> Master {
        let launch = Launch::Config(config);
        let mut master = Master::spawn_full(bins, dir, name, run_dir, launch, &[], None);
        master.wait_answering();
        master
    }

    fn spawn_gated(
        bins: &Bins,
        dir: &TestDir,
        launch: Launch<'_>,
        wrapper: &[&str],
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> Master {
        let run_dir = dir.path().join("run");
        let name = match launch {
            Launch::Config(_) => "ally",
            Launch::Run { name, .. } => name,
        };
        Master::spawn_full(bins, dir, name, &run_dir, launch, wrapper, gate)
    }

    fn spawn_full(
        bins: &Bins,
        dir: &TestDir,
        name: &str,
        run_dir: &Path,
        launch: Launch<'_>,
        wrapper: &[&str],
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> Master {
        let log = dir.path().join("master.log");
        let log_file = std::fs::File::create(&log).expect("create master.log");
        let (log_reader, log_writer) = std::io::pipe().expect("pipe for the master's log");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bins.master);
                cmd
            }
            None => Command::new(&bins.master),
        };
        let socket = match launch {
            Launch::Config(config) => {
                let config_path = dir.path().join(format!("{name}.toml"));
                std::fs::write(&config_path, config).expect("write the config");
                cmd.arg("--config").arg(&config_path);
                ally_proto::paths::control_socket(run_dir, &config_path)
            }
            Launch::Run { args, .. } => {
                cmd.arg("run").args(args);
                run_dir.join(format!("{name}.sock"))
            }
        };
        cmd.env(ally_proto::paths::RUNTIME_DIR_VAR, run_dir)
            .env("LC_ALLY_E2E_DIR", dir.env_marker())
            .stdin(Stdio::null())
            .stdout(log_writer.try_clone().expect("dup log pipe"))
            .stderr(log_writer);
        for var in ally_proto::env::ALL {
            cmd.env_remove(var);
        }
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bins.master.display()));
        // Our copies of the write end went into `cmd`; drop them so the
        // writer thread sees end of file when the master exits.
        drop(cmd);
        let log_thread = Some(stamp_lines(log_reader, log_file, gate));
        Master {
            log_thread,
            pid: child.id(),
            child: Some(child),
            dir: dir.path().to_path_buf(),
            marker: dir.env_marker(),
            socket,
            log,
            ctl: bins.ctl.clone(),
            ctl_wrapper: Vec::new(),
        }
    }

    fn wait_answering(&mut self) {
        let deadline = Instant::now() + MASTER_START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "ally-master exited with {status} during start-up\n{}",
                    self.log_tail()
                );
            }
            if self.socket.exists() && self.ctl(&["list", "--json"]).code() == Some(0) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "ally-master did not answer on {} within {MASTER_START_TIMEOUT:?}\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The test directory it runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `master.log`: the master's stderr (with every instance's
    /// output lines prefixed `[APP#ID] `), each line stamped with
    /// [`clock::stamp`](crate::clock::stamp).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of the log, headed, for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} (last {LOG_TAIL} lines) ---\n{}",
            self.log.display(),
            tail(&self.log(), LOG_TAIL)
        )
    }

    /// Waits until a log line contains `pattern` and returns that line.
    ///
    /// # Panics
    ///
    /// When no such line appears within `timeout`.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> String {
        let mut found = None;
        wait_until(timeout, || {
            let log = self.log();
            // Only whole lines: the last one may still be being written.
            let complete = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
            found = complete
                .lines()
                .find(|l| l.contains(pattern))
                .map(str::to_string);
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no line containing {pattern:?} in the master's log within {timeout:?}\n{}",
                self.log_tail()
            )
        })
    }

    /// Runs `ally-ctl --socket SOCKET ARGS...` behind `wrapper` (e.g.
    /// `setpriv --reuid=...`), as another user would.
    pub fn ctl_as(&self, wrapper: &[&str], args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(&self.ctl)
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        for var in ally_proto::env::ALL {
            cmd.env_remove(var);
        }
        run(&mut cmd, CTL_TIMEOUT)
    }

    /// Runs `ally-ctl --socket SOCKET ARGS...` to completion (at most
    /// [`CTL_TIMEOUT`]), as the master's user after
    /// [`start_as`](Self::start_as).
    pub fn ctl(&self, args: &[&str]) -> CmdOutput {
        if !self.ctl_wrapper.is_empty() {
            let wrapper: Vec<&str> = self.ctl_wrapper.iter().map(String::as_str).collect();
            return self.ctl_as(&wrapper, args);
        }
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("--socket").arg(&self.socket).args(args);
        for var in ally_proto::env::ALL {
            cmd.env_remove(var);
        }
        run(&mut cmd, CTL_TIMEOUT)
    }

    /// Asserts that `out` exited with `code`, showing the command, its
    /// output and the master's log otherwise.
    pub fn assert_exit(&self, out: &CmdOutput, code: i32) {
        if out.code() != Some(code) {
            panic!("expected exit code {code}\n{out}\n{}", self.log_tail());
        }
    }

    /// Asserts `cond`, showing `what`, the command's output and the
    /// master's log otherwise.
    pub fn assert_output(&self, out: &CmdOutput, cond: bool, what: &str) {
        if !cond {
            panic!("{what}\n{out}\n{}", self.log_tail());
        }
    }

    /// Runs `ally-ctl ARGS...` and asserts it exited with `code`.
    pub fn ctl_expect(&self, args: &[&str], code: i32) -> CmdOutput {
        let out = self.ctl(args);
        self.assert_exit(&out, code);
        out
    }

    /// `ally-ctl reload APP --wait --timeout 30`, asserted to exit 0.
    ///
    /// A reload that takes longer than [`SLOW_RELOAD`] has the state of
    /// its starting instances and of the master captured from `/proc` while
    /// it is still in progress; a failure shows it.
    pub fn reload_ok(&self, app: &str) -> CmdOutput {
        let args = ["reload", app, "--wait", "--timeout", "30"];
        let (out, snapshot) = std::thread::scope(|s| {
            let reload = s.spawn(|| self.ctl(&args));
            let slow = !wait_until(SLOW_RELOAD, || reload.is_finished());
            let snapshot = slow.then(|| self.snapshot(app));
            (reload.join().expect("reload thread"), snapshot)
        });
        if out.code() != Some(0) {
            panic!(
                "expected exit code 0\n{out}\n{}{}",
                snapshot.unwrap_or_default(),
                self.log_tail()
            );
        }
        out
    }

    /// What `/proc` says about the master and the app's starting instances.
    fn snapshot(&self, app: &str) -> String {
        let mut text = format!(
            "--- after {SLOW_RELOAD:?} of reload ---\nmaster {}\n",
            describe(self.pid)
        );
        for inst in self.instances(app) {
            let pid = inst["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            if let Some(pid) = pid.filter(|_| inst["state"] == "starting") {
                let d = describe(pid);
                text.push_str(&format!("starting instance {}: {d}\n", inst["id"]));
            }
        }
        text
    }

    /// Sends SIGTERM and waits for the master to exit.
    ///
    /// # Panics
    ///
    /// When it has not exited within `timeout` (it is then SIGKILLed).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the master was already stopped");
        let _ = signal(self.pid, Signal::TERM);
        let status = wait_child(&mut child, timeout);
        match status {
            Some(status) => {
                self.wait_log_copied();
                status
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ally-master did not exit within {timeout:?} of SIGTERM\n{}",
                    self.log_tail()
                );
            }
        }
    }
}

/// How a master is started.
#[derive(Debug, Clone, Copy)]
enum Launch<'a> {
    /// `--config <dir>/<name>.toml`, written with this text.
    Config(&'a str),
    /// `run ARGS`, its app named `name`.
    Run {
        /// The app's name.
        name: &'a str,
        /// What follows `run`.
        args: &'a [&'a str],
    },
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

impl Drop for Master {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        if let Some(mut child) = self.child.take() {
            let _ = signal(self.pid, Signal::TERM);
            if wait_child(&mut child, MASTER_STOP_TIMEOUT).is_none() {
                eprintln!("ally-master {} ignored SIGTERM; killing it", self.pid);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(t) = self.log_thread.take() {
            // The pipe closes when the master exits, unless something it
            // started still holds its stderr; do not wait for that.
            wait_until(Duration::from_secs(2), || t.is_finished());
        }
        let orphans = kill_all_with_env(&self.marker, Duration::from_secs(5));
        if !orphans.is_empty() {
            eprintln!(
                "killed processes left behind by the master of {}: {orphans:?}",
                self.dir.display()
            );
        }
    }
}

/// Makes the child receive SIGTERM when the thread that spawned it dies, so
/// a test runner killed without unwinding does not leave masters behind.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes the
    // prctl(PR_SET_PDEATHSIG) system call, which is async-signal-safe; it
    // touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::TERM)).map_err(Into::into)
        });
    }
}
