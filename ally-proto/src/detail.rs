//! What `ally-ctl status APP` shows beyond the list: the app's settings,
//! its listeners and who holds them, its restart counters, and the
//! settings changed since its main instance started (drift); and the
//! master's build.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AppStatus, Network};

/// One app in detail. Answer to [`ControlRequest::Detail`](crate::ControlRequest::Detail).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AppDetail {
    /// What `ally-ctl list` shows of it.
    pub status: AppStatus,
    /// Its settings as the config now has them, by config key (`command`,
    /// `cwd`, `user`, `ready`, `restart.max_delay`, ...), each value written
    /// as in the config file; in a fixed order.
    pub settings: Vec<Setting>,
    /// The settings that differ between the config the main instance was
    /// started with and the config now: they apply at its next start or
    /// reload. `None` when that is not known: no main instance, or one
    /// started by a master that did not keep its config (before an
    /// in-place upgrade from such a master).
    pub drift: Option<Vec<Drift>>,
    /// Every socket the master holds for it, in the order of the config's
    /// `listen`, then the library's by address.
    pub listeners: Vec<ListenerDetail>,
    /// Consecutive crashes of its main instance (reset by a stable run);
    /// `max_failures` of them make it `failed`.
    pub crashes: u32,
    /// The back-off delay the last crash started (its next crash waits
    /// longer, up to `restart.max_delay`), milliseconds; `None` with no
    /// crash in a row.
    pub backoff_ms: Option<u64>,
}

/// A setting and its value, written as in the config file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Its config key (`restart.` before those of `[app.restart]`).
    pub name: String,
    /// Its value, in the config's syntax.
    pub value: String,
}

/// A setting that changed since the main instance started.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Its config key.
    pub name: String,
    /// The value the main instance runs with.
    pub running: String,
    /// The value the config has now.
    pub configured: String,
}

/// Who asked the master for a socket.
///
/// Append-only: variants are encoded by position.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ListenerOrigin {
    /// An instance asked for it through the library (`ally::listen_*`).
    Library,
    /// The config's `listen` declares it; `name` is its `LISTEN_FDNAMES`
    /// entry.
    Config {
        /// Its name.
        name: String,
    },
}

/// One socket the master holds for an app.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ListenerDetail {
    /// Its network.
    pub network: Network,
    /// The address it is bound to (the port chosen for a port 0).
    pub address: String,
    /// Who asked for it.
    pub origin: ListenerOrigin,
    /// The live instances holding it, by id; empty while it waits for the
    /// app's next instance.
    pub holders: Vec<u64>,
}

/// How a binary was built. Answer to
/// [`ControlRequest::Build`](crate::ControlRequest::Build).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// Its version.
    pub version: String,
    /// The git commit it was built from: a short hash, with `-dirty` if
    /// the tree had changes; `unknown` when not built from git.
    pub commit: String,
    /// When it was built, UTC (`SOURCE_DATE_EPOCH` when that was set):
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub date: String,
}

/// `commit COMMIT, built DATE`: the line `--version` prints under the
/// version.
impl fmt::Display for BuildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "commit {}, built {}", self.commit, self.date)
    }
}
