//! The common set-up: one master running the demo service as app `web`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::bins::{Bins, bins};
use crate::harness::{AppConfig, MainInstance, Master, TestDir, config_toml};
use crate::service::Service;

/// The app name every fixture uses.
pub const APP: &str = "web";

/// Flags that make the demo listen on an ephemeral loopback port.
pub const ANY_PORT: [&str; 2] = ["--addr", "127.0.0.1:0"];

/// The ready and stop timeouts of the fixture's app unless a test sets its
/// own. Generous on purpose: a debug build starting on a machine busy with
/// a 32-connection load and a parallel build can take seconds, and these
/// timeouts then measure the machine, not ally. Tests about the timeouts
/// themselves set short ones.
pub const DEFAULT_TIMEOUT: &str = "10s";

/// How long the first instance may take to become main.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A master running the demo as app [`APP`], its first instance main.
///
/// Fields drop in order: the master (and every process of the test) first,
/// then the script, then the directory.
#[derive(Debug)]
pub struct Demo {
    /// The master.
    pub master: Master,
    /// The wrapper script the app runs; swap it to upgrade.
    pub service: Service,
    /// Where the first instance listens.
    pub addr: SocketAddr,
    /// The first instance.
    pub first: MainInstance,
    /// The test's directory.
    pub dir: TestDir,
}

impl Demo {
    /// The demo on an ephemeral port, ready and stop timeouts
    /// [`DEFAULT_TIMEOUT`] each.
    pub fn start(test: &str) -> Demo {
        Demo::start_with(test, &ANY_PORT, |app| app)
    }

    /// The demo with `flags`; `tune` adjusts the app's config.
    pub fn start_with(
        test: &str,
        flags: &[&str],
        tune: impl FnOnce(AppConfig) -> AppConfig,
    ) -> Demo {
        Demo::start_from(bins(), test, flags, tune)
    }

    /// Like [`start_with`](Self::start_with) with explicit binaries.
    pub fn start_from(
        bins: &Bins,
        test: &str,
        flags: &[&str],
        tune: impl FnOnce(AppConfig) -> AppConfig,
    ) -> Demo {
        let dir = TestDir::new(test);
        let service = Service::new(dir.path(), "service", &bins.demo, flags);
        let app = tune(
            AppConfig::new(APP, service.path())
                .ready_timeout(DEFAULT_TIMEOUT)
                .stop_timeout(DEFAULT_TIMEOUT)
                .stop_signal("SIGTERM"),
        );
        let master = Master::start_with(bins, &dir, &config_toml(&[app]));
        let first = master.wait_main(APP, Some(1), START_TIMEOUT);
        let addr = listening_addr(&master, first.id);
        Demo {
            master,
            service,
            addr,
            first,
            dir,
        }
    }

    /// Swaps the script on disk so the next instance runs with `flags`.
    pub fn set_flags(&self, flags: &[&str]) {
        self.service.set_flags(flags);
    }
}

/// The address instance `id` announced: its log line
/// `demo: instance ID pid P listening on ADDR`.
///
/// # Panics
///
/// When the line does not appear within 10 s or holds no address.
pub fn listening_addr(master: &Master, id: u64) -> SocketAddr {
    address_in(master, &format!("demo: instance {id} pid "))
}

/// Like [`listening_addr`], for instance `id` of `app` only (its line as
/// the master logs an `inherit` app's output, `[APP#ID] demo: ...`): with
/// several demo apps, the first `demo: instance 1` line may be another's.
///
/// # Panics
///
/// When the line does not appear within 10 s or holds no address.
pub fn listening_addr_of(master: &Master, app: &str, id: u64) -> SocketAddr {
    address_in(master, &format!("[{app}#{id}] demo: instance {id} pid "))
}

/// The address after `listening on ` in the first log line containing
/// `start` (a demo's start line), waited for at most 10 s.
fn address_in(master: &Master, start: &str) -> SocketAddr {
    let line = master.wait_for_log(start, Duration::from_secs(10));
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok());
    addr.unwrap_or_else(|| panic!("no address in the demo's start line {line:?}"))
}

/// Asks the kernel for a free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// App `name` running the Python server of `tests/fixtures`, which knows
/// only systemd's protocols: its socket `http=tcp://127.0.0.1:PORT` comes
/// as `LISTEN_FDS`, its readiness as `READY=1` on `NOTIFY_SOCKET`.
pub fn socket_activated_app(name: &str, port: u16) -> AppConfig {
    let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/socket_activated_server.py");
    AppConfig::new(name, &server)
        .ready_timeout(DEFAULT_TIMEOUT)
        .stop_timeout(DEFAULT_TIMEOUT)
        .line(&format!("listen = [\"http=tcp://127.0.0.1:{port}\"]"))
        .line("ready = \"notify\"")
}
