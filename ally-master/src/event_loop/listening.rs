//! An instance's `Listen`: answered at once for a socket the app holds
//! already, an IP or an abstract address; for a new unix path, answered
//! once the path-socket helper ([`crate::path_socket`]) reports, so a slow
//! directory or a foreign socket never blocks the event loop.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::time::Instant;

use ally_proto::{ErrorCode, Failure, InstanceResponse, ListenAddr, ListenSpec, Network};

use super::Master;
use crate::apps::AppId;
use crate::helpers::{self, Helper, Owner};
use crate::limits::{MAX_LISTENERS_PER_APP, MAX_PENDING_LISTENS, PATH_SOCKET_TIMEOUT};
use crate::listeners::{Bound, Key, cannot, new_socket};
use crate::log;
use crate::path_socket::{Job, Outcome};
use crate::pending_listens::{Pending, Waiter};
use crate::scope;

impl Master {
    /// Answers `Listen(spec)` from instance `id` of app `app_index` on
    /// connection `conn`: the reply now, or `None` when it is sent later.
    pub(crate) fn on_listen(
        &mut self,
        conn: u64,
        app_index: AppId,
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
        app_index: AppId,
        id: u64,
        spec: &ListenSpec,
    ) -> Result<Option<(OwnedFd, String)>, Failure> {
        let (key, mode) = Key::of(self.apps[app_index].name(), spec)?;
        if let Some(shared) = self.listeners.share(&key, id, mode) {
            return shared.map(Some);
        }
        let waiter = Waiter { conn, instance: id };
        if let Some(waiting) = self.pending.wait_for(&key, mode, waiter) {
            return waiting.map(|()| None);
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
            let bound = Bound::direct(&key, &self.fd_store)?;
            let copy = bound.fd.try_clone().map_err(|e| cannot(&key, &e))?;
            let local = bound.local.clone();
            self.listeners
                .insert(key, bound, mode, BTreeSet::from([id]));
            return Ok(Some((copy, local)));
        };
        if self.pending.is_full() {
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
        self.pending.insert(pending);
        Ok(None)
    }

    /// Whether app `app_index` may listen on `key` at all; if so, who its
    /// instances run as.
    fn in_scope(&self, app_index: AppId, key: &Key) -> Result<Option<Owner>, Failure> {
        let app = self.apps[app_index].config();
        scope::not_the_masters(key, &self.launch.socket)?;
        let declared: Vec<(&str, Network, ListenAddr)> = self
            .apps
            .iter()
            .flat_map(|a| a.sockets().iter().map(move |(_, b)| (a.name(), b)))
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
        if let Some((pending, outcome)) = self.pending.report(ticket) {
            self.finish_listen(pending, outcome);
        }
    }

    /// Fails the binds whose helper missed its deadline (killing it).
    pub(crate) fn expire_listens(&mut self, now: Instant) {
        for pending in self.pending.take_expired(now) {
            self.finish_listen(pending, helpers::timed_out(PATH_SOCKET_TIMEOUT));
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
            .filter(|w| self.conns.contains(w.conn) && self.apps.is_live(&key.app, w.instance))
            .collect();
        let uid = owner.map_or(self.uid.as_raw(), |o| o.uid);
        let bound = match outcome {
            Outcome::Done(Some(file)) => {
                Bound::from_helper(&key, socket, file, owner, mode, &self.fd_store)
            }
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
}
