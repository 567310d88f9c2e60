//! One clock for everything a test records, so that the master's log and
//! the load's errors can be read side by side.

use std::sync::OnceLock;
use std::time::Instant;

/// Seconds since this process first asked for the time.
pub fn secs() -> f64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// `secs()` formatted as a fixed-width stamp, e.g. `  12.345`.
pub fn stamp() -> String {
    format!("{:8.3}", secs())
}

/// `line` without a leading [`stamp`].
pub fn unstamped(line: &str) -> &str {
    let t = line.trim_start();
    match t.split_once(' ') {
        Some((time, rest)) if time.parse::<f64>().is_ok() => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_come_off() {
        let line = format!("{} [web#1] demo: up", stamp());
        assert_eq!(unstamped(&line), "[web#1] demo: up");
        assert_eq!(unstamped("plain line"), "plain line");
    }
}
