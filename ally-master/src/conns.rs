//! Every connection the master serves, by a stable id (the poll token):
//! adding, looking up, sending to, flushing and closing them. Nothing else
//! touches the table.
//!
//! Closing an instance's connection has a consequence elsewhere: its app
//! withdraws the lock waits it carried. So a send or flush that breaks a
//! connection returns why, and the caller closes it (see
//! [`Conns::remove`] and [`log_broken`]).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use ally_proto::{ControlResponse, ErrorCode, Failure, InstanceResponse};

use crate::conn::{Broken, Conn, Peer, Unsendable};
use crate::handover::fds::Export;
use crate::handover::snapshot::ConnSnap;
use crate::limits::HELLO_TIMEOUT;
use crate::log;
use crate::tally::Tally;

/// The connections, by id.
#[derive(Debug)]
pub struct Conns {
    map: BTreeMap<u64, Conn>,
    next: u64,
}

impl Default for Conns {
    fn default() -> Conns {
        Conns {
            map: BTreeMap::new(),
            next: 1,
        }
    }
}

impl Conns {
    /// Serves `conn` from now on; returns its new id.
    pub fn add(&mut self, conn: Conn) -> u64 {
        let id = self.next;
        self.next += 1;
        self.map.insert(id, conn);
        id
    }

    /// Connection `id`, if it is open.
    pub fn get(&self, id: u64) -> Option<&Conn> {
        self.map.get(&id)
    }

    /// Connection `id`, if it is open.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.map.get_mut(&id)
    }

    /// Whether connection `id` is open.
    pub fn contains(&self, id: u64) -> bool {
        self.map.contains_key(&id)
    }

    /// Every open connection with its id, in id order (to poll them).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Conn)> {
        self.map.iter().map(|(&id, c)| (id, c))
    }

    /// Closes connection `id` quietly: one that is closing anyway, or
    /// whose peer has been told why, and that carries no lock waits.
    pub fn close(&mut self, id: u64) {
        self.map.remove(&id);
    }

    /// Takes connection `id` out of the table, to close it: the caller
    /// tells its app if it is an instance's, and logs why with
    /// [`log_broken`].
    pub fn remove(&mut self, id: u64) -> Option<Conn> {
        self.map.remove(&id)
    }

    /// Queues `msg` on connection `id` and writes what the socket takes;
    /// the error says why the connection must be closed.
    ///
    /// A message too large for a frame is replaced by an error saying so:
    /// the client keeps its connection (and with it, perhaps, its locks).
    pub fn send<T: serde::Serialize>(
        &mut self,
        id: u64,
        msg: &T,
        fds: Vec<OwnedFd>,
    ) -> Result<(), Broken> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(());
        };
        let sent = match conn.send(msg, fds) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Unsendable(e))) => {
                let failure = Failure::new(
                    ErrorCode::LimitExceeded,
                    format!("the answer cannot be sent: {e}; ask for less at a time"),
                );
                let sent = match conn.peer {
                    Peer::Control => conn.send(&ControlResponse::Error(failure), Vec::new()),
                    _ => conn.send(&InstanceResponse::Error(failure), Vec::new()),
                };
                sent.map(drop)
            }
            Err(broken) => Err(broken),
        };
        sent.and_then(|()| conn.write_ready())
    }

    /// Writes connection `id`'s queued output, and closes a closing one
    /// once it has written everything; the error says why the connection
    /// must be closed.
    pub fn flush(&mut self, id: u64) -> Result<(), Broken> {
        let Some(conn) = self.map.get_mut(&id) else {
            return Ok(());
        };
        let closing = matches!(conn.peer, Peer::Closing { .. });
        conn.write_ready()?;
        if closing && !conn.wants_write() {
            self.map.remove(&id);
        }
        Ok(())
    }

    /// Writes what each connection's socket takes now (the master is
    /// exiting).
    pub fn flush_all(&mut self) {
        for conn in self.map.values_mut() {
            let _ = conn.write_ready();
        }
    }

    /// Whether some connection has requests left from the last turn and a
    /// peer that reads its answers.
    pub fn any_backlog(&self) -> bool {
        self.map.values().any(|c| c.backlog && !c.output_stalled())
    }

    /// The ids of the connections with requests left from the last turn
    /// whose peers read their answers.
    pub fn with_backlog(&self) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, c)| c.backlog && !c.output_stalled())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The nearest deadline of a connection: a hello, a closing linger, or
    /// a frame that must arrive whole within `frame_timeout`.
    pub fn next_deadline(&self, frame_timeout: Duration) -> Option<Instant> {
        let peers = self.map.values().filter_map(|c| match c.peer {
            Peer::Unknown { deadline } | Peer::Closing { deadline } => Some(deadline),
            _ => None,
        });
        let frames = self
            .map
            .values()
            .filter_map(|c| Some(c.frame_started()? + frame_timeout));
        peers.chain(frames).min()
    }

    /// Closes the connections whose hello or closing linger ran out by
    /// `now`; those without a hello are logged through `tally` (they can
    /// come by the thousand).
    pub fn expire(&mut self, now: Instant, tally: &mut Tally) {
        self.map.retain(|_, c| match c.peer {
            Peer::Unknown { deadline } if deadline <= now => {
                let line = || {
                    format!(
                        "closed connection from pid {} uid {}: no hello within {HELLO_TIMEOUT:?}",
                        c.cred.pid_text(),
                        c.cred.uid
                    )
                };
                if let Some(line) = tally.note(now, "closed with no hello in time", line) {
                    log!("{line}");
                }
                false
            }
            Peer::Closing { deadline } => deadline > now,
            _ => true,
        });
    }

    /// The connections whose frame has been arriving for longer than
    /// `timeout` by `now`.
    pub fn late_frames(&self, now: Instant, timeout: Duration) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, c)| c.frame_started().is_some_and(|t| t + timeout <= now))
            .map(|(&id, _)| id)
            .collect()
    }

    /// How many connections instance `id` of `app` has open.
    pub fn count_of_instance(&self, app: &str, id: u64) -> usize {
        self.map
            .values()
            .filter(|c| c.instance() == Some((app, id)))
            .count()
    }

    /// Closes the connections of instances for which `live` says no.
    pub fn close_dead_instances(&mut self, live: impl Fn(&str, u64) -> bool) {
        self.map.retain(|_, conn| match conn.instance() {
            None => true,
            Some((app, id)) => live(app, id),
        });
    }
}

impl Conns {
    /// Every connection as plain data, by id, and the next id.
    pub fn snapshot<'a>(
        &'a self,
        fds: &mut Export<'a>,
        now: Instant,
    ) -> (Vec<(u64, ConnSnap)>, u64) {
        let list = self
            .map
            .iter()
            .map(|(&id, conn)| (id, conn.snapshot(fds, now)))
            .collect();
        (list, self.next)
    }

    /// The table of `conns`, ids kept, handing out ids from `next`.
    pub fn restore(conns: Vec<(u64, Conn)>, next: u64) -> Conns {
        let next = conns
            .iter()
            .map(|(id, _)| id + 1)
            .max()
            .unwrap_or(1)
            .max(next);
        Conns {
            map: conns.into_iter().collect(),
            next,
        }
    }
}

/// Logs why `conn` was closed, if its peer misbehaved, through the tally:
/// a peer may open and break connections in a loop, and must not flood
/// the log with them.
pub fn log_broken(conn: &Conn, why: &Broken, tally: &mut Tally) {
    let pid = conn.cred.pid_text();
    let (what, line): (&'static str, Box<dyn FnOnce() -> String>) = match why {
        Broken::Gone => return,
        Broken::Malformed(e) => (
            "closed for a malformed frame",
            Box::new(move || format!("closed connection from pid {pid}: {e}")),
        ),
        Broken::Overflow => (
            "closed for not reading their replies",
            Box::new(move || {
                format!("closed connection from pid {pid}: it does not read its replies")
            }),
        ),
        Broken::NotAlly => (
            "closed as not ally clients",
            Box::new(move || format!("closed connection from pid {pid}: not an ally client")),
        ),
    };
    if let Some(line) = tally.note(Instant::now(), what, line) {
        log!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use ally_proto::frame::{self, MAX_FRAME_LEN};
    use ally_proto::{ErrorCode, InstanceResponse};

    use super::*;
    use crate::sys::PeerCred;

    /// A connection as `peer`, and the other end of its socket.
    fn conn(peer: Peer) -> (Conn, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let cred = PeerCred {
            pid: None,
            uid: rustix::process::geteuid(),
            gid: 0,
        };
        (Conn::new(ours, cred, peer), theirs)
    }

    fn instance(app: &str, id: u64) -> Peer {
        Peer::Instance {
            app: app.to_owned(),
            id,
        }
    }

    #[test]
    fn ids_are_stable_and_never_reused() {
        let mut conns = Conns::default();
        let (a, _a) = conn(Peer::Control);
        let (b, _b) = conn(Peer::Control);
        let a = conns.add(a);
        let b = conns.add(b);
        conns.close(a);
        let (c, _c) = conn(Peer::Control);
        let c = conns.add(c);
        assert_ne!(c, a);
        assert!(!conns.contains(a));
        assert!(conns.contains(b) && conns.contains(c));
        assert_eq!(conns.iter().map(|(id, _)| id).collect::<Vec<_>>(), [b, c]);
    }

    #[test]
    fn a_removed_instance_connection_names_its_app() {
        let mut conns = Conns::default();
        let (web, _web) = conn(instance("web", 7));
        let (ctl, _ctl) = conn(Peer::Control);
        let web = conns.add(web);
        let ctl = conns.add(ctl);
        let removed = conns.remove(web).unwrap();
        assert_eq!(removed.instance(), Some(("web", 7)));
        assert_eq!(conns.remove(ctl).unwrap().instance(), None);
        assert!(conns.remove(ctl).is_none());
        assert_eq!(conns.iter().count(), 0);
    }

    #[test]
    fn an_unsendable_answer_is_replaced_by_an_error_and_the_connection_kept() {
        let mut conns = Conns::default();
        let (web, peer) = conn(instance("web", 1));
        let web = conns.add(web);
        let huge = InstanceResponse::Error(Failure::new(
            ErrorCode::Internal,
            "x".repeat(MAX_FRAME_LEN + 1),
        ));
        assert!(conns.send(web, &huge, Vec::new()).is_ok());
        assert!(conns.contains(web));
        match frame::read_from::<_, InstanceResponse>(&peer).unwrap() {
            InstanceResponse::Error(failure) => {
                assert_eq!(failure.code, ErrorCode::LimitExceeded);
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn only_dead_instances_lose_their_connections() {
        let mut conns = Conns::default();
        let (live, _live) = conn(instance("web", 1));
        let (dead, _dead) = conn(instance("web", 2));
        let (ctl, _ctl) = conn(Peer::Control);
        let (live, dead, ctl) = (conns.add(live), conns.add(dead), conns.add(ctl));
        assert_eq!(conns.count_of_instance("web", 1), 1);
        conns.close_dead_instances(|app, id| app == "web" && id == 1);
        assert!(conns.contains(live) && conns.contains(ctl));
        assert!(!conns.contains(dead));
    }

    #[test]
    fn only_passed_hello_deadlines_close() {
        let now = Instant::now();
        let mut conns = Conns::default();
        let (late, _late) = conn(Peer::Unknown { deadline: now });
        let (early, _early) = conn(Peer::Unknown {
            deadline: now + Duration::from_secs(60),
        });
        let (late, early) = (conns.add(late), conns.add(early));
        assert_eq!(conns.next_deadline(Duration::from_secs(1)), Some(now));
        conns.expire(now, &mut Tally::default());
        assert!(!conns.contains(late));
        assert!(conns.contains(early));
    }
}
