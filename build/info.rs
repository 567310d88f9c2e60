// Build information for `--version`, shared by the build scripts of
// ally-master and ally-ctl (each `include!`s this file): the git commit the
// binary was built from and the build date.
//
// Sets, for `env!` in the crate:
// - `ALLY_BUILD_COMMIT`: the short hash of HEAD, with `-dirty` when a
//   tracked file differed from it; `unknown` when not built from a git
//   work tree (a tarball) or without git;
// - `ALLY_BUILD_DATE`: the build time in UTC, `YYYY-MM-DDTHH:MM:SSZ`, from
//   `SOURCE_DATE_EPOCH` when it is set (reproducible builds), else now.
//
// Rebuild triggers: HEAD, the ref it points to, packed-refs and the index
// (a commit, a checkout, a `git add`), the crate's sources (so `-dirty`
// follows an edit of them), and `SOURCE_DATE_EPOCH`. Nothing else: an
// incremental build with no change does not run this again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Emits the build information and its rerun triggers.
fn emit_build_info() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=GIT_DIR");
    let commit = match git(&dir, &["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            for path in ["HEAD", "index", "packed-refs"] {
                rerun_on_git_path(&dir, path);
            }
            if let Some(head_ref) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                rerun_on_git_path(&dir, &head_ref);
            }
            // `status` compares contents where the index's stat data is
            // stale; without optional locks it never rewrites the index (a
            // rewrite would trigger this script again).
            let clean = git_ok(
                &dir,
                &[
                    "--no-optional-locks",
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                ],
            )
            .is_some_and(|out| out.is_empty());
            if clean { hash } else { format!("{hash}-dirty") }
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=ALLY_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=ALLY_BUILD_DATE={}", utc(build_time()));
}

/// The output of `git ARGS` run in `dir`, trimmed, if it succeeded and
/// said something.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    git_ok(dir, args).filter(|text| !text.is_empty())
}

/// The output of `git ARGS` run in `dir`, trimmed, if it succeeded.
fn git_ok(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_owned())
}

/// A rerun trigger on `.git/<name>` as git resolves it (worktrees keep HEAD
/// and the index apart from the refs), if it exists: cargo reruns a build
/// script at every build for a path that does not.
fn rerun_on_git_path(dir: &Path, name: &str) {
    let path = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", name],
    );
    if let Some(path) = path.filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// Seconds since the Unix epoch: `SOURCE_DATE_EPOCH`, else now.
fn build_time() -> u64 {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            panic!("SOURCE_DATE_EPOCH={text:?} is not a whole number of seconds since 1970")
        }),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian,
/// Howard Hinnant's days-to-civil).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
