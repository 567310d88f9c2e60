//! An app's shared state as the master serves it: the pure
//! [`ally_proto::state::Store`] plus what only the master knows —
//! which connection waits for which lock, until when.
//!
//! Holds belong to the instance; waits belong to the connection that asked.
//! So a lock wait is withdrawn when its connection closes, and every hold
//! and wait of an instance goes when it exits: a crash never deadlocks its
//! successor, and a connection the library dropped after a timeout gives
//! up no hold.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ally_proto::state::{Handled, Limits, Owner, Store, StoreSnapshot, Ticket};
use ally_proto::{InstanceRequest, InstanceResponse};

use crate::handover::{self, HandoverError};
use crate::limits::{EXPIRY_SWEEP_BATCH, EXPIRY_WAKE_GRANULARITY};

/// A lock request waiting on a connection.
#[derive(Debug, Clone, Copy)]
struct Wait {
    conn: u64,
    deadline: Option<Instant>,
}

/// A reply to send to a connection other than the one being served.
#[derive(Debug)]
pub struct Reply {
    /// Connection id.
    pub conn: u64,
    /// What to send.
    pub reply: InstanceResponse,
}

/// One app's shared state and its pending lock waits.
#[derive(Debug)]
pub struct SharedState {
    store: Store,
    waits: HashMap<Ticket, Wait>,
}

impl SharedState {
    /// Empty state with `limits`.
    pub fn new(limits: Limits) -> SharedState {
        SharedState {
            store: Store::new(limits),
            waits: HashMap::new(),
        }
    }

    /// Applies a state request from instance `owner` on connection `conn`.
    ///
    /// Returns `None` if `req` is not a state request; `Some(None)` if the
    /// request waits for a lock (its reply comes later through
    /// [`Reply`]s); `Some(Some(reply))` otherwise. Waiters the request let
    /// in are added to `out`.
    pub fn handle(
        &mut self,
        owner: Owner,
        conn: u64,
        req: &InstanceRequest,
        now: Instant,
        out: &mut Vec<Reply>,
    ) -> Option<Option<InstanceResponse>> {
        let Handled {
            reply,
            queued,
            granted,
        } = self.store.handle(owner, req, now)?;
        if let Some(ticket) = queued {
            let deadline = match req {
                InstanceRequest::Lock { timeout_ms, .. } => {
                    timeout_ms.map(|ms| now + Duration::from_millis(ms))
                }
                _ => None,
            };
            self.waits.insert(ticket, Wait { conn, deadline });
        }
        self.grant(granted, out);
        Some(reply)
    }

    /// Times out lock waits and sweeps expired cache entries.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Reply>) {
        let expired: Vec<Ticket> = self
            .waits
            .iter()
            .filter(|(_, w)| w.deadline.is_some_and(|d| d <= now))
            .map(|(&t, _)| t)
            .collect();
        for ticket in expired {
            if let Some(wait) = self.waits.remove(&ticket) {
                out.push(Reply {
                    conn: wait.conn,
                    reply: InstanceResponse::Bool(false),
                });
                let granted = self.store.locker.withdraw(ticket);
                self.grant(granted, out);
            }
        }
        self.store.cache.sweep(now, EXPIRY_SWEEP_BATCH);
    }

    /// The nearest lock-wait deadline or cache expiry. Expiries are rounded
    /// up to [`EXPIRY_WAKE_GRANULARITY`] so many of them cost one wake-up.
    pub fn next_deadline(&self) -> Option<Instant> {
        let expiry = self
            .store
            .cache
            .next_expiry()
            .map(|at| at + EXPIRY_WAKE_GRANULARITY);
        self.waits
            .values()
            .filter_map(|w| w.deadline)
            .chain(expiry)
            .min()
    }

    /// Connection `conn` closed: withdraw its waits.
    pub fn conn_closed(&mut self, conn: u64, out: &mut Vec<Reply>) {
        let tickets: Vec<Ticket> = self
            .waits
            .iter()
            .filter(|(_, w)| w.conn == conn)
            .map(|(&t, _)| t)
            .collect();
        for ticket in tickets {
            self.waits.remove(&ticket);
            let granted = self.store.locker.withdraw(ticket);
            self.grant(granted, out);
        }
    }

    /// Instance `owner` is gone (it exited):
    /// release its holds and withdraw its waits.
    pub fn owner_gone(&mut self, owner: Owner, out: &mut Vec<Reply>) {
        let granted = self.store.locker.release_owner(owner);
        // Answer the granted first: their tickets are no longer queued, so
        // the pruning below would take them for the owner's own.
        self.grant(granted, out);
        self.waits
            .retain(|&ticket, _| self.store.locker.owner_of(ticket).is_some());
    }

    /// The store and the lock waits as plain data, times relative to
    /// `now`: waits as (ticket, connection, milliseconds left).
    pub fn snapshot(&self, now: Instant) -> (StoreSnapshot, Vec<(u64, u64, Option<u64>)>) {
        let waits = self
            .waits
            .iter()
            .map(|(&t, w)| (t, w.conn, w.deadline.map(|d| handover::left_ms(d, now))))
            .collect();
        (self.store.snapshot(now), waits)
    }

    /// The state `store` and `waits` describe, bounded by `limits`.
    ///
    /// # Errors
    ///
    /// If the store contradicts itself, or a wait is for no queued ticket.
    pub fn restore(
        limits: Limits,
        store: StoreSnapshot,
        waits: Vec<(u64, u64, Option<u64>)>,
        now: Instant,
    ) -> Result<SharedState, HandoverError> {
        let store = Store::restore(limits, store, now)
            .map_err(|e| HandoverError::Restore(e.to_string()))?;
        let mut map = HashMap::with_capacity(waits.len());
        for (ticket, conn, left) in waits {
            if store.locker.owner_of(ticket).is_none() {
                return Err(HandoverError::Restore(format!(
                    "a lock wait for ticket {ticket}, which is not queued"
                )));
            }
            let deadline = left.map(|ms| handover::after(now, ms));
            map.insert(ticket, Wait { conn, deadline });
        }
        Ok(SharedState { store, waits: map })
    }

    fn grant(&mut self, tickets: Vec<Ticket>, out: &mut Vec<Reply>) {
        for ticket in tickets {
            if let Some(wait) = self.waits.remove(&ticket) {
                out.push(Reply {
                    conn: wait.conn,
                    reply: InstanceResponse::Bool(true),
                });
            }
        }
    }
}
