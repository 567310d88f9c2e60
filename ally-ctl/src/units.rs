//! Durations, CPU time and sizes, short enough for a table column.

/// A duration in seconds, short: `3s`, `5m12s`, `2h03m`, `4d07h`.
pub fn duration(secs: u64) -> String {
    let (m, s) = (secs / 60, secs % 60);
    let (h, m) = (m / 60, m % 60);
    let (d, h) = (h / 24, h % 24);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// CPU time in milliseconds: tenths of a second under a minute (`0.0s`,
/// `1.2s`, `59.9s`), then as [`duration`] (`5m12s`).
pub fn cpu(ms: u64) -> String {
    if ms < 60_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else {
        duration(ms / 1000)
    }
}

/// A size in bytes, in powers of 1024: `512B`, `4.0K`, `12.3M`, `123M`,
/// `1.5G`; one decimal below 100 of a unit.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    // Tenths of the unit, computed in integers so that nothing is rounded
    // up past what the process holds.
    let mut unit = 0;
    let mut scaled = u128::from(bytes) * 10 / 1024;
    while scaled >= 1024 * 10 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    if scaled < 1000 {
        format!("{}.{}{}", scaled / 10, scaled % 10, UNITS[unit])
    } else {
        format!("{}{}", scaled / 10, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(3), "3s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m00s");
        assert_eq!(duration(312), "5m12s");
        assert_eq!(duration(2 * 3600 + 3 * 60 + 59), "2h03m");
        assert_eq!(duration(4 * 86400 + 7 * 3600), "4d07h");
    }

    #[test]
    fn cpu_times() {
        assert_eq!(cpu(0), "0.0s");
        assert_eq!(cpu(99), "0.0s");
        assert_eq!(cpu(1_250), "1.2s");
        assert_eq!(cpu(59_999), "59.9s");
        assert_eq!(cpu(60_000), "1m00s");
        assert_eq!(cpu(312_900), "5m12s");
    }

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(1023), "1023B");
        assert_eq!(size(1024), "1.0K");
        assert_eq!(size(12_900_000), "12.3M");
        assert_eq!(size(99 * 1024 * 1024 + 1024 * 1023), "99.9M");
        assert_eq!(size(100 * 1024 * 1024), "100M");
        assert_eq!(size(1023 * 1024 * 1024), "1023M");
        assert_eq!(size(1536 * 1024 * 1024), "1.5G");
        assert_eq!(size(u64::MAX), "15.9E");
    }
}
