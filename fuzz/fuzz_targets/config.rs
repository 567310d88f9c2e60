//! The master's config parser on arbitrary UTF-8 text: `Ok` or `Err`,
//! never a panic; the same text parses the same way twice, and an error
//! points inside the text.
//!
//! The parser lives in the `ally-master` binary, which a fuzz target
//! cannot link, so its module is compiled in here.
#![no_main]

// A `#[path]` on an inline module: `config.rs` is then found in that
// directory and its own submodules in `config/`, as in the master.
#[path = "../../ally-master/src"]
#[allow(dead_code, unfulfilled_lint_expectations)]
mod master {
    pub mod config;
}

use master::config;

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = Path::new("/etc/ally/ally.toml");
    let first = config::parse(text, path);
    let second = config::parse(text, path);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(!a.apps.is_empty());
            assert_eq!(a.path, path);
        }
        (Err(config::ConfigError::Invalid { line, column, message, .. }), Err(b)) => {
            assert_eq!(first.as_ref().unwrap_err().to_string(), b.to_string());
            let lines = text.split('\n').count();
            assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
            let width = text.split('\n').nth(line - 1).unwrap().chars().count();
            assert!(*column >= 1 && *column <= width + 1, "column {column} of {width}");
            assert!(!message.is_empty());
        }
        (a, b) => panic!("parsed twice: {a:?}, then {b:?}"),
    }
});
