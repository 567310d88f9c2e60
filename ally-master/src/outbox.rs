//! What the master sends: answers queued on connections (with an error in
//! place of one too large for a frame), reload outcomes to their waiters,
//! new log lines to `logs -f` clients; and closing a connection, which
//! withdraws its lock waits.

use ally_proto::{ControlResponse, ErrorCode, Failure, InstanceResponse};

use crate::app::{Notice, Waiter};
use crate::conn::{Broken, Peer, Unsendable};
use crate::event_loop::Master;

impl Master {
    /// Sends the log lines written this turn to `ally-ctl logs -f` clients,
    /// forgetting those that went away.
    pub(crate) fn send_to_followers(&mut self) {
        for index in 0..self.apps.len() {
            let app = &mut self.apps[index];
            if app.unsent.is_empty() {
                continue;
            }
            let lines = std::mem::take(&mut app.unsent);
            let followers = app.followers.clone();
            for conn in followers {
                self.send(conn, &ControlResponse::LogLines(lines.clone()), Vec::new());
            }
            let conns = &self.conns;
            self.apps[index].followers.retain(|c| conns.contains_key(c));
        }
    }

    /// Closes connection `id`, logging why if the peer misbehaved.
    pub(crate) fn drop_conn(&mut self, id: u64, why: &Broken) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some((app, _)) = conn.instance() {
            self.instance_conn_closed(id, app);
        }
        let pid = conn.cred.pid_text();
        // Logged through the tally: a peer may open and break connections
        // in a loop, and must not flood the log with them.
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
        self.note(what, line);
    }

    /// An instance's connection closed: withdraw the lock waits it carried.
    /// Its holds stay: they belong to the instance, released when it exits.
    fn instance_conn_closed(&mut self, conn: u64, app: &str) {
        let Some(app_index) = self.apps.iter().position(|a| a.name() == app) else {
            return;
        };
        let mut replies = Vec::new();
        self.apps[app_index].state.conn_closed(conn, &mut replies);
        self.deliver(replies.into_iter().map(Notice::Reply).collect());
    }

    /// Queues `msg` on connection `id`, closing it if that fails.
    pub(crate) fn send<T: serde::Serialize>(
        &mut self,
        id: u64,
        msg: &T,
        fds: Vec<std::os::fd::OwnedFd>,
    ) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let sent = match conn.send(msg, fds) {
            Ok(Ok(())) => Ok(()),
            // Too large for a frame: the client gets an error in its place,
            // and keeps its connection (and with it, perhaps, its locks).
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
        if let Err(broken) = sent.and_then(|()| conn.write_ready()) {
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
