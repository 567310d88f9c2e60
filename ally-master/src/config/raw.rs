//! The config file as written: the TOML shape, with every unknown key
//! refused. [`super::parse`] turns it into a [`super::Config`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::interop::{ListenValue, ReadyValue};
use super::value::{
    AppName, Command, Count, EnvName, EnvValue, Factor, FamilyName, IncludePattern, LogValue,
    PathValue, Port, Positive, Principal, StopSignal, Timeout,
};

/// How to declare an app, shown when none is.
pub const APP_EXAMPLE: &str =
    "declare one with an [[app]] table: name = \"web\" and command = [\"./server\"]";

/// The whole file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[master]`, spanned to refuse it in an included file.
    pub master: Option<Spanned<RawMaster>>,
    /// `[[app]]` tables, in order.
    pub app: Option<Apps>,
    /// `include`, spanned to refuse it in an included file.
    pub include: Option<Spanned<Vec<Spanned<IncludePattern>>>>,
}

/// The `[master]` table.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMaster {
    /// `socket`.
    pub socket: Option<Spanned<PathValue>>,
    /// `log_dir`.
    pub log_dir: Option<PathValue>,
    /// `group`.
    pub group: Option<Principal<true>>,
    /// `frame_timeout`.
    pub frame_timeout: Option<Timeout>,
}

/// One `[[app]]` table.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    /// `name`, spanned to point at a duplicate; required.
    pub name: Option<Spanned<AppName>>,
    /// `command`; required.
    pub command: Option<Command>,
    /// `family`.
    pub family: Option<FamilyName>,
    /// `cwd`.
    pub cwd: Option<PathValue>,
    /// `env`.
    #[serde(default)]
    pub env: BTreeMap<EnvName, EnvValue>,
    /// `ready_timeout`.
    pub ready_timeout: Option<Timeout>,
    /// `stop_timeout`.
    pub stop_timeout: Option<Timeout>,
    /// `request_timeout`.
    pub request_timeout: Option<Timeout>,
    /// `stop_signal`.
    pub stop_signal: Option<StopSignal>,
    /// `max_cache_entries`.
    pub max_cache_entries: Option<Positive>,
    /// `max_cache_bytes`.
    pub max_cache_bytes: Option<Positive>,
    /// `max_atomics`.
    pub max_atomics: Option<Positive>,
    /// `max_locks`.
    pub max_locks: Option<Positive>,
    /// `autostart`.
    pub autostart: Option<bool>,
    /// `restart`, a table.
    pub restart: Option<RawRestart>,
    /// `max_draining`.
    pub max_draining: Option<Positive>,
    /// `listen`.
    pub listen: Option<Vec<ListenValue>>,
    /// `ready`.
    pub ready: Option<ReadyValue>,
    /// `inherit_env`.
    pub inherit_env: Option<bool>,
    /// `user`.
    pub user: Option<Principal<false>>,
    /// `group`.
    pub group: Option<Principal<true>>,
    /// `log`.
    pub log: Option<LogValue>,
    /// `privileged_ports`.
    pub privileged_ports: Option<Vec<Port>>,
}

/// An `[app.restart]` table.
#[derive(Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a table, e.g. [app.restart] or restart = { max_failures = 0 }"
)]
pub struct RawRestart {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `min_delay`, spanned to point at it when above the default
    /// `max_delay`.
    pub min_delay: Option<Spanned<Timeout>>,
    /// `max_delay`, spanned to point at it when below `min_delay`.
    pub max_delay: Option<Spanned<Timeout>>,
    /// `factor`.
    pub factor: Option<Factor>,
    /// `stable_after`.
    pub stable_after: Option<Timeout>,
    /// `max_failures`.
    pub max_failures: Option<Count>,
}

/// The `app` array of tables: at least one, and `[[app]]` rather than a
/// single `[app]` table.
#[derive(Debug)]
pub struct Apps(pub Vec<Spanned<RawApp>>);

impl<'de> Deserialize<'de> for Apps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(AppsVisitor)
    }
}

struct AppsVisitor;

impl<'de> Visitor<'de> for AppsVisitor {
    type Value = Apps;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of [[app]] tables")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Apps, A::Error> {
        let mut apps = Vec::new();
        while let Some(app) = seq.next_element()? {
            apps.push(app);
        }
        if apps.is_empty() {
            return Err(de::Error::custom(format!("no app declared: {APP_EXAMPLE}")));
        }
        Ok(Apps(apps))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Apps, A::Error> {
        Err(de::Error::custom(
            "`app` must be an array of tables: write [[app]] (two brackets), not [app]",
        ))
    }
}
