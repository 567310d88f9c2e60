//! A master run from a copy of its binary in the test's directory, so that
//! a test can replace that file (by rename, see [`super::install`]) and
//! upgrade the master in place; with what the upgrade tests check after
//! each upgrade.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bins::{Bins, Layout, bins};
use crate::cmd::CmdOutput;
use crate::harness::{AppConfig, Master, TestDir, config_toml};
use crate::proc::alive;

use super::{install, running_version};

/// How long a probe's verdict or a log line may take to show: generous,
/// for a debug build on a busy two-core machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// A test's master, run from a copy in the test's directory.
#[derive(Debug)]
pub struct Setup {
    /// The master.
    pub master: Master,
    /// Where the master's binary is: replaced before each upgrade.
    pub binary: PathBuf,
    /// The build under test.
    pub original: PathBuf,
    /// The master's command line as started (`/proc/PID/cmdline`).
    pub cmdline: Vec<String>,
    /// The test's directory.
    pub dir: TestDir,
}

/// How the master is started: behind a command that runs it as another
/// user (none: as root), through a wrapper, or through a symlink.
enum Launch<'a> {
    AsUser(&'a [&'a str]),
    Wrapped(&'a [&'a str]),
    Symlink,
}

/// The `state-probe` binary, built with the others.
pub fn state_probe() -> PathBuf {
    bins();
    Layout::of_current_exe().profile_dir().join("state-probe")
}

/// The command line of `pid`, argument by argument.
pub fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split_terminator('\0')
        .map(str::to_owned)
        .collect()
}

/// What `binary --version` prints.
fn version_line(binary: &Path) -> String {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .expect("--version");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The version `ally-master --version` of `binary` prints.
pub fn version_of(binary: &Path) -> String {
    running_version(&version_line(binary)).expect("a version line")
}

/// The handover state version `ally-master --version` of `binary` prints
/// (`... handover N)`).
pub fn handover_version_of(binary: &Path) -> String {
    let out = version_line(binary);
    out.lines()
        .next()
        .and_then(|first| first.split("handover ").nth(1))
        .map(|v| v.trim_end_matches(|c: char| !c.is_ascii_digit()).to_owned())
        .unwrap_or_else(|| panic!("no handover version in {out}"))
}

impl Setup {
    /// A master of the apps `apps` makes, run as root (as the tests are).
    pub fn start(test: &str, apps: impl FnOnce(&TestDir) -> Vec<AppConfig>) -> Setup {
        Setup::start_as(test, &[], apps)
    }

    /// Like [`start`](Self::start), the master run through `wrapper` (e.g.
    /// `env NOTIFY_SOCKET=...`, see [`Master::start_wrapped`]), which
    /// must exec it (the pid is the wrapper's).
    pub fn start_wrapped(
        test: &str,
        wrapper: &[&str],
        apps: impl FnOnce(&TestDir) -> Vec<AppConfig>,
    ) -> Setup {
        Setup::launch(test, Launch::Wrapped(wrapper), apps)
    }

    /// Like [`start`](Self::start), the master run behind `as_user` (e.g.
    /// `setpriv --reuid=...`, see [`Master::start_as`]); its directory is
    /// then open to everyone (sticky, so that the binary's directory in it
    /// stays safe to upgrade from), for the master to make its runtime
    /// directory in.
    pub fn start_as(
        test: &str,
        as_user: &[&str],
        apps: impl FnOnce(&TestDir) -> Vec<AppConfig>,
    ) -> Setup {
        Setup::launch(test, Launch::AsUser(as_user), apps)
    }

    /// Like [`start`](Self::start), the master started through
    /// [`binary`](Self::binary) being a symlink to a copy of the build
    /// under test ([`original`](Self::original) is then that copy).
    pub fn start_through_symlink(
        test: &str,
        apps: impl FnOnce(&TestDir) -> Vec<AppConfig>,
    ) -> Setup {
        Setup::launch(test, Launch::Symlink, apps)
    }

    fn launch(test: &str, how: Launch<'_>, apps: impl FnOnce(&TestDir) -> Vec<AppConfig>) -> Setup {
        use std::os::unix::fs::PermissionsExt;

        let dir = TestDir::new(test);
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        if matches!(how, Launch::AsUser(u) if !u.is_empty()) {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        }
        let binary = bin_dir.join("ally-master");
        let mut original = bins().master.clone();
        if matches!(how, Launch::Symlink) {
            let copy = bin_dir.join("ally-master-original");
            install(&original, &copy, 0o755);
            std::os::unix::fs::symlink(&copy, &binary).unwrap();
            original = copy;
        } else {
            install(&original, &binary, 0o755);
        }
        let mut ours: Bins = bins().clone();
        ours.master = binary.clone();
        let config = config_toml(&apps(&dir));
        let master = match how {
            Launch::AsUser([]) => Master::start_with(&ours, &dir, &config),
            Launch::AsUser(as_user) => Master::start_as(&ours, &dir, &config, as_user),
            Launch::Wrapped(wrapper) => Master::start_wrapped(&ours, &dir, &config, wrapper),
            Launch::Symlink => Master::start_with(&ours, &dir, &config),
        };
        let cmdline = cmdline(master.pid());
        assert!(
            cmdline.join(" ").contains("ally-master --config "),
            "{cmdline:?}"
        );
        Setup {
            master,
            binary,
            original,
            cmdline,
            dir,
        }
    }

    /// `ally-ctl upgrade --wait`, with its output.
    pub fn upgrade(&self) -> CmdOutput {
        self.master.ctl(&["upgrade", "--wait", "--timeout", "60"])
    }

    /// Installs `binary` as the master's and upgrades to it, which must
    /// succeed and end in a resumed master of the same pid, whose version
    /// is `binary`'s.
    pub fn upgrade_to(&self, binary: &Path) {
        let expected = self.install(binary);
        self.upgrade_installed(&expected);
    }

    /// Installs `binary` as the master's (a copy: slow for a debug build
    /// on a loaded machine); returns its version.
    pub fn install(&self, binary: &Path) -> String {
        let expected = version_of(binary);
        install(binary, &self.binary, 0o755);
        expected
    }

    /// Upgrades to the binary [`install`](Self::install) put in place,
    /// whose version is `expected`, as [`upgrade_to`](Self::upgrade_to).
    pub fn upgrade_installed(&self, expected: &str) {
        let out = self.upgrade();
        self.master.assert_exit(&out, 0);
        self.master.assert_output(
            &out,
            out.stdout.contains(&format!("-> {expected}")),
            "the new version",
        );
        assert_eq!(self.running_version(), expected);
        self.assert_same_process_resumed();
    }

    /// The running master's version, as `ally-ctl version` shows it.
    pub fn running_version(&self) -> String {
        let out = self.master.ctl(&["version"]);
        running_version(&out.stdout)
            .unwrap_or_else(|| panic!("no master version in\n{out}\n{}", self.master.log_tail()))
    }

    /// Every live instance: (app, id) → pid.
    pub fn pids(&self) -> BTreeMap<(String, u64), u64> {
        let list = self.master.list_json();
        let mut pids = BTreeMap::new();
        for app in list["apps"].as_array().into_iter().flatten() {
            let name = app["name"].as_str().unwrap_or_default().to_owned();
            for i in app["instances"].as_array().into_iter().flatten() {
                let id = i["id"].as_u64().unwrap_or_default();
                pids.insert((name.clone(), id), i["pid"].as_u64().unwrap_or_default());
            }
        }
        pids
    }

    /// Waits for `[APP#ID] state-probe: WHAT` in the log (and fails at a
    /// `FAILED` verdict).
    pub fn verdict(&self, app: &str, id: u64, what: &str) {
        let line = self
            .master
            .wait_for_log(&format!("[{app}#{id}] state-probe: "), WAIT);
        assert!(
            !line.contains("FAILED"),
            "{line}\n{}",
            self.master.log_tail()
        );
        self.master
            .wait_for_log(&format!("[{app}#{id}] state-probe: {what}"), WAIT);
    }

    /// The master's pid is the one started, and it runs a resumed image
    /// whose command line is the one it was started with, then the resume
    /// options (so `pgrep -f 'ally-master --config'` still finds it).
    pub fn assert_same_process_resumed(&self) {
        let pid = self.master.pid();
        assert!(
            alive(pid),
            "the master's process is gone\n{}",
            self.master.log_tail()
        );
        let now = cmdline(pid);
        let (original, resume) = now.split_at(self.cmdline.len().min(now.len()));
        assert_eq!(
            original, self.cmdline,
            "pid {pid} lost its command line: {now:?}"
        );
        assert_eq!(
            resume.first().map(String::as_str),
            Some("--resume"),
            "pid {pid} is not a resumed master: {now:?}"
        );
    }
}
