//! Shared state: the pure logic behind the cache, atomic and lock requests.
//!
//! One app's state is a [`Store`]: a [`Cache`], [`Atomics`] and a
//! [`Locker`]. The master keeps one per app, fed by requests from all of
//! the app's instances; the `ally` library keeps one in-process when it
//! runs without a master. Both drive it through [`Store::handle`], so the
//! answers are the same either way.
//!
//! Nothing here does I/O, starts threads or reads the clock: the time is an
//! argument (`now`), and so are the decisions that need one — a lock wait's
//! timeout is the caller's to keep, by [withdrawing](Locker::withdraw) the
//! ticket when it passes.
//!
//! Conventions shared by every part:
//!
//! - Names (namespaces, keys, atomic and lock names) are 1 to
//!   [`Limits::max_name_len`] bytes. A write with another name fails with
//!   [`ErrorCode::BadRequest`](crate::ErrorCode::BadRequest); a read finds
//!   nothing under it, as under any name never written.
//! - Every limit is per app and counts only what is in use; past it a
//!   write fails with [`ErrorCode::LimitExceeded`](crate::ErrorCode::LimitExceeded),
//!   and nothing is evicted or changed.
//!
//! In short, each part:
//!
//! - [`Cache`]: an expired entry is invisible from its deadline on, and
//!   freed when next touched or by [`Cache::sweep`]; expired entries never
//!   keep a live one out.
//! - [`Atomics`]: `i64`s that never wrap (an overflow is an error and leaves
//!   the value); an atomic at 0 takes no room.
//! - [`Locker`]: one FIFO queue per lock. A request is granted at once only
//!   if compatible with the holds and nobody waits, so a waiting writer
//!   holds back later readers; consecutive readers at the head are let in
//!   together. Holds belong to an [`Owner`] and are not reentrant: asking
//!   again for a lock one holds waits behind one's own hold.

mod atomic;
mod cache;
mod limits;
mod locker;
mod snapshot;

use std::time::{Duration, Instant};

pub use atomic::Atomics;
pub use cache::Cache;
pub use limits::{
    DEFAULT_MAX_ATOMICS, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_LOCKS,
    DEFAULT_MAX_NAME_LEN, DEFAULT_MAX_TTL, Limits, MAX_LISTING_BYTES, MAX_WAITS_PER_OWNER, MIN_TTL,
};
pub use locker::{Acquire, Locker, Owner, Ticket};
pub use snapshot::{EntrySnapshot, LockSnapshot, RestoreError, StoreSnapshot};

use crate::{InstanceRequest, InstanceResponse};

/// One app's shared state.
#[derive(Debug, Clone)]
pub struct Store {
    /// The cache.
    pub cache: Cache,
    /// The atomics.
    pub atomics: Atomics,
    /// The locks.
    pub locker: Locker,
}

/// What to do after [`Store::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The answer to the request; `None` only when the request is a lock
    /// request that waits (see [`queued`](Handled::queued)).
    pub reply: Option<InstanceResponse>,
    /// The waiting lock request's ticket. The caller answers
    /// [`Bool(true)`](InstanceResponse::Bool) when a later call grants the
    /// ticket, or, when the request's timeout passes first,
    /// [withdraws](Locker::withdraw) it and answers `Bool(false)`.
    pub queued: Option<Ticket>,
    /// Other waiting lock requests this request let in; the caller answers
    /// each `Bool(true)`.
    pub granted: Vec<Ticket>,
}

impl Handled {
    fn reply(reply: InstanceResponse) -> Handled {
        Handled {
            reply: Some(reply),
            queued: None,
            granted: Vec::new(),
        }
    }
}

impl Store {
    /// Empty state bounded by `limits`.
    pub fn new(limits: Limits) -> Store {
        Store {
            cache: Cache::new(limits),
            atomics: Atomics::new(limits),
            locker: Locker::new(limits),
        }
    }

    /// Applies a state request ([`CacheSet`](InstanceRequest::CacheSet)
    /// through [`LockQueue`](InstanceRequest::LockQueue)) for `owner` at
    /// `now`; `None` for requests that are not about shared state
    /// ([`Listen`](InstanceRequest::Listen), [`Ready`](InstanceRequest::Ready),
    /// ...).
    ///
    /// A failure is answered as [`InstanceResponse::Error`]. A
    /// [`Lock`](InstanceRequest::Lock) with `timeout_ms: Some(0)` only
    /// tries (`Bool(false)` if busy); any other waits, and the caller keeps
    /// its deadline.
    pub fn handle(&mut self, owner: Owner, req: &InstanceRequest, now: Instant) -> Option<Handled> {
        use InstanceRequest as Req;
        use InstanceResponse as Resp;

        let done = |r: Result<(), _>| r.map(|()| Resp::Done);
        let answer = match req {
            Req::CacheSet {
                ns,
                key,
                value,
                ttl_ms,
            } => done(self.cache.set(
                ns,
                key,
                value.clone(),
                ttl_ms.map(Duration::from_millis),
                now,
            )),
            Req::CacheGet { ns, key } => Ok(Resp::Value(self.cache.get(ns, key, now))),
            Req::CacheDel { ns, key } => Ok(Resp::Bool(self.cache.del(ns, key, now))),
            Req::CacheExists { ns, key } => Ok(Resp::Bool(self.cache.exists(ns, key, now))),
            Req::CacheKeys { ns } => self.cache.keys(ns, now).map(Resp::Keys),
            Req::CacheCount { ns } => Ok(Resp::Count(self.cache.count(ns, now))),
            Req::CacheItems { ns } => self.cache.items(ns, now).map(Resp::Items),
            Req::CacheFlush { ns } => Ok(Resp::Count(self.cache.flush(ns, now))),
            Req::AtomicAdd { name, delta } => self.atomics.add(name, *delta).map(Resp::Int),
            Req::AtomicLoad { name } => Ok(Resp::Int(self.atomics.load(name))),
            Req::AtomicStore { name, value } => done(self.atomics.store(name, *value)),
            Req::AtomicSwap { name, value } => self.atomics.swap(name, *value).map(Resp::Int),
            Req::AtomicCas { name, current, new } => {
                self.atomics.cas(name, *current, *new).map(Resp::Bool)
            }
            Req::Lock {
                name,
                mode,
                timeout_ms,
            } => {
                let wait = *timeout_ms != Some(0);
                return Some(match self.locker.lock(name, owner, *mode, wait) {
                    Ok(Acquire::Granted) => Handled::reply(Resp::Bool(true)),
                    Ok(Acquire::Busy) => Handled::reply(Resp::Bool(false)),
                    Ok(Acquire::Queued(ticket)) => Handled {
                        reply: None,
                        queued: Some(ticket),
                        granted: Vec::new(),
                    },
                    Err(failure) => Handled::reply(Resp::Error(failure)),
                });
            }
            Req::Unlock { name, mode } => {
                return Some(match self.locker.unlock(name, owner, *mode) {
                    Ok(granted) => Handled {
                        reply: Some(Resp::Done),
                        queued: None,
                        granted,
                    },
                    Err(failure) => Handled::reply(Resp::Error(failure)),
                });
            }
            Req::LockQueue { name } => Ok(Resp::LockState(self.locker.state(name))),
            Req::Listen(_)
            | Req::Unlisten(_)
            | Req::Ready
            | Req::Report(_)
            | Req::Reload
            | Req::Info
            | Req::Connect => return None,
        };
        Some(Handled::reply(answer.unwrap_or_else(Resp::Error)))
    }
}

#[cfg(test)]
mod atomic_tests;
#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod locker_tests;
#[cfg(test)]
mod tests;
