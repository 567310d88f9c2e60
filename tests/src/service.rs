//! The service the master runs: a shell wrapper around the demo binary.
//!
//! The app's `command` in the config is `service.sh`, which `exec`s the demo
//! with the flags the test chose. Replacing the wrapper atomically (write a
//! temporary file, then `rename`) is how a test "upgrades the binary on disk"
//! before a reload: the master re-reads the command from disk for every new
//! instance, exactly as it would pick up a new release.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// An executable wrapper script that runs a program with chosen flags.
#[derive(Debug)]
pub struct Service {
    path: PathBuf,
    program: PathBuf,
}

impl Service {
    /// Writes `<dir>/<name>.sh` running `program` with `flags`.
    ///
    /// # Panics
    ///
    /// When the file cannot be written.
    pub fn new(dir: &Path, name: &str, program: &Path, flags: &[&str]) -> Service {
        let service = Service {
            path: dir.join(format!("{name}.sh")),
            program: program.to_path_buf(),
        };
        service.set_flags(flags);
        service
    }

    /// The script's path: what goes in the app's `command`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Atomically replaces the script so that the next instance runs the
    /// program with `flags` (instances already running are unaffected).
    ///
    /// # Panics
    ///
    /// When the file cannot be written or renamed.
    pub fn set_flags(&self, flags: &[&str]) {
        self.write(&script(&self.program, flags, None));
    }

    /// Like [`set_flags`](Self::set_flags), for a version that takes
    /// `startup` (whole milliseconds) before it even starts the program: a
    /// slow start that keeps a reload in progress for that long.
    pub fn set_flags_slow(&self, flags: &[&str], startup: Duration) {
        self.write(&script(&self.program, flags, Some(startup)));
    }

    fn write(&self, script: &str) {
        crate::executable::install_text(script, &self.path, 0o755);
    }
}

/// The wrapper's text: `exec PROGRAM FLAGS... "$@"`, every word quoted,
/// after a `sleep` if the start is to be slow.
fn script(program: &Path, flags: &[&str], startup: Option<Duration>) -> String {
    let mut line = format!("exec {}", quote(&program.to_string_lossy()));
    for flag in flags {
        line.push(' ');
        line.push_str(&quote(flag));
    }
    let sleep = startup
        .map(|d| format!("sleep {}.{:03}\n", d.as_secs(), d.subsec_millis()))
        .unwrap_or_default();
    format!("#!/bin/sh\n{sleep}{line} \"$@\"\n")
}

/// Single-quotes `word` for the shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_execs_the_program_with_quoted_flags() {
        assert_eq!(
            script(
                Path::new("/x/demo"),
                &["--addr", "127.0.0.1:0", "it's"],
                None
            ),
            "#!/bin/sh\nexec '/x/demo' '--addr' '127.0.0.1:0' 'it'\\''s' \"$@\"\n"
        );
        assert_eq!(
            script(Path::new("/x/demo"), &[], Some(Duration::from_millis(1500))),
            "#!/bin/sh\nsleep 1.500\nexec '/x/demo' \"$@\"\n"
        );
    }

    #[test]
    fn swapped_script_runs_the_new_flags() {
        let dir = std::env::temp_dir().join(format!("ally-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svc = Service::new(&dir, "echo", Path::new("/bin/echo"), &["one"]);
        let run = || {
            let out = std::process::Command::new(svc.path())
                .arg("x")
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run(), "one x\n");
        svc.set_flags(&["two", "a b"]);
        assert_eq!(run(), "two a b x\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
