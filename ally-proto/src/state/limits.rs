//! Per-app bounds on shared state, and the checks every write shares.
//!
//! Every limit is a named constant with its default; [`Limits`] carries an
//! app's actual values. Past a limit a write fails with
//! [`ErrorCode::LimitExceeded`] and a message naming the limit, the usage and
//! what to do; nothing is evicted.

use std::time::Duration;

use crate::{ErrorCode, Failure};

/// Default [`Limits::max_entries`]: cache entries over all namespaces.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Default [`Limits::max_bytes`]: 64 MiB of namespaces, keys and values.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// Default [`Limits::max_name_len`]: the longest namespace, key, atomic or
/// lock name, in bytes.
pub const DEFAULT_MAX_NAME_LEN: usize = 1024;

/// Default [`Limits::max_ttl`]: 365 days.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The shortest time to live a cache entry may have: the wire carries
/// milliseconds.
pub const MIN_TTL: Duration = Duration::from_millis(1);

/// Default [`Limits::max_atomics`]: atomics with a value other than 0.
pub const DEFAULT_MAX_ATOMICS: usize = 10_000;

/// Default [`Limits::max_locks`]: lock names with holders or waiters.
pub const DEFAULT_MAX_LOCKS: usize = 10_000;

/// Most lock requests one owner (an instance) may have queued at once.
/// The library waits on at most 12; past this a further wait is refused
/// with [`ErrorCode::LimitExceeded`], so no one can make a lock's queue,
/// and the work of withdrawing from it, grow without bound.
pub const MAX_WAITS_PER_OWNER: usize = 256;

/// Most bytes of keys and values one `keys` or `items` answer may carry:
/// what fits in a frame. A namespace holding more is refused at once, so
/// no request costs more than the answer it could send.
pub const MAX_LISTING_BYTES: usize = crate::frame::MAX_FRAME_LEN - 4096;

/// Bounds on one app's shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cache entries over all namespaces (config `max_cache_entries`).
    pub max_entries: usize,
    /// Cache bytes, counting the namespace, key and value of each entry
    /// (config `max_cache_bytes`).
    pub max_bytes: usize,
    /// The longest namespace, key, atomic or lock name, in bytes. Names are
    /// never empty.
    pub max_name_len: usize,
    /// The longest time to live of a cache entry.
    pub max_ttl: Duration,
    /// Atomics with a value other than 0 (config `max_atomics`); an atomic
    /// at 0 takes no room.
    pub max_atomics: usize,
    /// Lock names with holders or waiters (config `max_locks`); a free lock
    /// with nobody waiting takes no room.
    pub max_locks: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_name_len: DEFAULT_MAX_NAME_LEN,
            max_ttl: DEFAULT_MAX_TTL,
            max_atomics: DEFAULT_MAX_ATOMICS,
            max_locks: DEFAULT_MAX_LOCKS,
        }
    }
}

impl Limits {
    /// Whether `name` is a valid name: not empty and at most
    /// [`max_name_len`](Limits::max_name_len) bytes.
    pub fn name_ok(&self, name: &str) -> bool {
        !name.is_empty() && name.len() <= self.max_name_len
    }

    /// Checks a name; `what` says what it names ("namespace", "lock name").
    ///
    /// # Errors
    ///
    /// [`ErrorCode::BadRequest`] if `name` is empty or too long.
    pub fn check_name(&self, what: &str, name: &str) -> Result<(), Failure> {
        if name.is_empty() {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("{what} must not be empty"),
            ));
        }
        if name.len() > self.max_name_len {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "{what} of {} bytes is longer than the {}-byte limit; use a shorter name",
                    name.len(),
                    self.max_name_len
                ),
            ));
        }
        Ok(())
    }

    /// Checks a cache entry's time to live.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::BadRequest`] unless `ttl` is between [`MIN_TTL`] and
    /// [`max_ttl`](Limits::max_ttl).
    pub fn check_ttl(&self, ttl: Duration) -> Result<(), Failure> {
        if ttl < MIN_TTL || ttl > self.max_ttl {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "ttl must be between 1ms and {} (got {}); omit it to keep the entry until deleted",
                    human(self.max_ttl),
                    human(ttl)
                ),
            ));
        }
        Ok(())
    }
}

/// A duration in the largest whole unit that states it exactly: `365 days`,
/// `2h`, `90s`, `1500ms`; below a millisecond, microseconds or nanoseconds.
pub(crate) fn human(d: Duration) -> String {
    const DAY: u128 = 24 * 60 * 60 * 1000;
    let nanos = d.as_nanos();
    if !nanos.is_multiple_of(1_000_000) {
        return if nanos.is_multiple_of(1000) {
            format!("{}µs", nanos / 1000)
        } else {
            format!("{nanos}ns")
        };
    }
    let ms = nanos / 1_000_000;
    match ms {
        0 => "0ms".to_owned(),
        1 => "1ms".to_owned(),
        _ if ms.is_multiple_of(DAY) => {
            let days = ms / DAY;
            format!("{days} day{}", if days == 1 { "" } else { "s" })
        }
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let l = Limits::default();
        assert_eq!(l.max_entries, 100_000);
        assert_eq!(l.max_bytes, 64 * 1024 * 1024);
        assert_eq!(l.max_name_len, 1024);
        assert_eq!(l.max_ttl, Duration::from_secs(365 * 86_400));
        assert_eq!(l.max_atomics, 10_000);
        assert_eq!(l.max_locks, 10_000);
    }

    #[test]
    fn names_must_be_non_empty_and_short_enough() {
        let l = Limits {
            max_name_len: 3,
            ..Limits::default()
        };
        assert!(l.check_name("key", "abc").is_ok());
        let e = l.check_name("key", "").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.message, "key must not be empty");
        let e = l.check_name("key", "abcd").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("4 bytes"), "{e}");
        assert!(e.message.contains("3-byte limit"), "{e}");
        assert!(l.name_ok("a") && !l.name_ok("") && !l.name_ok("abcd"));
    }

    #[test]
    fn ttl_bounds() {
        let l = Limits::default();
        assert!(l.check_ttl(Duration::from_millis(1)).is_ok());
        assert!(l.check_ttl(DEFAULT_MAX_TTL).is_ok());
        for bad in [
            Duration::ZERO,
            Duration::from_micros(999),
            DEFAULT_MAX_TTL + Duration::from_millis(1),
        ] {
            let e = l.check_ttl(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(
                e.message
                    .starts_with("ttl must be between 1ms and 365 days"),
                "{e}"
            );
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::ZERO), "0ms");
        assert_eq!(human(Duration::from_millis(1)), "1ms");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(86_400)), "1 day");
        assert_eq!(human(DEFAULT_MAX_TTL), "365 days");
        assert_eq!(human(Duration::from_micros(5)), "5µs");
        assert_eq!(human(Duration::from_nanos(5)), "5ns");
    }
}
