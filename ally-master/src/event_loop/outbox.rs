//! What the master sends: answers queued on connections (through
//! [`Conns`](crate::conns::Conns)), reload outcomes to their waiters,
//! new log lines to `logs -f` clients; and closing a connection, which
//! withdraws its lock waits.

use ally_proto::{ControlResponse, InstanceResponse};

use super::Master;
use crate::app::{Notice, Waiter};
use crate::conn::Broken;
use crate::conns::Closed;

impl Master {
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
        if let Some(closed) = self.conns.close_broken(id, why) {
            self.instance_conn_closed(closed);
        }
    }

    /// An instance's connection closed: withdraw the lock waits it carried.
    /// Its holds stay: they belong to the instance, released when it exits.
    pub(crate) fn instance_conn_closed(&mut self, closed: Closed) {
        let replies = self.apps.conn_closed(&closed.app, closed.conn);
        self.deliver(replies);
    }

    /// Queues `msg` on connection `id` (see [`Conns::send`](crate::conns::Conns::send)), closing it if
    /// that fails.
    pub(crate) fn send<T: serde::Serialize>(
        &mut self,
        id: u64,
        msg: &T,
        fds: Vec<std::os::fd::OwnedFd>,
    ) {
        if let Some(closed) = self.conns.send(id, msg, fds) {
            self.instance_conn_closed(closed);
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
