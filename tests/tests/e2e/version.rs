//! `--version` of both binaries: version, protocol (and handover state
//! version for the master), then `commit HASH[-dirty], built DATE`; the
//! date is `SOURCE_DATE_EPOCH`'s when that was set at build time, and the
//! commit `unknown` when the build saw no git repository. `ally-ctl
//! version` shows the running master's build too.

use std::path::Path;
use std::process::Command;

use ally_tests::bins::bins;
use ally_tests::fixture::Demo;
use ally_tests::upgrading::{Variant, variant, variant_ctl};

/// What `binary --version` prints, which must exit 0.
fn version(binary: &Path) -> String {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {out:?}", binary.display());
    stdout
}

/// The `commit ..., built ...` line's two values.
fn build_line(line: &str) -> (String, String) {
    let rest = line
        .strip_prefix("commit ")
        .unwrap_or_else(|| panic!("not a build line: {line:?}"));
    let (commit, date) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("no build date in {line:?}"));
    (commit.to_owned(), date.to_owned())
}

/// A commit as a build from git shows it: 12 hex digits, maybe `-dirty`.
fn is_git_commit(commit: &str) -> bool {
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc_date(date: &str) -> bool {
    let b = date.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn both_binaries_print_their_version_commit_and_build_date() {
    let version_of = env!("CARGO_PKG_VERSION");
    let protocol = ally_proto::PROTOCOL_VERSION;
    for (binary, first) in [
        (
            &bins().master,
            format!("ally-master {version_of} (protocol {protocol}, handover "),
        ),
        (
            &bins().ctl,
            format!("ally-ctl {version_of} (protocol {protocol})"),
        ),
    ] {
        let out = version(binary);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with(&first), "{out}");
        let (commit, date) = build_line(lines[1]);
        assert!(is_git_commit(&commit), "built from git: {out}");
        assert!(is_utc_date(&date), "{out}");
    }
}

#[test]
fn a_build_with_source_date_epoch_carries_that_date_and_one_without_git_says_unknown() {
    for binary in [
        variant(Variant::Reproducible),
        variant_ctl(Variant::Reproducible),
    ] {
        let out = version(&binary);
        let (commit, date) = build_line(out.lines().nth(1).unwrap_or_default());
        assert_eq!(date, "2023-11-14T22:13:20Z", "{out}");
        assert!(is_git_commit(&commit), "{out}");
    }
    for binary in [variant(Variant::NoGit), variant_ctl(Variant::NoGit)] {
        let out = version(&binary);
        let line = out.lines().nth(1).unwrap_or_default();
        assert_eq!(line, "commit unknown, built 2023-11-14T22:13:20Z", "{out}");
    }
}

#[test]
fn ally_ctl_version_shows_the_running_masters_build_too() {
    let demo = Demo::start("version_build");
    let out = demo.master.ctl_expect(&["version"], 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let own = version(&bins().ctl);
    let master = version(&bins().master);
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(format!("{}\n{}\n", lines[0], lines[1]), own, "{out}");
    assert!(
        lines[2].starts_with("ally-master ") && lines[2].ends_with(", running"),
        "{out}"
    );
    assert_eq!(lines[3], master.lines().nth(1).unwrap_or_default(), "{out}");
}
