//! Budgets of bytes that connections from the control socket may hold
//! buffered together: their input (requests read but not yet handled,
//! mostly unfinished frames), so a thousand half-sent frames cannot grow
//! the master by a thousand frames; and their output (answers not yet
//! read), so a thousand clients that do not read cannot either.
//!
//! Each connection charges what it buffers through its own [`Held`]; the
//! charge is given back as its requests are handled, and all of it when
//! the connection is dropped.

use std::cell::Cell;
use std::rc::Rc;

use crate::limits::{MAX_BUFFERED_INPUT, MAX_QUEUED_OUTPUT, READ_CHUNK, READ_WHEN_SPENT};

/// The shared budget (one owner, the event loop, hands out [`Held`]s).
#[derive(Debug)]
pub struct Budget {
    shared: Rc<Shared>,
}

#[derive(Debug)]
struct Shared {
    total: usize,
    /// Bytes held by every connection together; above `total` by at most
    /// the small reads a spent budget still allows.
    used: Cell<usize>,
}

impl Shared {
    fn left(&self) -> usize {
        self.total.saturating_sub(self.used.get())
    }
}

/// What one connection has buffered against the budget.
#[derive(Debug)]
pub struct Held {
    shared: Rc<Shared>,
    bytes: usize,
}

impl Budget {
    /// The input budget: [`MAX_BUFFERED_INPUT`] bytes.
    pub fn input() -> Budget {
        Budget::of(MAX_BUFFERED_INPUT)
    }

    /// The output budget: [`MAX_QUEUED_OUTPUT`] bytes.
    pub fn output() -> Budget {
        Budget::of(MAX_QUEUED_OUTPUT)
    }

    fn of(bytes: usize) -> Budget {
        Budget {
            shared: Rc::new(Shared {
                total: bytes,
                used: Cell::new(0),
            }),
        }
    }

    /// A new connection's account, holding nothing yet.
    pub fn hold(&self) -> Held {
        Held {
            shared: Rc::clone(&self.shared),
            bytes: 0,
        }
    }

    /// Bytes of the budget not held by any connection.
    #[cfg(test)]
    fn left(&self) -> usize {
        self.shared.left()
    }
}

impl Held {
    /// Records that the connection now holds `bytes` buffered.
    pub fn set(&mut self, bytes: usize) {
        let used = &self.shared.used;
        used.set(used.get() - self.bytes + bytes);
        self.bytes = bytes;
    }

    /// How many bytes the connection may read now: up to [`READ_CHUNK`]
    /// while the budget lasts; once it is spent, [`READ_WHEN_SPENT`] if it
    /// holds nothing (a short request still gets through whole), else none
    /// (its unfinished frame waits, and times out if it stays so).
    pub fn allowance(&self) -> usize {
        let left = self.shared.left().min(READ_CHUNK);
        if self.bytes == 0 {
            left.max(READ_WHEN_SPENT)
        } else {
            left
        }
    }
}

impl Held {
    /// Whether every connection together holds more than the budget.
    pub fn overdrawn(&self) -> bool {
        self.shared.used.get() > self.shared.total
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_come_back_as_input_is_handled_or_dropped() {
        let budget = Budget::of(100);
        let mut a = budget.hold();
        let mut b = budget.hold();
        a.set(60);
        b.set(30);
        assert_eq!(budget.left(), 10);
        assert_eq!(a.allowance(), 10);
        a.set(20);
        assert_eq!(budget.left(), 50);
        drop(a);
        assert_eq!(budget.left(), 70);
        b.set(0);
        assert_eq!(budget.left(), 100);
    }

    #[test]
    fn an_overdrawn_budget_is_seen_by_every_holder() {
        let budget = Budget::of(100);
        let mut a = budget.hold();
        let b = budget.hold();
        a.set(100);
        assert!(!b.overdrawn());
        a.set(101);
        assert!(a.overdrawn() && b.overdrawn());
        drop(a);
        assert!(!b.overdrawn());
    }

    #[test]
    fn a_spent_budget_still_lets_an_empty_connection_read_a_little() {
        let budget = Budget::of(READ_CHUNK * 2);
        let mut hog = budget.hold();
        let empty = budget.hold();
        let mut partial = budget.hold();
        assert_eq!(empty.allowance(), READ_CHUNK);
        partial.set(1);
        hog.set(READ_CHUNK * 2);
        assert_eq!(budget.left(), 0);
        assert_eq!(partial.allowance(), 0, "a partial frame waits");
        assert_eq!(empty.allowance(), READ_WHEN_SPENT);
        // Overdrawn by an empty connection's small read: never below zero,
        // and paid back exactly.
        let mut late = budget.hold();
        late.set(READ_WHEN_SPENT);
        assert_eq!(budget.left(), 0);
        drop(hog);
        drop(late);
        drop(partial);
        drop(empty);
        assert_eq!(budget.shared.used.get(), 0);
    }
}
