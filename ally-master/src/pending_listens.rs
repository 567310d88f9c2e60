//! The unix path sockets being bound by a helper
//! ([`crate::path_socket`]), by a stable id (the poll token of the
//! helper's report pipe), with the instances waiting for each.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Instant;

use ally_proto::Failure;

use crate::helpers::{Helper, Owner};
use crate::limits::MAX_PENDING_LISTENS;
use crate::listeners::{Key, mode_mismatch};
use crate::path_socket::Outcome;

/// An instance waiting for a socket being bound.
#[derive(Debug, Clone, Copy)]
pub struct Waiter {
    /// The connection to answer on.
    pub conn: u64,
    /// The instance asking.
    pub instance: u64,
}

/// A unix path socket whose helper has not reported yet.
#[derive(Debug)]
pub struct Pending {
    /// What is being bound.
    pub key: Key,
    /// The file mode asked for, if any.
    pub mode: Option<u32>,
    /// The socket the helper binds.
    pub socket: OwnedFd,
    /// Who the app's instances run as.
    pub owner: Option<Owner>,
    /// The helper binding it.
    pub helper: Helper,
    /// Who asked for it.
    pub waiters: Vec<Waiter>,
}

/// The unix path sockets being bound, by a stable id (the poll token).
#[derive(Debug, Default)]
pub struct PendingListens {
    entries: BTreeMap<u64, Pending>,
    next: u64,
}

impl PendingListens {
    /// Each pending helper's report pipe, to poll, with its id.
    pub fn helpers(&self) -> impl Iterator<Item = (u64, &Helper)> {
        self.entries.iter().map(|(&id, p)| (id, &p.helper))
    }

    /// The nearest helper deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.entries.values().map(|p| p.helper.deadline).min()
    }

    /// The keys being bound.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.values().map(|p| &p.key)
    }

    /// Adds `waiter` to the bind of `key` if one is pending; `None` if
    /// none is.
    ///
    /// # Errors
    ///
    /// If `mode` is set and differs from the pending bind's.
    pub fn wait_for(
        &mut self,
        key: &Key,
        mode: Option<u32>,
        waiter: Waiter,
    ) -> Option<Result<(), Failure>> {
        let pending = self.entries.values_mut().find(|p| p.key == *key)?;
        if mode.is_some() && mode != pending.mode {
            return Some(Err(mode_mismatch(key, pending.mode)));
        }
        pending.waiters.push(waiter);
        Some(Ok(()))
    }

    /// Whether no bind is pending (an upgrade waits for that).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether [`MAX_PENDING_LISTENS`] binds are pending already.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_PENDING_LISTENS
    }

    /// Waits for `pending`'s helper from now on; returns its id.
    pub fn insert(&mut self, pending: Pending) -> u64 {
        let ticket = self.next;
        self.next += 1;
        self.entries.insert(ticket, pending);
        ticket
    }

    /// Reads the report of bind `ticket`'s helper: the bind and how it
    /// went once the helper has said (or closed its pipe), taken out of
    /// the table.
    pub fn report(&mut self, ticket: u64) -> Option<(Pending, Outcome)> {
        let outcome = self.entries.get_mut(&ticket)?.helper.read()?;
        let pending = self.entries.remove(&ticket)?;
        Some((pending, outcome))
    }

    /// Takes out the binds whose helper missed its deadline by `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Pending> {
        let late: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, p)| p.helper.deadline <= now)
            .map(|(&ticket, _)| ticket)
            .collect();
        late.into_iter()
            .filter_map(|ticket| self.entries.remove(&ticket))
            .collect()
    }

    /// Drops every pending bind, killing its helper (the master is exiting).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
