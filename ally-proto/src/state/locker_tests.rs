//! Tests of [`Locker`](super::Locker).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{Acquire, Limits, Locker, Owner, Ticket};
use crate::{ErrorCode, LockMode, LockState};

use LockMode::{Exclusive as X, Shared as S};

const A: Owner = 1;
const B: Owner = 2;
const C: Owner = 3;
const D: Owner = 4;
const E: Owner = 5;

fn locker() -> Locker {
    Locker::new(Limits::default())
}

fn queued(r: Result<Acquire, crate::Failure>) -> Ticket {
    match r {
        Ok(Acquire::Queued(t)) => t,
        other => panic!("expected a queued request, got {other:?}"),
    }
}

fn state(exclusive: bool, shared: u32, waiting_exclusive: u32, waiting_shared: u32) -> LockState {
    LockState {
        exclusive,
        shared,
        waiting_exclusive,
        waiting_shared,
    }
}

#[test]
fn exclusive_excludes_everyone() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, false), Ok(Acquire::Granted));
    assert_eq!(l.state("x"), state(true, 0, 0, 0));
    for (owner, mode) in [(B, X), (B, S), (A, S), (A, X)] {
        assert_eq!(l.lock("x", owner, mode, false), Ok(Acquire::Busy));
    }
    // Other locks are unaffected.
    assert_eq!(l.lock("y", B, X, false), Ok(Acquire::Granted));
    assert_eq!(l.state("x"), state(true, 0, 0, 0));
    l.check_invariants();
}

#[test]
fn shared_is_shared() {
    let mut l = locker();
    for owner in [A, B, A] {
        assert_eq!(l.lock("x", owner, S, false), Ok(Acquire::Granted));
    }
    assert_eq!(l.state("x"), state(false, 3, 0, 0));
    assert_eq!(l.lock("x", C, X, false), Ok(Acquire::Busy));
    assert_eq!(l.lock("x", A, X, false), Ok(Acquire::Busy));
    l.check_invariants();
}

#[test]
fn a_waiting_writer_blocks_new_readers() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, S, true), Ok(Acquire::Granted));
    let w = queued(l.lock("x", B, X, true));
    // Compatible with the holds, but someone is queued.
    assert_eq!(l.lock("x", C, S, false), Ok(Acquire::Busy));
    let r = queued(l.lock("x", C, S, true));
    assert_eq!(l.state("x"), state(false, 1, 1, 1));
    assert_eq!(l.unlock("x", A, S), Ok(vec![w]));
    assert_eq!(l.state("x"), state(true, 0, 0, 1));
    assert_eq!(l.unlock("x", B, X), Ok(vec![r]));
    assert_eq!(l.state("x"), state(false, 1, 0, 0));
    l.check_invariants();
}

#[test]
fn consecutive_shared_requests_at_the_head_are_granted_together() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    let b = queued(l.lock("x", B, S, true));
    let c = queued(l.lock("x", C, S, true));
    let d = queued(l.lock("x", D, X, true));
    let e = queued(l.lock("x", E, S, true));
    assert!(b < c && c < d && d < e, "tickets increase");
    assert_eq!(l.state("x"), state(true, 0, 1, 3));

    assert_eq!(l.unlock("x", A, X), Ok(vec![b, c]));
    assert_eq!(l.state("x"), state(false, 2, 1, 1));
    assert_eq!(l.unlock("x", B, S), Ok(vec![]));
    assert_eq!(l.unlock("x", C, S), Ok(vec![d]));
    assert_eq!(l.state("x"), state(true, 0, 0, 1));
    assert_eq!(l.unlock("x", D, X), Ok(vec![e]));
    assert_eq!(l.unlock("x", E, S), Ok(vec![]));
    assert_eq!(l.in_use(), 0);
    l.check_invariants();
}

#[test]
fn withdrawing_a_writer_at_the_head_lets_readers_in() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, S, true), Ok(Acquire::Granted));
    let w = queued(l.lock("x", B, X, true));
    let r1 = queued(l.lock("x", C, S, true));
    let r2 = queued(l.lock("x", D, S, true));
    let w2 = queued(l.lock("x", E, X, true));
    assert_eq!(l.owner_of(w), Some(B));
    assert_eq!(l.withdraw(w), vec![r1, r2]);
    assert_eq!(l.owner_of(w), None);
    assert_eq!(l.owner_of(r1), None, "granted, no longer queued");
    assert_eq!(l.state("x"), state(false, 3, 1, 0));
    // Withdrawing again, or a granted or unknown ticket, changes nothing.
    for t in [w, r1, 999] {
        assert_eq!(l.withdraw(t), vec![]);
    }
    assert_eq!(l.state("x"), state(false, 3, 1, 0));
    assert_eq!(l.owner_of(w2), Some(E));
    l.check_invariants();
}

#[test]
fn withdrawing_behind_the_head_grants_nothing_new() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    let b = queued(l.lock("x", B, X, true));
    let c = queued(l.lock("x", C, S, true));
    assert_eq!(l.withdraw(c), vec![]);
    assert_eq!(l.state("x"), state(true, 0, 1, 0));
    assert_eq!(l.unlock("x", A, X), Ok(vec![b]));
    // The last waiter withdrawn from a free lock: the lock is forgotten.
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    let b = queued(l.lock("x", B, X, true));
    assert_eq!(l.withdraw(b), vec![]);
    assert_eq!(l.unlock("x", A, X), Ok(vec![]));
    assert_eq!(l.in_use(), 0);
    l.check_invariants();
}

#[test]
fn release_owner_drops_holds_and_waits_and_grants_the_next() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("y", A, S, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("y", A, S, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("z", B, X, true), Ok(Acquire::Granted));
    let az = queued(l.lock("z", A, S, true));
    let ax = queued(l.lock("x", A, S, true)); // behind its own hold
    let cx = queued(l.lock("x", C, X, true));
    let dy = queued(l.lock("y", D, X, true));
    let ez = queued(l.lock("z", E, S, true));

    let mut granted = l.release_owner(A);
    granted.sort_unstable();
    assert_eq!(granted, vec![cx, dy]);
    for t in [az, ax] {
        assert_eq!(l.owner_of(t), None);
    }
    assert_eq!(l.state("x"), state(true, 0, 0, 0));
    assert_eq!(l.state("y"), state(true, 0, 0, 0));
    assert_eq!(l.state("z"), state(true, 0, 0, 1));
    assert_eq!(l.owner_of(ez), Some(E));
    assert_eq!(l.unlock("x", A, X).unwrap_err().code, ErrorCode::BadRequest);
    l.check_invariants();

    // An owner with nothing is a no-op; releasing everyone empties the locker.
    assert_eq!(l.release_owner(A), vec![]);
    assert_eq!(l.release_owner(B), vec![ez]);
    for owner in [C, D, E] {
        assert_eq!(l.release_owner(owner), vec![]);
    }
    assert_eq!(l.in_use(), 0);
    l.check_invariants();
}

#[test]
fn unlocking_what_is_not_held_is_an_error_and_changes_nothing() {
    let mut l = locker();
    let e = l.unlock("x", A, X).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains("does not hold lock \"x\" exclusively"),
        "{e}"
    );
    assert_eq!(l.in_use(), 0, "a failed unlock creates no lock");

    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    let b = queued(l.lock("x", B, S, true));
    let e = l.unlock("x", A, S).unwrap_err();
    assert!(e.message.contains("does not hold lock \"x\" shared"), "{e}");
    assert_eq!(l.unlock("x", B, X).unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(l.unlock("x", B, S).unwrap_err().code, ErrorCode::BadRequest);
    assert_eq!(l.state("x"), state(true, 0, 0, 1));

    assert_eq!(l.unlock("x", A, X), Ok(vec![b]));
    let e = l.unlock("x", A, X).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest, "double unlock");
    assert_eq!(l.state("x"), state(false, 1, 0, 0));
    l.check_invariants();
}

#[test]
fn shared_holds_are_counted_per_owner() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, S, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("x", A, S, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("x", B, S, true), Ok(Acquire::Granted));
    let w = queued(l.lock("x", C, X, true));
    assert_eq!(l.state("x"), state(false, 3, 1, 0));
    assert_eq!(l.unlock("x", A, S), Ok(vec![]));
    assert_eq!(l.unlock("x", B, S), Ok(vec![]));
    assert_eq!(l.state("x"), state(false, 1, 1, 0));
    assert_eq!(l.unlock("x", A, S), Ok(vec![w]));
    assert_eq!(l.unlock("x", A, S).unwrap_err().code, ErrorCode::BadRequest);
    l.check_invariants();
}

#[test]
fn locks_are_not_reentrant() {
    // An owner is a whole instance: asking again queues behind its own
    // hold, as a second thread of it must.
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("x", A, X, false), Ok(Acquire::Busy));
    let again = queued(l.lock("x", A, X, true));
    assert_eq!(l.owner_of(again), Some(A));
    assert_eq!(l.state("x"), state(true, 0, 1, 0));
    // It waits until the first hold goes (or its timeout withdraws it).
    assert_eq!(l.unlock("x", A, X), Ok(vec![again]));
    assert_eq!(l.state("x"), state(true, 0, 0, 0));

    // Upgrading a shared hold waits for it too.
    let mut l = locker();
    assert_eq!(l.lock("y", A, S, true), Ok(Acquire::Granted));
    let up = queued(l.lock("y", A, X, true));
    assert_eq!(l.withdraw(up), vec![]);
    assert_eq!(l.state("y"), state(false, 1, 0, 0));
    l.check_invariants();
}

#[test]
fn free_locks_are_forgotten() {
    let mut l = locker();
    for i in 0..100 {
        let name = format!("l{i}");
        assert_eq!(l.lock(&name, A, X, true), Ok(Acquire::Granted));
        let t = queued(l.lock(&name, B, S, true));
        assert_eq!(l.unlock(&name, A, X), Ok(vec![t]));
        assert_eq!(l.unlock(&name, B, S), Ok(vec![]));
    }
    assert_eq!(l.in_use(), 0);
    assert_eq!(l.lock("x", A, S, false), Ok(Acquire::Granted));
    assert_eq!(l.in_use(), 1);
    assert_eq!(l.state("nothing"), LockState::default());
    assert_eq!(l.in_use(), 1, "state() creates nothing");
    l.check_invariants();
}

#[test]
fn the_limit_counts_locks_in_use() {
    let mut l = Locker::new(Limits {
        max_locks: 2,
        ..Limits::default()
    });
    assert_eq!(l.lock("a", A, X, true), Ok(Acquire::Granted));
    assert_eq!(l.lock("b", A, S, true), Ok(Acquire::Granted));
    for wait in [true, false] {
        let e = l.lock("c", B, S, wait).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("2 of max_locks 2"), "{e}");
    }
    // Locks in use still take requests.
    let t = queued(l.lock("a", B, X, true));
    assert_eq!(l.lock("b", B, S, true), Ok(Acquire::Granted));
    assert_eq!(l.unlock("b", A, S), Ok(vec![]));
    assert_eq!(l.unlock("b", B, S), Ok(vec![]));
    assert_eq!(l.lock("c", B, S, true), Ok(Acquire::Granted));
    assert_eq!(l.in_use(), 2);
    assert_eq!(l.withdraw(t), vec![]);
    l.check_invariants();
}

#[test]
fn names_are_checked() {
    let mut l = Locker::new(Limits {
        max_name_len: 3,
        ..Limits::default()
    });
    for name in ["", "abcd"] {
        let e = l.lock(name, A, X, true).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("lock name"), "{e}");
        assert_eq!(
            l.unlock(name, A, X).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(l.state(name), LockState::default());
    }
    assert_eq!(l.lock("abc", A, X, true), Ok(Acquire::Granted));
}

#[derive(Debug, Clone)]
enum Op {
    Lock(u8, Owner, LockMode, bool),
    Unlock(u8, Owner, LockMode),
    /// Withdraw the n-th queued ticket (modulo), or an unknown one.
    Withdraw(usize),
    Release(Owner),
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop_oneof![Just(X), Just(S)]
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..3u8;
    let owner = 1..=4 as Owner;
    prop_oneof![
        6 => (name.clone(), owner.clone(), mode(), proptest::bool::weighted(0.8))
            .prop_map(|(n, o, m, w)| Op::Lock(n, o, m, w)),
        5 => (name, owner.clone(), mode()).prop_map(|(n, o, m)| Op::Unlock(n, o, m)),
        2 => (0..8usize).prop_map(Op::Withdraw),
        1 => owner.prop_map(Op::Release),
    ]
}

/// The holds the model expects: per lock, the exclusive owner and the shared
/// count per owner.
#[derive(Debug, Default)]
struct Model {
    exclusive: BTreeMap<String, Owner>,
    shared: BTreeMap<(String, Owner), u64>,
    /// Queued tickets: lock, owner, mode.
    queued: BTreeMap<Ticket, (String, Owner, LockMode)>,
    seen: BTreeSet<Ticket>,
}

impl Model {
    fn shared_total(&self, name: &str) -> u64 {
        self.shared
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, c)| c)
            .sum()
    }

    fn admits(&self, name: &str, mode: LockMode) -> bool {
        !self.exclusive.contains_key(name) && (mode == S || self.shared_total(name) == 0)
    }

    fn hold(&mut self, name: &str, owner: Owner, mode: LockMode) {
        match mode {
            X => assert!(self.exclusive.insert(name.to_owned(), owner).is_none()),
            S => *self.shared.entry((name.to_owned(), owner)).or_default() += 1,
        }
    }

    /// Applies granted tickets, checking each was queued, is granted once,
    /// is compatible, and leaves no earlier ticket of its lock queued.
    fn grant(&mut self, granted: &[Ticket]) -> Result<(), TestCaseError> {
        for t in granted {
            let Some((name, owner, mode)) = self.queued.remove(t) else {
                return Err(TestCaseError::fail(format!(
                    "ticket {t} granted but not queued"
                )));
            };
            prop_assert!(
                self.admits(&name, mode),
                "ticket {} granted while incompatible",
                t
            );
            prop_assert!(
                !self.queued.iter().any(|(u, (n, _, _))| u < t && *n == name),
                "ticket {} granted before an earlier one",
                t
            );
            self.hold(&name, owner, mode);
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn locker_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..150)) {
        let names = ["a", "b", "c"];
        let mut l = locker();
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Lock(n, owner, mode, wait) => {
                    let name = names[usize::from(n)];
                    let free = !m.queued.values().any(|(q, _, _)| q == name);
                    let r = l.lock(name, owner, mode, wait).unwrap();
                    if free && m.admits(name, mode) {
                        prop_assert_eq!(r, Acquire::Granted);
                        m.hold(name, owner, mode);
                    } else if wait {
                        let Acquire::Queued(t) = r else {
                            return Err(TestCaseError::fail(format!("{r:?}, expected queued")));
                        };
                        prop_assert!(m.seen.insert(t), "ticket {} reused", t);
                        m.queued.insert(t, (name.to_owned(), owner, mode));
                    } else {
                        prop_assert_eq!(r, Acquire::Busy);
                    }
                }
                Op::Unlock(n, owner, mode) => {
                    let name = names[usize::from(n)];
                    let r = l.unlock(name, owner, mode);
                    let held = match mode {
                        X => m.exclusive.get(name) == Some(&owner),
                        S => m.shared.contains_key(&(name.to_owned(), owner)),
                    };
                    prop_assert_eq!(r.is_ok(), held, "{:?}", r);
                    if let Ok(granted) = r {
                        match mode {
                            X => { m.exclusive.remove(name); }
                            S => {
                                let key = (name.to_owned(), owner);
                                let count = m.shared.get_mut(&key).unwrap();
                                *count -= 1;
                                if *count == 0 {
                                    m.shared.remove(&key);
                                }
                            }
                        }
                        m.grant(&granted)?;
                    }
                }
                Op::Withdraw(i) => {
                    let t = m.queued.keys().nth(i % (m.queued.len() + 1)).copied().unwrap_or(u64::MAX);
                    m.queued.remove(&t);
                    let granted = l.withdraw(t);
                    m.grant(&granted)?;
                }
                Op::Release(owner) => {
                    m.exclusive.retain(|_, o| *o != owner);
                    m.shared.retain(|(_, o), _| *o != owner);
                    m.queued.retain(|_, (_, o, _)| *o != owner);
                    let granted = l.release_owner(owner);
                    m.grant(&granted)?;
                }
            }
            l.check_invariants();
            let mut in_use = 0;
            for name in names {
                let s = l.state(name);
                let waiting = |mode| m.queued.values().filter(|(n, _, md)| n == name && *md == mode).count() as u32;
                let want = LockState {
                    exclusive: m.exclusive.contains_key(name),
                    shared: m.shared_total(name) as u32,
                    waiting_exclusive: waiting(X),
                    waiting_shared: waiting(S),
                };
                prop_assert_eq!(s, want, "lock {}", name);
                prop_assert!(!(s.exclusive && s.shared > 0), "exclusive and shared");
                let held = s.exclusive || s.shared > 0;
                prop_assert!(held || s.waiting_exclusive + s.waiting_shared == 0, "free lock with a queue");
                in_use += usize::from(held || s.waiting_exclusive + s.waiting_shared > 0);
            }
            prop_assert_eq!(l.in_use(), in_use);
            for (t, (_, owner, _)) in &m.queued {
                prop_assert_eq!(l.owner_of(*t), Some(*owner));
            }
        }
    }
}

#[test]
fn one_owner_may_queue_at_most_max_waits() {
    let mut l = locker();
    assert_eq!(l.lock("x", A, X, true), Ok(Acquire::Granted));
    for _ in 0..crate::state::MAX_WAITS_PER_OWNER {
        queued(l.lock("x", B, X, true));
    }
    let err = l.lock("x", B, X, true).unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    // Others still queue, and the owner may still try without waiting.
    queued(l.lock("x", C, X, true));
    assert_eq!(l.lock("x", B, X, false), Ok(Acquire::Busy));
}
