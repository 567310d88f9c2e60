//! Finding — and first building — the binaries under test.
//!
//! Cargo sets `CARGO_BIN_EXE_*` only for the binaries of the package being
//! tested, and `ally-master`, `ally-ctl` and the demo service live in other
//! packages. So the tests locate them in the target directory this test
//! binary was built into, and build them there once per process, with the
//! same profile. Plain `cargo test` therefore works without a prior
//! `cargo build`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the binaries under test, all from one profile directory.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `ally-master`.
    pub master: PathBuf,
    /// `ally-ctl`.
    pub ctl: PathBuf,
    /// The demo HTTP service (`examples/demo.rs` of the `ally` package).
    pub demo: PathBuf,
    /// `impostor`, a helper that acts against the master from outside
    /// (`src/bin/impostor.rs`).
    pub impostor: PathBuf,
}

/// Where one profile's artifacts live, and how to ask cargo to rebuild them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The target directory root (what `--target-dir` takes).
    pub target_dir: PathBuf,
    /// `Some(triple)` when built with `--target`: artifacts go under
    /// `<target_dir>/<triple>/<profile>`.
    pub triple: Option<String>,
    /// The profile directory name: `debug`, `release` or a custom profile.
    pub profile: String,
}

impl Layout {
    /// The layout of the currently running executable.
    ///
    /// Test binaries sit in `<profile dir>/deps/`, other binaries (such as
    /// `ally-bench`) directly in the profile directory.
    ///
    /// # Panics
    ///
    /// When the executable's path cannot be read or has no parent.
    pub fn of_current_exe() -> Layout {
        let exe = std::env::current_exe().expect("cannot read the path of the running executable");
        Layout::of_exe(&exe)
    }

    /// The layout of the executable at `exe` (see [`of_current_exe`](Self::of_current_exe)).
    ///
    /// # Panics
    ///
    /// When `exe` is too short a path to sit in a target directory.
    pub fn of_exe(exe: &Path) -> Layout {
        let mut dir = exe.parent().expect("executable has no parent directory");
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir = dir.parent().expect("deps directory has no parent");
        }
        let profile = name_of(dir);
        let above = dir.parent().expect("profile directory has no parent");
        // The target root holds CACHEDIR.TAG; a `<root>/<triple>/` directory
        // does not. Without the tag (an unusual layout), assume no triple.
        let tagged = |p: &Path| p.join("CACHEDIR.TAG").exists();
        match above.parent() {
            Some(root) if !tagged(above) && tagged(root) => Layout {
                target_dir: root.to_path_buf(),
                triple: Some(name_of(above)),
                profile,
            },
            _ => Layout {
                target_dir: above.to_path_buf(),
                triple: None,
                profile,
            },
        }
    }

    /// The directory holding this profile's binaries.
    pub fn profile_dir(&self) -> PathBuf {
        let mut dir = self.target_dir.clone();
        if let Some(triple) = &self.triple {
            dir.push(triple);
        }
        dir.push(&self.profile);
        dir
    }

    /// The binaries under test in this layout (they may not exist yet).
    pub fn bins(&self) -> Bins {
        let dir = self.profile_dir();
        Bins {
            master: dir.join("ally-master"),
            ctl: dir.join("ally-ctl"),
            demo: dir.join("examples").join("demo"),
            impostor: dir.join("impostor"),
        }
    }

    /// The `cargo build` arguments that produce [`bins`](Self::bins).
    pub fn build_args(&self) -> Vec<String> {
        let manifest = workspace_root().join("Cargo.toml");
        let mut args: Vec<String> = [
            "build",
            "--quiet",
            "--manifest-path",
            &manifest.to_string_lossy(),
            "--target-dir",
            &self.target_dir.to_string_lossy(),
            "-p",
            "ally-master",
            "-p",
            "ally-ctl",
            "-p",
            "ally",
            "-p",
            "ally-tests",
            "--bins",
            "--examples",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(triple) = &self.triple {
            args.extend(["--target".to_string(), triple.clone()]);
        }
        match self.profile.as_str() {
            "debug" => {}
            "release" => args.push("--release".into()),
            other => args.extend(["--profile".to_string(), other.to_string()]),
        }
        args
    }
}

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .expect("directory has no name")
        .to_string_lossy()
        .into_owned()
}

/// The workspace root: the parent of this package's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits inside the workspace")
        .to_path_buf()
}

/// The binaries under test, built first (once per process) in the profile of
/// the running executable.
///
/// Runs `$CARGO build --quiet -p ally-master -p ally-ctl -p ally -p ally-tests --bins --examples`
/// (`cargo` when `CARGO` is unset) with the same target directory, triple and
/// profile.
///
/// # Panics
///
/// When the build fails (cargo's output has already gone to stderr) or a
/// binary is missing afterwards.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| build(&Layout::of_current_exe()))
}

fn build(layout: &Layout) -> Bins {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = layout.build_args();
    let shown = format!("{} {}", cargo.to_string_lossy(), args.join(" "));
    let status = Command::new(&cargo)
        .args(&args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
    assert!(
        status.success(),
        "building the binaries under test failed ({status}): `{shown}`; \
         see cargo's errors above"
    );
    let bins = layout.bins();
    for path in [&bins.master, &bins.ctl, &bins.demo, &bins.impostor] {
        assert!(
            path.is_file(),
            "`{shown}` succeeded but {} does not exist",
            path.display()
        );
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binary_in_deps_maps_to_profile_dir() {
        let l = Layout::of_exe(Path::new("/nonexistent/t/debug/deps/e2e-0123"));
        assert_eq!(l.profile, "debug");
        assert_eq!(l.triple, None);
        assert_eq!(l.target_dir, PathBuf::from("/nonexistent/t"));
        assert_eq!(
            l.bins().demo,
            PathBuf::from("/nonexistent/t/debug/examples/demo")
        );
    }

    #[test]
    fn release_binary_builds_with_release_flag() {
        let l = Layout::of_exe(Path::new("/nonexistent/t/release/ally-bench"));
        assert_eq!(l.profile, "release");
        assert_eq!(
            l.bins().master,
            PathBuf::from("/nonexistent/t/release/ally-master")
        );
        assert!(l.build_args().contains(&"--release".to_string()));
    }

    #[test]
    fn triple_layout_is_recognised_by_the_cache_tag() {
        let root = std::env::temp_dir().join(format!("ally-layout-{}", std::process::id()));
        let deps = root.join("x86_64-unknown-linux-gnu/custom/deps");
        std::fs::create_dir_all(&deps).unwrap();
        std::fs::write(root.join("CACHEDIR.TAG"), "").unwrap();
        let l = Layout::of_exe(&deps.join("e2e-1"));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(l.triple.as_deref(), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(l.target_dir, root);
        let args = l.build_args();
        assert!(args.windows(2).any(|w| w == ["--profile", "custom"]));
        assert!(
            args.windows(2)
                .any(|w| w == ["--target", "x86_64-unknown-linux-gnu"])
        );
    }
}
