//! `include` patterns: a path whose last component may hold `*` (any run of
//! characters, possibly empty) and `?` (one character), expanded against a
//! directory listing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::resolve;

/// Whether `pattern` has a wildcard, and so may match no file.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The files that `pattern`, relative to `dir`, matches, sorted by name.
///
/// Only files (after following symlinks) match. A name starting with `.`
/// matches only a pattern whose last component starts with `.`, as in a
/// shell, so editor backups and lock files stay out. A directory that does
/// not exist matches nothing.
///
/// # Errors
///
/// The error from listing the pattern's directory, other than its absence.
pub fn expand(dir: &Path, pattern: &str) -> io::Result<Vec<PathBuf>> {
    let (parent, last) = match pattern.rsplit_once('/') {
        // "/x*" lists the root.
        Some(("", last)) => ("/", last),
        Some(split) => split,
        None => (".", pattern),
    };
    let parent = resolve(dir, Path::new(parent));
    let entries = match fs::read_dir(&parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') && !last.starts_with('.') {
            continue;
        }
        if matches(last, &name) && fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names.into_iter().map(|name| parent.join(name)).collect())
}

/// Whether `name` matches `pattern`, where `*` matches any run of
/// characters and `?` exactly one.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // After a `*`: the pattern position past it, and the name position it
    // is tried against next. Only the last `*` needs retrying.
    let mut retry = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                p += 1;
                retry = Some((p, n));
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match retry {
                Some((rp, rn)) => {
                    // Let the `*` swallow one more character.
                    p = rp;
                    n = rn + 1;
                    retry = Some((rp, rn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}
