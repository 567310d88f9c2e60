//! What the in-place upgrade tests share: other builds of `ally-master`
//! (built once per test process, in a target directory of their own under
//! this one's), and replacing the master's binary on disk the way a package
//! manager does (a rename: a running executable cannot be written).
//!
//! The builds differ only by build-time overrides (see
//! `ally-master/src/version.rs` and `build/info.rs`): another version
//! string, another handover state version, a restore that fails on
//! purpose, a build date from `SOURCE_DATE_EPOCH`, no git. Each variant
//! builds `ally-ctl` too ([`variant_ctl`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::bins::{Layout, workspace_root};

pub mod setup;

/// The version string of [`Variant::Other`].
pub const OTHER_VERSION: &str = "0.0.0-upgrade-test";

/// A build of `ally-master` other than the one under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// Another `--version` ([`OTHER_VERSION`]), the same state version.
    Other,
    /// A handover state version no other build writes (999): it refuses
    /// every state handed to it.
    Refusing,
    /// Passes the probe, then fails to restore: the way back runs.
    FailingRestore,
    /// Built with `SOURCE_DATE_EPOCH` = [`SOURCE_DATE_EPOCH`].
    Reproducible,
    /// Built as from a tarball: git finds no repository (`GIT_DIR` names
    /// none), and `SOURCE_DATE_EPOCH` as [`Variant::Reproducible`].
    NoGit,
}

/// The `SOURCE_DATE_EPOCH` of [`Variant::Reproducible`]:
/// 2023-11-14T22:13:20Z.
pub const SOURCE_DATE_EPOCH: &str = "1700000000";

impl Variant {
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Variant::Other => &[("ALLY_VERSION_OVERRIDE", OTHER_VERSION)],
            Variant::Refusing => &[
                ("ALLY_VERSION_OVERRIDE", "0.0.0-refusing"),
                ("ALLY_HANDOVER_VERSION_OVERRIDE", "999"),
            ],
            Variant::FailingRestore => &[
                ("ALLY_VERSION_OVERRIDE", "0.0.0-failing-restore"),
                ("ALLY_HANDOVER_RESTORE_FAULT", "1"),
            ],
            Variant::Reproducible => &[("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)],
            Variant::NoGit => &[
                ("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
                ("GIT_DIR", "/nonexistent/ally-test"),
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Other => "other",
            Variant::Refusing => "refusing",
            Variant::FailingRestore => "failing-restore",
            Variant::Reproducible => "reproducible",
            Variant::NoGit => "no-git",
        }
    }
}

/// The binary of `variant`, built on first use (one build at a time; the
/// dependencies are compiled once for all variants).
///
/// # Panics
///
/// When the build fails.
pub fn variant(variant: Variant) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<Variant, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&variant) {
        return path.clone();
    }
    let layout = Layout::of_current_exe();
    let target = layout.target_dir.join("upgrade-variants");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "-p", "ally-master", "-p", "ally-ctl"])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if layout.profile == "release" {
        cmd.arg("--release");
    }
    for var in [
        "ALLY_VERSION_OVERRIDE",
        "ALLY_HANDOVER_VERSION_OVERRIDE",
        "ALLY_HANDOVER_RESTORE_FAULT",
        "SOURCE_DATE_EPOCH",
        "GIT_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(variant.env().iter().copied());
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "cannot run cargo to build the {} master: {e}",
            variant.name()
        )
    });
    assert!(
        status.success(),
        "building the {} master failed: {status}",
        variant.name()
    );
    let profile = if layout.profile == "release" {
        "release"
    } else {
        "debug"
    };
    for program in ["ally-master", "ally-ctl"] {
        let out = target.join(profile).join(program);
        let kept = target.join(format!("{program}-{}", variant.name()));
        install(&out, &kept, 0o755);
    }
    let kept = target.join(format!("ally-master-{}", variant.name()));
    built.insert(variant, kept.clone());
    kept
}

/// The `ally-ctl` built with [`variant`]'s `ally-master`.
///
/// # Panics
///
/// When the build fails.
pub fn variant_ctl(of: Variant) -> PathBuf {
    variant(of).with_file_name(format!("ally-ctl-{}", of.name()))
}

pub use crate::executable::{install, install_text};

/// The version of the running master, as `ally-ctl version` shows it:
/// the word after `ally-master` on its line.
pub fn running_version(version_output: &str) -> Option<String> {
    version_output
        .lines()
        .find_map(|l| l.strip_prefix("ally-master "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}
