//! What the master does with each message a client sends: the hello and
//! its credential checks, instance requests, control requests.

use std::time::Instant;

use ally_proto::{
    ControlRequest, ErrorCode, Failure, Hello, HelloReply, InstanceInfo, InstanceRequest,
    InstanceResponse, MAGIC, PROTOCOL_VERSION, Report, Role,
};

use super::Master;
use super::channels::connect_instance;
use crate::app::{Notice, Waiter};
use crate::conn::{Broken, Peer};
use crate::limits::{CLOSE_LINGER, MAX_REPORT_TEXT, REQUESTS_PER_TURN};
use crate::log;
use crate::sys::PeerCred;
use crate::users;

impl Master {
    /// Handles the complete messages connection `id` has buffered, at most
    /// [`REQUESTS_PER_TURN`]; sets its `backlog` if some may be left.
    pub(crate) fn handle_input(&mut self, id: u64) {
        for handled in 0.. {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            // At most REQUESTS_PER_TURN, so other clients are served too;
            // the event loop comes back for the rest.
            // And none while the peer leaves its answers unread: its
            // requests wait in its buffer, and it is not read meanwhile.
            conn.backlog = handled >= REQUESTS_PER_TURN || conn.output_stalled();
            if conn.backlog {
                return;
            }
            let step = match conn.peer.clone() {
                Peer::Unknown { .. } => conn
                    .next::<Hello>()
                    .map(|m| m.map(|h| self.on_hello(id, h))),
                Peer::Channel { app, id: instance } => conn
                    .next::<Hello>()
                    .map(|m| m.map(|h| self.on_channel_hello(id, app, instance, h))),
                Peer::Instance { app, id: instance } => conn
                    .next::<InstanceRequest>()
                    .map(|m| m.map(|r| self.on_instance_request(id, &app, instance, r))),
                Peer::Control => conn
                    .next::<ControlRequest>()
                    .map(|m| m.map(|r| self.on_control_request(id, r))),
                Peer::Closing { .. } => return,
            };
            match step {
                Ok(Some(())) => {}
                Ok(None) => return,
                Err(broken) => {
                    self.drop_conn(id, &broken);
                    return;
                }
            }
        }
    }

    fn on_hello(&mut self, id: u64, hello: Hello) {
        let Some(conn) = self.conns.get(id) else {
            return;
        };
        let cred = conn.cred;
        if hello.magic != MAGIC {
            self.drop_conn(id, &Broken::NotAlly);
            return;
        }
        let peer = if hello.version != PROTOCOL_VERSION {
            Err(version_mismatch(
                hello.version,
                "the client",
                "use ally-ctl from the same release as the master",
            ))
        } else {
            match hello.role {
                Role::Control if self.may_control(&cred) => Ok(Peer::Control),
                Role::Control => Err(Failure::new(
                    ErrorCode::NotPermitted,
                    format!(
                        "uid {} may not control this master (it runs as uid {}{}); \
                         run ally-ctl as that user or as root",
                        cred.uid.as_raw(),
                        self.uid.as_raw(),
                        self.control_group
                            .map_or_else(String::new, |g| format!(" and admits group {g}"))
                    ),
                )),
                Role::Instance => Err(Failure::new(
                    ErrorCode::NotPermitted,
                    "instances talk to the master over the channel it gave them at start \
                     (ALLY_CHANNEL_FD), not over the control socket",
                )),
            }
        };
        self.answer_hello(id, peer);
    }

    /// The hello on instance `instance`'s channel: the library's version
    /// check. The channel already says who the peer is.
    fn on_channel_hello(&mut self, id: u64, app: String, instance: u64, hello: Hello) {
        if hello.magic != MAGIC {
            self.drop_conn(id, &Broken::NotAlly);
            return;
        }
        let peer = if hello.version != PROTOCOL_VERSION {
            Err(version_mismatch(
                hello.version,
                &format!("{app}#{instance}'s ally library"),
                "rebuild the service against the ally release of the master",
            ))
        } else if hello.role != Role::Instance {
            Err(Failure::new(
                ErrorCode::BadRequest,
                "an instance's channel carries instance requests only",
            ))
        } else {
            Ok(Peer::Instance { app, id: instance })
        };
        self.answer_hello(id, peer);
    }

    /// Welcomes connection `id` as `peer`, or refuses it and closes it
    /// once the refusal is read.
    fn answer_hello(&mut self, id: u64, peer: Result<Peer, Failure>) {
        let Some(cred) = self.conns.get(id).map(|c| c.cred) else {
            return;
        };
        match peer {
            Ok(peer) => {
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.peer = peer;
                }
                let welcome = HelloReply::Welcome {
                    version: PROTOCOL_VERSION,
                    master_pid: std::process::id(),
                };
                self.send(id, &welcome, Vec::new());
            }
            Err(failure) => {
                log!(
                    "refused connection from pid {} uid {}: {}",
                    cred.pid_text(),
                    cred.uid.as_raw(),
                    failure.message
                );
                self.send(id, &HelloReply::Refused(failure), Vec::new());
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.peer = Peer::Closing {
                        deadline: Instant::now() + CLOSE_LINGER,
                    };
                    if !conn.wants_write() {
                        self.conns.close(id);
                    }
                }
            }
        }
    }

    /// Whether a control client with `cred` may control this master: root,
    /// the master's own user, or a member of `[master] group`.
    fn may_control(&self, cred: &PeerCred) -> bool {
        if cred.uid.is_root() || cred.uid == self.uid {
            return true;
        }
        self.control_group.is_some_and(|gid| {
            cred.gid == gid
                || cred
                    .pid
                    .is_some_and(|pid| users::has_supplementary_group(pid, gid))
        })
    }

    fn on_instance_request(&mut self, conn: u64, app_name: &str, id: u64, req: InstanceRequest) {
        let Some(app_index) = self.apps.id_of(app_name) else {
            return;
        };
        let live = self.apps[app_index].is_live(id);
        if !live {
            let failure = Failure::new(
                ErrorCode::NotPermitted,
                format!("instance {id} of {app_name} is no longer live"),
            );
            self.send(conn, &InstanceResponse::Error(failure), Vec::new());
            return;
        }
        let mut replies = Vec::new();
        let app = &mut self.apps[app_index];
        if let Some(reply) = app.state_request(id, conn, &req, Instant::now(), &mut replies) {
            if let Some(reply) = reply {
                self.send(conn, &reply, Vec::new());
            }
            self.deliver(replies.into_iter().map(Notice::Reply).collect());
            return;
        }
        let (reply, fds) = match req {
            InstanceRequest::Listen(spec) => match self.on_listen(conn, app_index, id, &spec) {
                Some(answer) => answer,
                // Answered once the path-socket helper reports.
                None => return,
            },
            InstanceRequest::Unlisten(spec) => match self.listeners.release(app_name, id, &spec) {
                Ok(()) => (InstanceResponse::Done, Vec::new()),
                Err(failure) => (InstanceResponse::Error(failure), Vec::new()),
            },
            InstanceRequest::Ready => {
                let mut notices = Vec::new();
                self.apps[app_index].on_ready(id, &mut notices);
                self.send(conn, &InstanceResponse::Done, Vec::new());
                self.deliver(notices);
                return;
            }
            InstanceRequest::Report(report) => {
                if let Some(i) = self.apps[app_index].instance_mut(id) {
                    i.report = bounded(report);
                }
                (InstanceResponse::Done, Vec::new())
            }
            InstanceRequest::Reload => {
                let mut notices = Vec::new();
                self.apps[app_index].request_reload(Waiter::Instance { conn }, &mut notices);
                self.deliver(notices);
                return;
            }
            InstanceRequest::Connect => {
                match connect_instance(&mut self.conns, &self.apps[app_index], id) {
                    Ok(fd) => (InstanceResponse::Connected { fds: 1 }, vec![fd]),
                    Err(failure) => {
                        let line = format!("{app_name}#{id}: {}", failure.message);
                        self.note("connections refused to an instance at its limit", || line);
                        (InstanceResponse::Error(failure), Vec::new())
                    }
                }
            }
            InstanceRequest::Info => {
                let app = &self.apps[app_index];
                let started_unix_ms = app
                    .instances()
                    .iter()
                    .find(|i| i.id == id)
                    .map_or(0, |i| i.started_unix_ms);
                (
                    InstanceResponse::Info(InstanceInfo {
                        app: app_name.to_owned(),
                        instance: id,
                        started_unix_ms,
                    }),
                    Vec::new(),
                )
            }
            // State requests were answered above; this arm only keeps the
            // match total as the enum grows.
            other => (
                InstanceResponse::Error(Failure::new(
                    ErrorCode::BadRequest,
                    format!("this master does not handle {other:?}"),
                )),
                Vec::new(),
            ),
        };
        self.send(conn, &reply, fds);
    }
}

/// The refusal of a hello in protocol `version`, spoken by `client`, with
/// what to do about it.
fn version_mismatch(version: u32, client: &str, advice: &str) -> Failure {
    Failure::new(
        ErrorCode::VersionMismatch,
        format!(
            "this master speaks protocol {PROTOCOL_VERSION}, {client} speaks {version}; {advice}"
        ),
    )
}

/// `report` with each text cut to [`MAX_REPORT_TEXT`] bytes (at a
/// character boundary, marked `…`): what one instance reports is shown in
/// every `list`, which must always fit in a frame.
fn bounded(report: Report) -> Report {
    let cut = |text: Option<String>| {
        text.map(|mut t| {
            if t.len() > MAX_REPORT_TEXT {
                let mut end = MAX_REPORT_TEXT;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t.truncate(end);
                t.push('…');
            }
            t
        })
    };
    Report {
        tasks: report.tasks,
        version: cut(report.version),
        commit: cut(report.commit),
        text: cut(report.text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_texts_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REPORT_TEXT);
        let report = bounded(Report {
            tasks: Some(1),
            version: Some("1.0".into()),
            commit: None,
            text: Some(long),
        });
        let text = report.text.unwrap();
        assert!(text.len() <= MAX_REPORT_TEXT + '…'.len_utf8());
        assert!(text.ends_with('…'));
        assert_eq!(report.version.as_deref(), Some("1.0"));
        assert_eq!(report.tasks, Some(1));
    }
}
