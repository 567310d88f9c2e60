//! Slots for connections accepted from the control socket: a cap on how
//! many are open, a fair share of it per uid, and a reserve that only root
//! and the master's own uid may use, so that neither a flood nor one
//! hoarding uid can lock the operator's `ally-ctl` out.
//!
//! A connection holds its [`Slot`] for as long as it is open: dropping the
//! slot gives it back, so no path that closes a connection can leak one.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use ally_proto::{ErrorCode, Failure};
use rustix::process::Uid;

use crate::limits::{CONTROL_SHARE_PER_UID, MAX_CONNECTIONS, PRIVILEGED_RESERVE};

/// Why a new connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its uid already holds its whole share.
    OverShare,
    /// Every slot its uid may use is taken (by other uids).
    Full,
}

impl Refusal {
    /// What the refused client is told.
    pub fn failure(self, uid: Uid) -> Failure {
        let message = match self {
            Refusal::OverShare => format!(
                "uid {} already holds its {CONTROL_SHARE_PER_UID} connections to this master; \
                 close some and try again",
                uid.as_raw()
            ),
            Refusal::Full => format!(
                "every control connection uid {} may take is in use ({MAX_CONNECTIONS} in all, \
                 {PRIVILEGED_RESERVE} of them kept for root and the master's user); \
                 try again later",
                uid.as_raw()
            ),
        };
        Failure::new(ErrorCode::LimitExceeded, message)
    }

    /// What the master's log counts it as.
    pub fn counted_as(self) -> &'static str {
        match self {
            Refusal::OverShare => "refused over their uid's share",
            Refusal::Full => "refused at the connection cap",
        }
    }
}

/// How many slots there are and who may take them.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    cap: usize,
    per_uid: usize,
    reserve: usize,
}

/// Slots held right now.
#[derive(Debug, Default)]
struct Held {
    by_uid: BTreeMap<u32, usize>,
    /// Held by uids other than root and the master's.
    unprivileged: usize,
    total: usize,
}

/// The control socket's slots (one owner: the event loop).
#[derive(Debug)]
pub struct ControlSlots {
    held: Rc<RefCell<Held>>,
    bounds: Bounds,
    master_uid: Uid,
}

/// One connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    held: Rc<RefCell<Held>>,
    uid: u32,
    privileged: bool,
}

impl ControlSlots {
    /// Slots for a master running as `master_uid`, with the bounds of
    /// [`crate::limits`].
    pub fn new(master_uid: Uid) -> ControlSlots {
        ControlSlots::with_bounds(
            master_uid,
            MAX_CONNECTIONS,
            CONTROL_SHARE_PER_UID,
            PRIVILEGED_RESERVE,
        )
    }

    fn with_bounds(master_uid: Uid, cap: usize, per_uid: usize, reserve: usize) -> ControlSlots {
        ControlSlots {
            held: Rc::default(),
            bounds: Bounds {
                cap,
                per_uid,
                reserve: reserve.min(cap),
            },
            master_uid,
        }
    }

    /// A slot for a new connection from `uid`, or why there is none.
    ///
    /// Root and the master's uid may take any free slot; every other uid at
    /// most its share, and only while the other uids together leave the
    /// reserve free.
    ///
    /// # Errors
    ///
    /// [`Refusal`] when `uid` may take no more.
    pub fn admit(&self, uid: Uid) -> Result<Slot, Refusal> {
        let privileged = uid.is_root() || uid == self.master_uid;
        let mut held = self.held.borrow_mut();
        let b = self.bounds;
        let mine = held.by_uid.get(&uid.as_raw()).copied().unwrap_or(0);
        if !privileged && mine >= b.per_uid {
            return Err(Refusal::OverShare);
        }
        if held.total >= b.cap || (!privileged && held.unprivileged >= b.cap - b.reserve) {
            return Err(Refusal::Full);
        }
        *held.by_uid.entry(uid.as_raw()).or_default() += 1;
        held.total += 1;
        if !privileged {
            held.unprivileged += 1;
        }
        Ok(Slot {
            held: Rc::clone(&self.held),
            uid: uid.as_raw(),
            privileged,
        })
    }

    /// Slots held, in all.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.held.borrow().total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.held.borrow_mut();
        if let Some(n) = held.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.by_uid.remove(&self.uid);
            }
        }
        held.total -= 1;
        if !self.privileged {
            held.unprivileged -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: u32 = 1000;
    const ALICE: u32 = 2001;
    const BOB: u32 = 2002;
    const CAROL: u32 = 2003;

    fn take(slots: &ControlSlots, uid: u32, n: usize) -> Vec<Slot> {
        (0..n)
            .map(|i| {
                slots
                    .admit(Uid::from_raw(uid))
                    .unwrap_or_else(|r| panic!("slot {i} of uid {uid:?}: {r:?}"))
            })
            .collect()
    }

    #[test]
    fn a_uid_gets_its_share_and_no_more() {
        let slots = ControlSlots::with_bounds(Uid::from_raw(MASTER), 10, 3, 2);
        let alice = take(&slots, ALICE, 3);
        assert_eq!(
            slots.admit(Uid::from_raw(ALICE)).err(),
            Some(Refusal::OverShare)
        );
        // Another uid has its own share.
        let bob = take(&slots, BOB, 3);
        drop(alice);
        assert_eq!(slots.in_use(), 3);
        let _alice = take(&slots, ALICE, 3);
        drop(bob);
        assert_eq!(slots.in_use(), 3);
    }

    #[test]
    fn the_reserve_is_kept_for_root_and_the_master_uid() {
        let slots = ControlSlots::with_bounds(Uid::from_raw(MASTER), 10, 4, 2);
        let _alice = take(&slots, ALICE, 4);
        let _bob = take(&slots, BOB, 4);
        // 8 of 10 held: the 2 left are the reserve.
        assert_eq!(slots.admit(Uid::from_raw(CAROL)).err(), Some(Refusal::Full));
        let root = take(&slots, 0, 1);
        let master = take(&slots, MASTER, 1);
        assert_eq!(slots.admit(Uid::ROOT).err(), Some(Refusal::Full));
        assert_eq!(
            slots.admit(Uid::from_raw(MASTER)).err(),
            Some(Refusal::Full)
        );
        drop(root);
        assert!(slots.admit(Uid::from_raw(MASTER)).is_ok());
        drop(master);
    }

    #[test]
    fn privileged_uids_have_no_share_of_their_own_and_leave_others_theirs() {
        let slots = ControlSlots::with_bounds(Uid::from_raw(MASTER), 10, 2, 3);
        // Root may use more than a share, and even the unprivileged part.
        let root = take(&slots, 0, 6);
        // It does not count against what the other uids may hold together.
        let _alice = take(&slots, ALICE, 2);
        let _bob = take(&slots, BOB, 2);
        assert_eq!(slots.in_use(), 10);
        assert_eq!(slots.admit(Uid::ROOT).err(), Some(Refusal::Full));
        drop(root);
        // The other uids together may hold the 7 slots outside the reserve.
        let _carol = take(&slots, CAROL, 2);
        let _dave = take(&slots, 2004, 1);
        assert_eq!(slots.admit(Uid::from_raw(2005)).err(), Some(Refusal::Full));
        assert_eq!(slots.in_use(), 7);
        assert!(slots.admit(Uid::ROOT).is_ok());
    }

    #[test]
    fn every_slot_comes_back_and_uids_are_forgotten() {
        let slots = ControlSlots::with_bounds(Uid::from_raw(MASTER), 100, 5, 10);
        let mut held = Vec::new();
        for round in 0..3 {
            for uid in 0..20u32 {
                if let Ok(slot) = slots.admit(Uid::from_raw(3000 + uid)) {
                    held.push(slot);
                }
            }
            assert!(slots.in_use() <= 90, "round {round}");
        }
        held.clear();
        assert_eq!(slots.in_use(), 0);
        assert!(slots.held.borrow().by_uid.is_empty());
        assert_eq!(slots.held.borrow().unprivileged, 0);
    }

    #[test]
    fn the_defaults_fit_together() {
        const {
            assert!(PRIVILEGED_RESERVE < MAX_CONNECTIONS);
            assert!(CONTROL_SHARE_PER_UID <= MAX_CONNECTIONS - PRIVILEGED_RESERVE);
        }
        let slots = ControlSlots::new(Uid::from_raw(MASTER));
        let _alice = take(&slots, ALICE, CONTROL_SHARE_PER_UID);
        assert_eq!(
            slots.admit(Uid::from_raw(ALICE)).err(),
            Some(Refusal::OverShare)
        );
        let message = Refusal::OverShare.failure(Uid::from_raw(ALICE)).message;
        assert!(message.contains("2001"), "{message}");
    }
}
