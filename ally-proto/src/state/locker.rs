//! The locker: named read/write locks as a pure queue state machine. The
//! policy (FIFO, writers not starved, no reentrancy) is documented on
//! [`Locker`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::Limits;
use super::limits::MAX_WAITS_PER_OWNER;
use crate::{ErrorCode, Failure, LockMode, LockState};

/// Who holds a lock: the master uses the instance id, simulate mode a
/// single owner for the process.
pub type Owner = u64;

/// A queued lock request, unique for the [`Locker`]'s life.
pub type Ticket = u64;

/// The outcome of [`Locker::lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The lock is held now.
    Granted,
    /// The request waits in the lock's queue. Its ticket is returned by a
    /// later call when granted, unless it is
    /// [withdrawn](Locker::withdraw) first.
    Queued(Ticket),
    /// The lock cannot be granted now and the caller does not wait.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: Ticket,
    owner: Owner,
    mode: LockMode,
}

#[derive(Debug, Clone, Default)]
struct Lock {
    exclusive: Option<Owner>,
    /// Shared holds per owner, never 0.
    shared: BTreeMap<Owner, u64>,
    shared_total: u64,
    queue: VecDeque<Waiter>,
}

impl Lock {
    /// Whether a request in `mode` is compatible with the current holds.
    fn admits(&self, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive => self.exclusive.is_none() && self.shared_total == 0,
            LockMode::Shared => self.exclusive.is_none(),
        }
    }

    fn hold(&mut self, owner: Owner, mode: LockMode) {
        match mode {
            LockMode::Exclusive => self.exclusive = Some(owner),
            LockMode::Shared => {
                *self.shared.entry(owner).or_default() += 1;
                self.shared_total += 1;
            }
        }
    }

    /// Drops one hold of `owner` in `mode`; whether there was one.
    fn release(&mut self, owner: Owner, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive if self.exclusive == Some(owner) => {
                self.exclusive = None;
                true
            }
            LockMode::Exclusive => false,
            LockMode::Shared => {
                let Some(count) = self.shared.get_mut(&owner) else {
                    return false;
                };
                *count -= 1;
                if *count == 0 {
                    self.shared.remove(&owner);
                }
                self.shared_total -= 1;
                true
            }
        }
    }

    /// Drops every hold of `owner`.
    fn release_all(&mut self, owner: Owner) {
        if self.exclusive == Some(owner) {
            self.exclusive = None;
        }
        if let Some(count) = self.shared.remove(&owner) {
            self.shared_total -= count;
        }
    }

    fn holds_any(&self, owner: Owner) -> bool {
        self.exclusive == Some(owner) || self.shared.contains_key(&owner)
    }

    fn unused(&self) -> bool {
        self.exclusive.is_none() && self.shared_total == 0 && self.queue.is_empty()
    }
}

/// What one owner holds and waits for, so that
/// [`Locker::release_owner`] need not look at every lock.
#[derive(Debug, Clone, Default)]
struct Holdings {
    /// Locks it holds at least once.
    locks: BTreeSet<String>,
    /// Its queued requests.
    tickets: BTreeSet<Ticket>,
}

/// One app's locks.
///
/// A lock is held [`Exclusive`](LockMode::Exclusive) by one owner, or
/// [`Shared`](LockMode::Shared) by any number of holds, never both. The
/// caller (the master, or the library in simulate mode) decides who an
/// [`Owner`] is and when a wait times out; the locker only decides who
/// holds what and who is let in next.
///
/// # Fairness
///
/// Each lock has one FIFO queue. A request is granted at once only if it is
/// compatible with the current holds *and nobody is queued*: a writer
/// waiting behind readers blocks readers that arrive after it, so readers
/// cannot starve a writer, and a writer cannot overtake earlier readers.
/// Whenever holds are released or a queued request is withdrawn, the queue
/// is served from its head: an exclusive head is granted when nobody holds
/// the lock; a shared head is granted, together with every consecutive
/// shared request behind it, when nobody holds it exclusively.
///
/// # Owners, and no reentrancy
///
/// Holds belong to the owner, not to a connection or thread, and shared
/// holds are counted: an owner that took a lock shared twice must unlock it
/// twice. Locks are not reentrant. An owner asking for a lock it already
/// holds in an incompatible way (exclusive while holding it at all, shared
/// while holding it exclusively) queues behind its own hold, exactly as
/// another owner would — the master's owner is a whole instance, and two of
/// its threads contending for a lock must wait for each other. One thread
/// asking twice therefore deadlocks unless its request has a timeout. The
/// same goes for taking a shared hold again while a writer waits: the new
/// request queues behind the writer, which waits for the first hold.
///
/// When an owner goes away, [`Locker::release_owner`] drops all its holds
/// and queued requests, so a crash never deadlocks its successor.
///
/// # Bounds
///
/// A lock with no holds and nobody waiting is forgotten; only locks in use
/// count against [`Limits::max_locks`]. Every operation takes time
/// logarithmic in the number of locks plus linear in one lock's queue;
/// [`Locker::release_owner`] works through that owner's own holds and
/// requests only.
#[derive(Debug, Clone)]
pub struct Locker {
    limits: Limits,
    /// Locks in use.
    locks: BTreeMap<String, Lock>,
    /// Queued tickets: the lock's name and the owner.
    waiting: BTreeMap<Ticket, (String, Owner)>,
    owners: BTreeMap<Owner, Holdings>,
    next_ticket: Ticket,
}

impl Locker {
    /// No locks in use, bounded by `limits`.
    pub fn new(limits: Limits) -> Locker {
        Locker {
            limits,
            locks: BTreeMap::new(),
            waiting: BTreeMap::new(),
            owners: BTreeMap::new(),
            next_ticket: 1,
        }
    }

    /// Asks for lock `name` in `mode` for `owner`: granted at once if
    /// compatible with the current holds and nobody is queued; otherwise
    /// queued if `wait`, else [`Acquire::Busy`].
    ///
    /// # Errors
    ///
    /// - [`ErrorCode::BadRequest`] if `name` is empty or longer than
    ///   [`Limits::max_name_len`].
    /// - [`ErrorCode::LimitExceeded`] if `name` is not in use and
    ///   [`Limits::max_locks`] locks are.
    pub fn lock(
        &mut self,
        name: &str,
        owner: Owner,
        mode: LockMode,
        wait: bool,
    ) -> Result<Acquire, Failure> {
        self.limits.check_name("lock name", name)?;
        if !self.locks.contains_key(name) {
            if self.locks.len() >= self.limits.max_locks {
                return Err(Failure::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "too many locks: {} of max_locks {} in use; unlock locks no longer \
                         needed, or raise max_locks",
                        self.locks.len(),
                        self.limits.max_locks
                    ),
                ));
            }
            self.locks.insert(name.to_owned(), Lock::default());
        }
        let Some(lock) = self.locks.get_mut(name) else {
            unreachable!("lock {name:?} was just inserted");
        };
        if lock.queue.is_empty() && lock.admits(mode) {
            lock.hold(owner, mode);
            holdings(&mut self.owners, owner)
                .locks
                .insert(name.to_owned());
            return Ok(Acquire::Granted);
        }
        // Not admitted, so the lock is in use and stays remembered.
        if !wait {
            return Ok(Acquire::Busy);
        }
        let queued = self.owners.get(&owner).map_or(0, |h| h.tickets.len());
        if queued >= MAX_WAITS_PER_OWNER {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "too many lock requests waiting: this instance has {queued} queued, the \
                     most one may have; wait for them, or give up some"
                ),
            ));
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        lock.queue.push_back(Waiter {
            ticket,
            owner,
            mode,
        });
        self.waiting.insert(ticket, (name.to_owned(), owner));
        holdings(&mut self.owners, owner).tickets.insert(ticket);
        Ok(Acquire::Queued(ticket))
    }

    /// Releases one hold of lock `name` in `mode` by `owner`; the queued
    /// tickets granted as a result, in queue order.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::BadRequest`] if `owner` does not hold `name` in `mode`.
    /// Nothing changes.
    pub fn unlock(
        &mut self,
        name: &str,
        owner: Owner,
        mode: LockMode,
    ) -> Result<Vec<Ticket>, Failure> {
        let lock = self.locks.get_mut(name);
        let Some(lock) = lock.and_then(|lock| lock.release(owner, mode).then_some(lock)) else {
            let how = match mode {
                LockMode::Exclusive => "exclusively",
                LockMode::Shared => "shared",
            };
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!(
                    "the caller does not hold lock {name:?} {how}; unlock only what was \
                     locked, once per lock, in the mode it was locked in"
                ),
            ));
        };
        if !lock.holds_any(owner) {
            forget_hold(&mut self.owners, owner, name);
        }
        let mut granted = Vec::new();
        self.serve(name, &mut granted);
        Ok(granted)
    }

    /// Withdraws queued request `ticket` (its wait timed out, or its
    /// connection closed); the tickets granted as a result — a withdrawn
    /// writer may let the readers behind it in. A ticket that is not
    /// queued (never was, already granted or withdrawn) changes nothing.
    pub fn withdraw(&mut self, ticket: Ticket) -> Vec<Ticket> {
        let Some((name, owner)) = self.waiting.remove(&ticket) else {
            return Vec::new();
        };
        forget_ticket(&mut self.owners, owner, ticket);
        if let Some(lock) = self.locks.get_mut(&name) {
            lock.queue.retain(|w| w.ticket != ticket);
        }
        let mut granted = Vec::new();
        self.serve(&name, &mut granted);
        granted
    }

    /// `owner` is gone: drops all its holds and withdraws all its queued
    /// requests; the tickets of other owners granted as a result.
    pub fn release_owner(&mut self, owner: Owner) -> Vec<Ticket> {
        let Some(holdings) = self.owners.remove(&owner) else {
            return Vec::new();
        };
        let mut touched = holdings.locks;
        for ticket in holdings.tickets {
            if let Some((name, _)) = self.waiting.remove(&ticket) {
                touched.insert(name);
            }
        }
        for name in &touched {
            if let Some(lock) = self.locks.get_mut(name) {
                lock.release_all(owner);
                lock.queue.retain(|w| w.owner != owner);
            }
        }
        let mut granted = Vec::new();
        for name in &touched {
            self.serve(name, &mut granted);
        }
        granted
    }

    /// Who holds and waits for lock `name`.
    pub fn state(&self, name: &str) -> LockState {
        let Some(lock) = self.locks.get(name) else {
            return LockState::default();
        };
        let waiting = |mode| lock.queue.iter().filter(|w| w.mode == mode).count();
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        LockState {
            exclusive: lock.exclusive.is_some(),
            shared: u32::try_from(lock.shared_total).unwrap_or(u32::MAX),
            waiting_exclusive: clamp(waiting(LockMode::Exclusive)),
            waiting_shared: clamp(waiting(LockMode::Shared)),
        }
    }

    /// The owner of queued request `ticket`; `None` once it is granted or
    /// withdrawn.
    pub fn owner_of(&self, ticket: Ticket) -> Option<Owner> {
        self.waiting.get(&ticket).map(|&(_, owner)| owner)
    }

    /// How many locks are in use (held or waited for).
    pub fn in_use(&self) -> usize {
        self.locks.len()
    }

    /// Grants lock `name` to the head of its queue for as long as the head
    /// is compatible, appending the tickets to `granted`; forgets the lock
    /// if it is no longer in use.
    fn serve(&mut self, name: &str, granted: &mut Vec<Ticket>) {
        let Some(lock) = self.locks.get_mut(name) else {
            return;
        };
        while let Some(&head) = lock.queue.front() {
            if !lock.admits(head.mode) {
                break;
            }
            lock.queue.pop_front();
            lock.hold(head.owner, head.mode);
            self.waiting.remove(&head.ticket);
            let holdings = holdings(&mut self.owners, head.owner);
            holdings.tickets.remove(&head.ticket);
            holdings.locks.insert(name.to_owned());
            granted.push(head.ticket);
        }
        if lock.unused() {
            self.locks.remove(name);
        }
    }

    /// Every lock in use as plain data, and the next ticket (for the
    /// master's handover).
    pub(super) fn snapshot(&self) -> (Vec<super::snapshot::LockSnapshot>, Ticket) {
        let locks = self
            .locks
            .iter()
            .map(|(name, lock)| super::snapshot::LockSnapshot {
                name: name.clone(),
                exclusive: lock.exclusive,
                shared: lock.shared.iter().map(|(&o, &n)| (o, n)).collect(),
                queue: lock
                    .queue
                    .iter()
                    .map(|w| (w.ticket, w.owner, w.mode))
                    .collect(),
            })
            .collect();
        (locks, self.next_ticket)
    }

    /// Fills an empty locker with `locks`, rebuilding its indexes.
    pub(super) fn restore(
        &mut self,
        locks: Vec<super::snapshot::LockSnapshot>,
        next_ticket: Ticket,
    ) -> Result<(), super::snapshot::RestoreError> {
        use super::snapshot::RestoreError;
        let bad = |what: String| Err(RestoreError(what));
        self.next_ticket = next_ticket;
        for snap in locks {
            let name = snap.name;
            if name.is_empty() || self.locks.contains_key(&name) {
                return bad(format!("lock {name:?} empty-named or twice"));
            }
            let mut lock = Lock::default();
            if snap.exclusive.is_some() && !snap.shared.is_empty() {
                return bad(format!("lock {name:?} held exclusive and shared"));
            }
            if let Some(owner) = snap.exclusive {
                lock.exclusive = Some(owner);
                holdings(&mut self.owners, owner).locks.insert(name.clone());
            }
            for (owner, count) in snap.shared {
                if count == 0 || lock.shared.insert(owner, count).is_some() {
                    return bad(format!("lock {name:?}: a bad shared hold"));
                }
                lock.shared_total += count;
                holdings(&mut self.owners, owner).locks.insert(name.clone());
            }
            for (ticket, owner, mode) in snap.queue {
                if ticket >= next_ticket || self.waiting.contains_key(&ticket) {
                    return bad(format!("lock {name:?}: ticket {ticket} twice or ahead"));
                }
                self.waiting.insert(ticket, (name.clone(), owner));
                holdings(&mut self.owners, owner).tickets.insert(ticket);
                lock.queue.push_back(Waiter {
                    ticket,
                    owner,
                    mode,
                });
            }
            if lock.unused() {
                continue;
            }
            self.locks.insert(name, lock);
        }
        Ok(())
    }

    /// Panics unless the locks, the queues and the indexes agree and the
    /// fairness rules hold.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut tickets = 0;
        for (name, lock) in &self.locks {
            assert!(!lock.unused(), "unused lock {name:?} kept");
            if lock.exclusive.is_some() {
                assert_eq!(lock.shared_total, 0, "{name:?} exclusive and shared");
            }
            assert_eq!(lock.shared_total, lock.shared.values().sum::<u64>());
            assert!(lock.shared.values().all(|&n| n > 0));
            if let Some(head) = lock.queue.front() {
                assert!(!lock.admits(head.mode), "{name:?}: grantable head waits");
                assert!(
                    lock.exclusive.is_some() || lock.shared_total > 0,
                    "{name:?}: free lock with a queue"
                );
            }
            for w in &lock.queue {
                tickets += 1;
                assert_eq!(self.waiting.get(&w.ticket), Some(&(name.clone(), w.owner)));
                assert!(self.owners[&w.owner].tickets.contains(&w.ticket));
            }
            for owner in lock.exclusive.iter().chain(lock.shared.keys()) {
                assert!(self.owners[owner].locks.contains(name));
            }
        }
        assert_eq!(self.waiting.len(), tickets, "stale waiting tickets");
        for (owner, h) in &self.owners {
            assert!(
                !h.locks.is_empty() || !h.tickets.is_empty(),
                "empty holdings kept"
            );
            for name in &h.locks {
                assert!(self.locks[name].holds_any(*owner));
            }
            for ticket in &h.tickets {
                assert_eq!(self.waiting[ticket].1, *owner);
            }
        }
    }
}

fn holdings(owners: &mut BTreeMap<Owner, Holdings>, owner: Owner) -> &mut Holdings {
    owners.entry(owner).or_default()
}

fn forget_hold(owners: &mut BTreeMap<Owner, Holdings>, owner: Owner, name: &str) {
    if let Some(h) = owners.get_mut(&owner) {
        h.locks.remove(name);
        if h.locks.is_empty() && h.tickets.is_empty() {
            owners.remove(&owner);
        }
    }
}

fn forget_ticket(owners: &mut BTreeMap<Owner, Holdings>, owner: Owner, ticket: Ticket) {
    if let Some(h) = owners.get_mut(&owner) {
        h.tickets.remove(&ticket);
        if h.locks.is_empty() && h.tickets.is_empty() {
            owners.remove(&owner);
        }
    }
}
