//! The master's own log lines, on stderr (journald and container runtimes
//! add timestamps).

/// Writes one `ally-master: ...` line to stderr.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "ally-master: {}", format_args!($($arg)*));
    }};
}
