//! One app's shared state as plain data, for the master's in-place
//! upgrade: what [`Store::snapshot`] writes and [`Store::restore`] reads.
//!
//! These types are separate from the live ones (whose indexes and counters
//! are rebuilt, not carried) and only grow by appending fields under a new
//! handover version of the master. Deadlines travel as time remaining from
//! the moment of the snapshot, since an `Instant` means nothing to another
//! process image.

use serde::{Deserialize, Serialize};

use super::{Limits, Owner, Store, Ticket};
use crate::LockMode;

/// One cache entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EntrySnapshot {
    /// Its namespace.
    pub ns: String,
    /// Its key.
    pub key: String,
    /// Its value.
    #[serde(with = "crate::bytes")]
    pub value: Vec<u8>,
    /// Milliseconds it had left to live at the snapshot (0: expired), if it
    /// has a time to live.
    pub ttl_left_ms: Option<u64>,
}

/// One lock in use.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LockSnapshot {
    /// Its name.
    pub name: String,
    /// Who holds it exclusively.
    pub exclusive: Option<Owner>,
    /// Shared holds, per owner.
    pub shared: Vec<(Owner, u64)>,
    /// Queued requests, in order.
    pub queue: Vec<(Ticket, Owner, LockMode)>,
}

/// One app's shared state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreSnapshot {
    /// Every cache entry, live or expired but not yet freed.
    pub entries: Vec<EntrySnapshot>,
    /// Every atomic that is not 0.
    pub atomics: Vec<(String, i64)>,
    /// Every lock in use.
    pub locks: Vec<LockSnapshot>,
    /// The next ticket the locker hands out.
    pub next_ticket: Ticket,
}

/// Why a snapshot cannot be restored: it contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreError(pub String);

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shared state: {}", self.0)
    }
}

impl std::error::Error for RestoreError {}

impl Store {
    /// The state as plain data; deadlines as time left after `now`.
    pub fn snapshot(&self, now: std::time::Instant) -> StoreSnapshot {
        let (locks, next_ticket) = self.locker.snapshot();
        StoreSnapshot {
            entries: self.cache.snapshot(now),
            atomics: self.atomics.snapshot(),
            locks,
            next_ticket,
        }
    }

    /// The state `snap` describes, bounded by `limits`, with deadlines
    /// counted from `now`. Limits are not enforced on what is restored (it
    /// was within them when taken, under the same config).
    ///
    /// # Errors
    ///
    /// If the snapshot contradicts itself: an empty name, a ticket queued
    /// twice or not below `next_ticket`, a lock exclusive and shared at
    /// once, a cache entry twice.
    pub fn restore(
        limits: Limits,
        snap: StoreSnapshot,
        now: std::time::Instant,
    ) -> Result<Store, RestoreError> {
        let mut store = Store::new(limits);
        store.cache.restore(snap.entries, now)?;
        store.atomics.restore(snap.atomics)?;
        store.locker.restore(snap.locks, snap.next_ticket)?;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{InstanceRequest, InstanceResponse, LockState};

    fn lock(name: &str, mode: LockMode, timeout_ms: Option<u64>) -> InstanceRequest {
        InstanceRequest::Lock {
            name: name.into(),
            mode,
            timeout_ms,
        }
    }

    #[test]
    fn a_store_round_trips_with_its_ttls_holds_and_queue() {
        let t0 = Instant::now();
        let mut store = Store::new(Limits::default());
        let set = |key: &str, ttl_ms| InstanceRequest::CacheSet {
            ns: "s".into(),
            key: key.into(),
            value: key.as_bytes().to_vec(),
            ttl_ms,
        };
        store.handle(1, &set("forever", None), t0).unwrap();
        store.handle(1, &set("soon", Some(1000)), t0).unwrap();
        let add = InstanceRequest::AtomicAdd {
            name: "hits".into(),
            delta: 42,
        };
        store.handle(1, &add, t0).unwrap();
        let held = store.handle(1, &lock("job", LockMode::Exclusive, None), t0);
        assert_eq!(held.unwrap().reply, Some(InstanceResponse::Bool(true)));
        let queued = store
            .handle(2, &lock("job", LockMode::Shared, None), t0)
            .unwrap()
            .queued
            .unwrap();

        let snap = store.snapshot(t0 + Duration::from_millis(400));
        let bytes = postcard::to_stdvec(&snap).unwrap();
        let back: StoreSnapshot = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, snap);
        let t1 = Instant::now() + Duration::from_secs(100);
        let mut restored = Store::restore(Limits::default(), back, t1).unwrap();
        restored.cache.check_invariants();
        restored.locker.check_invariants();
        // The entry with 600ms left still has them, counted from t1.
        let get = |key: &str| InstanceRequest::CacheGet {
            ns: "s".into(),
            key: key.into(),
        };
        let at = |ms| t1 + Duration::from_millis(ms);
        let value = |s: &mut Store, key, ms| s.handle(1, &get(key), at(ms)).unwrap().reply;
        assert_eq!(
            value(&mut restored, "soon", 599),
            Some(InstanceResponse::Value(Some(b"soon".to_vec())))
        );
        assert_eq!(
            value(&mut restored, "forever", 599),
            Some(InstanceResponse::Value(Some(b"forever".to_vec())))
        );
        assert_eq!(
            value(&mut restored, "soon", 600),
            Some(InstanceResponse::Value(None))
        );
        assert_eq!(restored.atomics.load("hits"), 42);
        assert_eq!(
            restored.locker.state("job"),
            LockState {
                exclusive: true,
                shared: 0,
                waiting_exclusive: 0,
                waiting_shared: 1,
            }
        );
        // Unlocking lets the queued ticket in, and new tickets do not reuse it.
        let unlock = InstanceRequest::Unlock {
            name: "job".into(),
            mode: LockMode::Exclusive,
        };
        let handled = restored.handle(1, &unlock, t1).unwrap();
        assert_eq!(handled.granted, vec![queued]);
        let next = restored
            .handle(3, &lock("job", LockMode::Exclusive, None), t1)
            .unwrap()
            .queued
            .unwrap();
        assert!(next > queued);
        restored.locker.check_invariants();
    }

    #[test]
    fn a_contradictory_snapshot_is_refused() {
        let now = Instant::now();
        let both = StoreSnapshot {
            locks: vec![LockSnapshot {
                name: "x".into(),
                exclusive: Some(1),
                shared: vec![(2, 1)],
                queue: Vec::new(),
            }],
            next_ticket: 1,
            ..StoreSnapshot::default()
        };
        assert!(Store::restore(Limits::default(), both, now).is_err());
        let ticket_ahead = StoreSnapshot {
            locks: vec![LockSnapshot {
                name: "x".into(),
                exclusive: Some(1),
                shared: Vec::new(),
                queue: vec![(5, 2, LockMode::Shared)],
            }],
            next_ticket: 5,
            ..StoreSnapshot::default()
        };
        assert!(Store::restore(Limits::default(), ticket_ahead, now).is_err());
        let twice = StoreSnapshot {
            entries: vec![
                EntrySnapshot {
                    ns: "n".into(),
                    key: "k".into(),
                    value: Vec::new(),
                    ttl_left_ms: None,
                };
                2
            ],
            ..StoreSnapshot::default()
        };
        assert!(Store::restore(Limits::default(), twice, now).is_err());
    }
}
