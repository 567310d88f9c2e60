//! A test's own directory: unique, removed when the test passes, kept
//! (and its path printed) when it fails, for inspection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory for one test, removed on drop — unless the test is
/// failing, in which case it is kept and its path printed.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `<tmp>/ally-<pid>-<n>-<name>`; `name` is shortened so that
    /// the control socket path stays well within `sun_path`.
    ///
    /// # Panics
    ///
    /// When the directory cannot be created.
    pub fn new(name: &str) -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let short: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(24)
            .collect();
        let path = std::env::temp_dir().join(format!("ally-{}-{n}-{short}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A string that occurs in the environment of every process the test's
    /// master started (and of the master itself): the path plus `/`.
    pub fn env_marker(&self) -> String {
        format!("{}/", self.path.display())
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test directory kept for inspection: {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_dirs_are_unique_and_removed() {
        let a = TestDir::new("same name");
        let b = TestDir::new("same name");
        assert_ne!(a.path(), b.path());
        let path = a.path().to_path_buf();
        assert!(path.is_dir());
        drop(a);
        assert!(!path.exists());
    }
}
