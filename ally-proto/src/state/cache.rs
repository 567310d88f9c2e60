//! The cache: namespaces of key → bytes, each entry with an optional time
//! to live.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Limits;
use super::limits::MAX_LISTING_BYTES;
use crate::{ErrorCode, Failure};

/// When an entry expires, and the sequence number that makes its place in
/// the expiry index unique.
type Deadline = (Instant, u64);

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Deadline>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|(at, _)| now < at)
    }
}

#[derive(Debug, Clone, Default)]
struct Namespace {
    entries: BTreeMap<String, Entry>,
    /// How many of `entries` have a deadline: when none do, every entry is
    /// live and counting needs no scan.
    expiring: usize,
}

/// One app's cache: namespaces of key → bytes, each entry with an
/// optional time to live.
///
/// An entry is live until `set time + ttl`; from that instant on every call
/// treats it as absent. Expired entries still take room until they are
/// freed: lazily, by the call that next touches them, or by
/// [`Cache::sweep`], which frees them in expiry order from an index kept
/// next to the data (no timer per entry). A write that would pass a limit
/// first frees expired entries, so an expired entry never keeps a live one
/// out; if there is still no room the write fails and nothing changes.
///
/// Room is counted as entries over all namespaces and as bytes: the
/// namespace, key and value lengths of each entry. A namespace exists only
/// while it has entries.
#[derive(Debug, Clone)]
pub struct Cache {
    limits: Limits,
    spaces: BTreeMap<String, Namespace>,
    /// Every entry with a deadline, by deadline: `(namespace, key)`.
    expiry: BTreeMap<Deadline, (String, String)>,
    next_seq: u64,
    entries: usize,
    bytes: usize,
}

fn size(ns: &str, key: &str, value: &[u8]) -> usize {
    ns.len() + key.len() + value.len()
}

impl Cache {
    /// An empty cache bounded by `limits`.
    pub fn new(limits: Limits) -> Cache {
        Cache {
            limits,
            spaces: BTreeMap::new(),
            expiry: BTreeMap::new(),
            next_seq: 0,
            entries: 0,
            bytes: 0,
        }
    }

    /// Sets `key` in `ns` to `value`, replacing any entry and its time to
    /// live; with `ttl` the entry expires at `now + ttl`.
    ///
    /// # Errors
    ///
    /// - [`ErrorCode::BadRequest`] if `ns` or `key` is empty or longer than
    ///   [`Limits::max_name_len`], or `ttl` is not between 1ms and
    ///   [`Limits::max_ttl`].
    /// - [`ErrorCode::LimitExceeded`] if the entry does not fit in
    ///   [`Limits::max_entries`] or [`Limits::max_bytes`] even after freeing
    ///   expired entries. The cache's contents are unchanged.
    pub fn set(
        &mut self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), Failure> {
        self.limits.check_name("namespace", ns)?;
        self.limits.check_name("key", key)?;
        let at = match ttl {
            None => None,
            Some(ttl) => {
                self.limits.check_ttl(ttl)?;
                Some(now.checked_add(ttl).ok_or_else(|| {
                    Failure::new(ErrorCode::BadRequest, "ttl reaches past the clock's range")
                })?)
            }
        };
        let new = size(ns, key, &value);
        if new > self.limits.max_bytes {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "cache entry of {new} bytes (namespace, key and value) is larger than \
                     max_cache_bytes ({} bytes); store a smaller value or raise max_cache_bytes",
                    self.limits.max_bytes
                ),
            ));
        }
        // An expired entry under the same key is gone for good: free it now
        // so it neither counts as room to replace nor gets swept later.
        self.remove_if_expired(ns, key, now);
        self.make_room(ns, key, new, now)?;

        let expires = at.map(|at| {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.expiry
                .insert((at, seq), (ns.to_owned(), key.to_owned()));
            (at, seq)
        });
        let space = self.spaces.entry(ns.to_owned()).or_default();
        space.expiring += usize::from(expires.is_some());
        let old = space
            .entries
            .insert(key.to_owned(), Entry { value, expires });
        self.bytes += new;
        self.entries += 1;
        if let Some(old) = old {
            self.bytes -= size(ns, key, &old.value);
            self.entries -= 1;
            if let Some(deadline) = old.expires {
                space.expiring -= 1;
                self.expiry.remove(&deadline);
            }
        }
        Ok(())
    }

    /// Frees expired entries until an entry of `new` bytes under `ns`/`key`
    /// fits, replacing any live entry there.
    fn make_room(&mut self, ns: &str, key: &str, new: usize, now: Instant) -> Result<(), Failure> {
        loop {
            let old = self
                .spaces
                .get(ns)
                .and_then(|s| s.entries.get(key))
                .map(|e| size(ns, key, &e.value));
            let entries = self.entries + usize::from(old.is_none());
            let bytes = self.bytes - old.unwrap_or(0) + new;
            if entries <= self.limits.max_entries && bytes <= self.limits.max_bytes {
                return Ok(());
            }
            if self.sweep(now, 1) == 1 {
                continue;
            }
            let message = if entries > self.limits.max_entries {
                format!(
                    "cache is full: {} of max_cache_entries {} entries in use; delete or \
                     flush entries, give them a ttl, or raise max_cache_entries",
                    self.entries, self.limits.max_entries
                )
            } else {
                format!(
                    "cache is full: {} of max_cache_bytes {} bytes in use, {new} more needed; \
                     delete or flush entries, give them a ttl, or raise max_cache_bytes",
                    self.bytes, self.limits.max_bytes
                )
            };
            return Err(Failure::new(ErrorCode::LimitExceeded, message));
        }
    }

    /// The live value of `key` in `ns`.
    pub fn get(&mut self, ns: &str, key: &str, now: Instant) -> Option<Vec<u8>> {
        self.live(ns, key, now).map(|e| e.value.clone())
    }

    /// Deletes `key` from `ns`; whether a live entry was there.
    pub fn del(&mut self, ns: &str, key: &str, now: Instant) -> bool {
        self.remove(ns, key).is_some_and(|e| e.live(now))
    }

    /// Whether `key` has a live entry in `ns`.
    pub fn exists(&mut self, ns: &str, key: &str, now: Instant) -> bool {
        self.live(ns, key, now).is_some()
    }

    /// The live keys of `ns`, sorted.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::LimitExceeded`] when the keys take more than
    /// [`MAX_LISTING_BYTES`], found before more than that is copied.
    pub fn keys(&mut self, ns: &str, now: Instant) -> Result<Vec<String>, Failure> {
        self.purge(ns, now);
        let Some(space) = self.spaces.get(ns) else {
            return Ok(Vec::new());
        };
        let mut bytes = 0;
        let mut keys = Vec::new();
        for key in space.entries.keys() {
            bytes += key.len() + LISTING_OVERHEAD;
            if bytes > MAX_LISTING_BYTES {
                return Err(too_large_listing(ns, "keys"));
            }
            keys.push(key.clone());
        }
        Ok(keys)
    }

    /// How many live entries `ns` has. Takes time in the size of `ns` only
    /// when some of its entries have a time to live.
    pub fn count(&mut self, ns: &str, now: Instant) -> u64 {
        self.purge(ns, now);
        self.spaces.get(ns).map_or(0, |s| s.entries.len() as u64)
    }

    /// The live entries of `ns`, sorted by key.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::LimitExceeded`] when they take more than
    /// [`MAX_LISTING_BYTES`], found before more than that is copied.
    pub fn items(&mut self, ns: &str, now: Instant) -> Result<Vec<(String, Vec<u8>)>, Failure> {
        self.purge(ns, now);
        let Some(space) = self.spaces.get(ns) else {
            return Ok(Vec::new());
        };
        let mut bytes = 0;
        let mut items = Vec::new();
        for (key, entry) in &space.entries {
            bytes += key.len() + entry.value.len() + 2 * LISTING_OVERHEAD;
            if bytes > MAX_LISTING_BYTES {
                return Err(too_large_listing(ns, "items"));
            }
            items.push((key.clone(), entry.value.clone()));
        }
        Ok(items)
    }

    /// Removes every entry of `ns`; how many of them were live.
    pub fn flush(&mut self, ns: &str, now: Instant) -> u64 {
        let Some(space) = self.spaces.remove(ns) else {
            return 0;
        };
        let mut live = 0;
        for (key, entry) in space.entries {
            self.entries -= 1;
            self.bytes -= size(ns, &key, &entry.value);
            if let Some(deadline) = entry.expires {
                self.expiry.remove(&deadline);
            }
            live += u64::from(entry.live(now));
        }
        live
    }

    /// Frees up to `max` expired entries, earliest expiry first; how many
    /// it freed.
    pub fn sweep(&mut self, now: Instant, max: usize) -> usize {
        let mut freed = 0;
        while freed < max {
            let Some(entry) = self.expiry.first_entry() else {
                break;
            };
            let deadline = *entry.key();
            if deadline.0 > now {
                break;
            }
            let (ns, key) = entry.remove();
            // The index is kept exact, but a stale slot must never free a
            // newer value of the same key: only remove the entry it names.
            let current = self
                .spaces
                .get(&ns)
                .and_then(|s| s.entries.get(&key))
                .and_then(|e| e.expires);
            debug_assert_eq!(current, Some(deadline), "stale expiry index slot");
            if current == Some(deadline) {
                self.remove(&ns, &key);
                freed += 1;
            }
        }
        freed
    }

    /// The earliest deadline of an entry not yet freed, which may be past.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Entries held, including expired ones not yet freed.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Bytes held (namespaces, keys and values), including expired entries
    /// not yet freed.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry under `ns`/`key` if live; frees it if expired.
    fn live(&mut self, ns: &str, key: &str, now: Instant) -> Option<&Entry> {
        self.remove_if_expired(ns, key, now);
        self.spaces.get(ns)?.entries.get(key)
    }

    fn remove_if_expired(&mut self, ns: &str, key: &str, now: Instant) {
        let expired = self
            .spaces
            .get(ns)
            .and_then(|s| s.entries.get(key))
            .is_some_and(|e| !e.live(now));
        if expired {
            self.remove(ns, key);
        }
    }

    /// Frees the expired entries of `ns`.
    fn purge(&mut self, ns: &str, now: Instant) {
        let Some(space) = self.spaces.get(ns) else {
            return;
        };
        if space.expiring == 0 {
            return;
        }
        let expired: Vec<String> = space
            .entries
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(ns, &key);
        }
    }

    /// Removes the entry under `ns`/`key`, live or not, keeping the
    /// counters and the expiry index exact and dropping an emptied
    /// namespace.
    fn remove(&mut self, ns: &str, key: &str) -> Option<Entry> {
        let space = self.spaces.get_mut(ns)?;
        let entry = space.entries.remove(key)?;
        self.entries -= 1;
        self.bytes -= size(ns, key, &entry.value);
        if let Some(deadline) = entry.expires {
            space.expiring -= 1;
            self.expiry.remove(&deadline);
        }
        if space.entries.is_empty() {
            self.spaces.remove(ns);
        }
        Some(entry)
    }

    /// Every entry as plain data, with the time to live left after `now`
    /// (for the master's handover; see [`super::snapshot`]).
    pub(super) fn snapshot(&self, now: Instant) -> Vec<super::snapshot::EntrySnapshot> {
        let mut out = Vec::with_capacity(self.entries);
        for (ns, space) in &self.spaces {
            for (key, entry) in &space.entries {
                let ttl_left_ms = entry.expires.map(|(at, _)| {
                    let left = at.saturating_duration_since(now).as_millis();
                    u64::try_from(left).unwrap_or(u64::MAX)
                });
                out.push(super::snapshot::EntrySnapshot {
                    ns: ns.clone(),
                    key: key.clone(),
                    value: entry.value.clone(),
                    ttl_left_ms,
                });
            }
        }
        out
    }

    /// Fills an empty cache with `entries`, their deadlines counted from
    /// `now`.
    pub(super) fn restore(
        &mut self,
        entries: Vec<super::snapshot::EntrySnapshot>,
        now: Instant,
    ) -> Result<(), super::snapshot::RestoreError> {
        use super::snapshot::RestoreError;
        for e in entries {
            if e.ns.is_empty() || e.key.is_empty() {
                return Err(RestoreError("a cache entry with an empty name".into()));
            }
            let expires = e.ttl_left_ms.map(|ms| {
                let at = now.checked_add(Duration::from_millis(ms)).unwrap_or(now);
                let seq = self.next_seq;
                self.next_seq += 1;
                (at, seq)
            });
            let bytes = size(&e.ns, &e.key, &e.value);
            let space = self.spaces.entry(e.ns.clone()).or_default();
            if space.entries.contains_key(&e.key) {
                return Err(RestoreError(format!(
                    "cache entry {:?}/{:?} twice",
                    e.ns, e.key
                )));
            }
            if let Some(deadline) = expires {
                space.expiring += 1;
                self.expiry.insert(deadline, (e.ns.clone(), e.key.clone()));
            }
            space.entries.insert(
                e.key,
                Entry {
                    value: e.value,
                    expires,
                },
            );
            self.entries += 1;
            self.bytes += bytes;
        }
        Ok(())
    }

    /// Panics unless the counters, the expiry index and the namespaces
    /// agree with the entries.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut entries = 0;
        let mut bytes = 0;
        let mut deadlines = 0;
        for (ns, space) in &self.spaces {
            assert!(!space.entries.is_empty(), "empty namespace {ns:?} kept");
            let mut expiring = 0;
            for (key, entry) in &space.entries {
                entries += 1;
                bytes += size(ns, key, &entry.value);
                if let Some(deadline) = entry.expires {
                    expiring += 1;
                    deadlines += 1;
                    assert_eq!(
                        self.expiry.get(&deadline),
                        Some(&(ns.clone(), key.clone())),
                        "entry {ns:?}/{key:?} missing from the expiry index"
                    );
                }
            }
            assert_eq!(space.expiring, expiring, "expiring count of {ns:?}");
        }
        assert_eq!(self.entries, entries, "entry count");
        assert_eq!(self.bytes, bytes, "byte count");
        assert_eq!(self.expiry.len(), deadlines, "stale expiry index slots");
    }
}

/// Bytes of framing per key or value in a listing: its length prefix.
const LISTING_OVERHEAD: usize = 5;

/// The refusal of a listing of `ns` too large for one answer.
fn too_large_listing(ns: &str, what: &str) -> Failure {
    Failure::new(
        ErrorCode::LimitExceeded,
        format!(
            "the {what} of cache namespace {ns:?} take more than {MAX_LISTING_BYTES} bytes, \
             more than one answer may carry; count them, read them by key, or keep fewer \
             in one namespace"
        ),
    )
}
