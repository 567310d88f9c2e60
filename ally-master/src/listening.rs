//! An instance's `Listen`: answered at once for a socket the app holds
//! already, an IP or an abstract address; for a new unix path, answered
//! once the path-socket helper ([`crate::path_socket`]) reports, so a slow
//! directory or a foreign socket never blocks the event loop.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::time::Instant;

use ally_proto::{ErrorCode, Failure, InstanceResponse, ListenAddr, ListenSpec, Network};

use crate::event_loop::Master;
use crate::helpers::{self, Helper, Owner};
use crate::limits::{MAX_LISTENERS_PER_APP, MAX_PENDING_LISTENS, PATH_SOCKET_TIMEOUT};
use crate::listeners::{Bound, Key, cannot, mode_mismatch, new_socket};
use crate::log;
use crate::path_socket::{Job, Outcome};
use crate::scope;

/// An instance waiting for a socket being bound.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    conn: u64,
    instance: u64,
}

/// A unix path socket whose helper has not reported yet.
#[derive(Debug)]
struct Pending {
    key: Key,
    mode: Option<u32>,
    socket: OwnedFd,
    owner: Option<Owner>,
    helper: Helper,
    waiters: Vec<Waiter>,
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
    fn keys(&self) -> impl Iterator<Item = &Key> {
        self.entries.values().map(|p| &p.key)
    }

    fn find_mut(&mut self, key: &Key) -> Option<&mut Pending> {
        self.entries.values_mut().find(|p| p.key == *key)
    }

    /// Drops every pending bind, killing its helper (the master is exiting).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl Master {
    /// Answers `Listen(spec)` from instance `id` of app `app_index` on
    /// connection `conn`: the reply now, or `None` when it is sent later.
    pub(crate) fn on_listen(
        &mut self,
        conn: u64,
        app_index: usize,
        id: u64,
        spec: &ListenSpec,
    ) -> Option<(InstanceResponse, Vec<OwnedFd>)> {
        match self.listen(conn, app_index, id, spec) {
            Ok(Some((fd, local))) => {
                Some((InstanceResponse::Listening { fds: 1, local }, vec![fd]))
            }
            Ok(None) => None,
            Err(failure) => {
                log!("{}#{id}: {}", self.apps[app_index].name(), failure.message);
                Some((InstanceResponse::Error(failure), Vec::new()))
            }
        }
    }

    fn listen(
        &mut self,
        conn: u64,
        app_index: usize,
        id: u64,
        spec: &ListenSpec,
    ) -> Result<Option<(OwnedFd, String)>, Failure> {
        let (key, mode) = Key::of(self.apps[app_index].name(), spec)?;
        if let Some(shared) = self.listeners.share(&key, id, mode) {
            return shared.map(Some);
        }
        let waiter = Waiter { conn, instance: id };
        if let Some(pending) = self.pending.find_mut(&key) {
            if mode.is_some() && mode != pending.mode {
                return Err(mode_mismatch(&key, pending.mode));
            }
            pending.waiters.push(waiter);
            return Ok(None);
        }
        let held = self
            .listeners
            .keys()
            .chain(self.pending.keys())
            .filter(|k| k.app == key.app)
            .count();
        if held >= MAX_LISTENERS_PER_APP {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{} holds {held} listeners already, the most one app may have; \
                     unlisten those it no longer uses",
                    key.app
                ),
            ));
        }
        let owner = self.in_scope(app_index, &key)?;
        let ListenAddr::Path(path) = &key.addr else {
            let bound = Bound::direct(&key)?;
            let copy = bound.fd.try_clone().map_err(|e| cannot(&key, &e))?;
            let local = bound.local.clone();
            self.listeners
                .insert(key, bound, mode, BTreeSet::from([id]));
            return Ok(Some((copy, local)));
        };
        if self.pending.entries.len() >= MAX_PENDING_LISTENS {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{MAX_PENDING_LISTENS} unix socket paths are being bound already; \
                     ask again in a moment"
                ),
            ));
        }
        let socket = new_socket(&key).map_err(|e| cannot(&key, &e))?;
        let job = Job::Bind {
            path: path.clone(),
            mode,
        };
        let deadline = Instant::now() + PATH_SOCKET_TIMEOUT;
        let helper = Helper::start(&job, Some(&socket), owner, deadline)
            .map_err(|e| cannot(&key, &format!("cannot start the path-socket helper: {e}")))?;
        let pending = Pending {
            key,
            mode,
            socket,
            owner,
            helper,
            waiters: vec![waiter],
        };
        let ticket = self.pending.next;
        self.pending.next += 1;
        self.pending.entries.insert(ticket, pending);
        Ok(None)
    }

    /// Whether app `app_index` may listen on `key` at all; if so, who its
    /// instances run as.
    fn in_scope(&self, app_index: usize, key: &Key) -> Result<Option<Owner>, Failure> {
        let app = self.apps[app_index].config();
        scope::not_the_masters(key, &self.launch.socket)?;
        let declared: Vec<(&str, Network, ListenAddr)> = self
            .apps
            .iter()
            .flat_map(|a| a.sockets.iter().map(move |(_, b)| (a.name(), b)))
            .filter_map(|(name, b)| b.spec().map(|s| (name, s)))
            .filter_map(|(name, s)| {
                let addr = ListenAddr::parse(s.network, &s.address).ok()?;
                Some((name, s.network, addr))
            })
            .collect();
        let held = self
            .listeners
            .keys()
            .chain(self.pending.keys())
            .map(|k| (k.app.as_str(), k.network, &k.addr))
            .chain(declared.iter().map(|(a, n, addr)| (*a, *n, addr)));
        scope::not_held_elsewhere(key, held)?;
        let owner = scope::owner(app)?;
        let uid = owner.map_or(self.uid.as_raw(), |o| o.uid);
        let start = scope::unprivileged_port_start();
        scope::port_allowed(key, uid, &app.privileged_ports, start)?;
        Ok(owner)
    }

    /// The helper of pending bind `ticket` wrote (or closed its pipe).
    pub(crate) fn on_helper_report(&mut self, ticket: u64) {
        let Some(pending) = self.pending.entries.get_mut(&ticket) else {
            return;
        };
        let Some(outcome) = pending.helper.read() else {
            return;
        };
        if let Some(pending) = self.pending.entries.remove(&ticket) {
            self.finish_listen(pending, outcome);
        }
    }

    /// Fails the binds whose helper missed its deadline (killing it).
    pub(crate) fn expire_listens(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .pending
            .entries
            .iter()
            .filter(|(_, p)| p.helper.deadline <= now)
            .map(|(&ticket, _)| ticket)
            .collect();
        for ticket in late {
            if let Some(pending) = self.pending.entries.remove(&ticket) {
                self.finish_listen(pending, helpers::timed_out(PATH_SOCKET_TIMEOUT));
            }
        }
    }

    /// Answers everyone waiting for `pending`, and enters its socket in the
    /// table if it was bound and someone still wants it (else it is closed
    /// and its file removed).
    fn finish_listen(&mut self, pending: Pending, outcome: Outcome) {
        let Pending {
            key,
            mode,
            socket,
            owner,
            helper,
            waiters,
        } = pending;
        drop(helper);
        let waiters: Vec<Waiter> = waiters
            .into_iter()
            .filter(|w| self.conns.contains_key(&w.conn) && self.is_live(&key.app, w.instance))
            .collect();
        let uid = owner.map_or(self.uid.as_raw(), |o| o.uid);
        let bound = match outcome {
            Outcome::Done(Some(file)) => Bound::from_helper(&key, socket, file, owner),
            Outcome::Done(None) => Err(cannot(&key, &"the helper reported no file")),
            Outcome::Failed(why) => Err(cannot(&key, &format!("{why} (checked as uid {uid})"))),
        };
        let bound = match bound {
            Ok(bound) => bound,
            Err(failure) => {
                log!("{}: {}", key.app, failure.message);
                for w in waiters {
                    let reply = InstanceResponse::Error(failure.clone());
                    self.send(w.conn, &reply, Vec::new());
                }
                return;
            }
        };
        if waiters.is_empty() {
            log!(
                "{}: {} {} was bound after every instance asking for it left; closed it",
                key.app,
                key.network,
                key.addr
            );
            return;
        }
        let local = bound.local.clone();
        let mut replies = Vec::with_capacity(waiters.len());
        for w in &waiters {
            let reply = match bound.fd.try_clone() {
                Ok(fd) => (
                    InstanceResponse::Listening {
                        fds: 1,
                        local: local.clone(),
                    },
                    vec![fd],
                ),
                Err(e) => (InstanceResponse::Error(cannot(&key, &e)), Vec::new()),
            };
            replies.push((w.conn, reply));
        }
        let holders = waiters.iter().map(|w| w.instance).collect();
        self.listeners.insert(key, bound, mode, holders);
        for (conn, (reply, fds)) in replies {
            self.send(conn, &reply, fds);
        }
    }

    fn is_live(&self, app: &str, instance: u64) -> bool {
        self.apps
            .iter()
            .find(|a| a.name() == app)
            .is_some_and(|a| a.is_live(instance))
    }
}
