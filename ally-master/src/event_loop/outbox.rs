//! What the master sends: answers queued on connections (through
//! [`Conns`]), reload outcomes to their waiters,
//! new log lines to `logs -f` clients; and closing a connection, which
//! withdraws its lock waits.

use ally_proto::{ControlResponse, InstanceResponse};

use std::os::fd::OwnedFd;

use super::Master;
use crate::app::{App, Notice, Waiter};
use crate::apps::Apps;
use crate::conn::Broken;
use crate::conns::{self, Conns};
use crate::listeners::Standing;
use crate::tally::Tally;

impl Master {
    /// What the master sends through: its connections; for the lock
    /// waits of an instance's connection that closes, its apps; and the
    /// tally, to log why a connection was closed without flooding.
    pub(crate) fn outbox(&mut self) -> Outbox<'_> {
        Outbox {
            conns: &mut self.conns,
            apps: &mut self.apps,
            tally: &mut self.tally,
        }
    }

    /// Queues `msg` on connection `id`, closing it if that fails.
    pub(crate) fn send<T: serde::Serialize>(&mut self, id: u64, msg: &T, fds: Vec<OwnedFd>) {
        self.outbox().send(id, msg, fds);
    }

    /// Closes the listening sockets the apps' changes leave unused (see
    /// [`Listeners::settle`]), then tells waiters how their requests went:
    /// a client told `stopped` finds the port closed. Every change to an
    /// app is followed by this.
    ///
    /// [`Listeners::settle`]: crate::listeners::Listeners::settle
    pub(crate) fn deliver(&mut self, notices: Vec<Notice>) {
        let apps = &self.apps;
        self.listeners
            .settle(|app| apps.by_name(app).map_or(Standing::Down, App::standing));
        self.outbox().deliver(notices);
    }

    /// Closes connection `id`, logging why if the peer misbehaved.
    pub(crate) fn drop_conn(&mut self, id: u64, why: &Broken) {
        self.outbox().drop_conn(id, why);
    }
}

/// Sending needs the connections, the apps only for what closing an
/// instance's connection withdraws, and the tally for why it closed:
/// nothing else of the master.
#[derive(Debug)]
pub(crate) struct Outbox<'a> {
    conns: &'a mut Conns,
    apps: &'a mut Apps,
    tally: &'a mut Tally,
}

impl Outbox<'_> {
    /// Sends the log lines written this turn to `ally-ctl logs -f` clients,
    /// forgetting those that went away.
    pub(crate) fn send_to_followers(&mut self) {
        for (lines, followers) in self.apps.take_new_lines() {
            for conn in followers {
                self.send(conn, &ControlResponse::LogLines(lines.clone()), Vec::new());
            }
        }
        let conns = &self.conns;
        self.apps.retain_followers(|c| conns.contains(c));
    }

    /// Closes connection `id`, logging why if the peer misbehaved.
    pub(crate) fn drop_conn(&mut self, id: u64, why: &Broken) {
        let Some(conn) = self.conns.remove(id) else {
            return;
        };
        if let Some((app, _)) = conn.instance() {
            self.instance_conn_closed(id, app);
        }
        conns::log_broken(&conn, why, self.tally);
    }

    /// An instance's connection closed: withdraw the lock waits it carried.
    /// Its holds stay: they belong to the instance, released when it exits.
    fn instance_conn_closed(&mut self, conn: u64, app: &str) {
        let replies = self.apps.conn_closed(app, conn);
        self.deliver(replies);
    }

    /// Queues `msg` on connection `id` (see [`Conns::send`]), closing it if
    /// that fails.
    pub(crate) fn send<T: serde::Serialize>(&mut self, id: u64, msg: &T, fds: Vec<OwnedFd>) {
        if let Err(broken) = self.conns.send(id, msg, fds) {
            self.drop_conn(id, &broken);
        }
    }

    /// Tells waiters how their reloads went.
    pub(crate) fn deliver(&mut self, notices: Vec<Notice>) {
        for notice in notices {
            match notice {
                Notice::Started {
                    waiter,
                    app,
                    instance,
                } => match waiter {
                    Waiter::Control { conn, .. } => {
                        self.send(
                            conn,
                            &ControlResponse::ReloadStarted { app, instance },
                            Vec::new(),
                        );
                    }
                    Waiter::Instance { conn } => {
                        self.send(
                            conn,
                            &InstanceResponse::ReloadStarted { instance },
                            Vec::new(),
                        );
                    }
                    Waiter::Lifecycle { .. } => {}
                },
                Notice::Done {
                    waiter,
                    app,
                    instance,
                } => {
                    let done = match waiter {
                        Waiter::Control { conn, wait: true } => {
                            Some((conn, ControlResponse::ReloadDone { app, instance }))
                        }
                        Waiter::Lifecycle { conn } => Some((
                            conn,
                            ControlResponse::Done(format!("{app}: instance {instance} is main")),
                        )),
                        Waiter::Control { wait: false, .. } | Waiter::Instance { .. } => None,
                    };
                    if let Some((conn, response)) = done {
                        self.send(conn, &response, Vec::new());
                    }
                }
                Notice::Reply(reply) => self.send(reply.conn, &reply.reply, Vec::new()),
                Notice::Control { conn, response } => self.send(conn, &response, Vec::new()),
                Notice::Failed { waiter, failure } => match waiter {
                    Waiter::Control { conn, .. } | Waiter::Lifecycle { conn } => {
                        self.send(conn, &ControlResponse::Error(failure), Vec::new());
                    }
                    Waiter::Instance { conn } => {
                        self.send(conn, &InstanceResponse::Error(failure), Vec::new());
                    }
                },
            }
        }
    }
}
