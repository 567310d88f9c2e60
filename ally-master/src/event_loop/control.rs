//! What the master does with each control request (`ally-ctl`).

use ally_proto::{ControlRequest, ControlResponse, ErrorCode, Failure};
use rustix::process::Signal;

use super::Master;
use crate::app::Waiter;
use crate::apps::AppId;
use crate::log;

impl Master {
    pub(crate) fn on_control_request(&mut self, conn: u64, req: ControlRequest) {
        let mut notices = Vec::new();
        match req {
            ControlRequest::List => {
                let apps = self
                    .apps
                    .iter()
                    .map(|a| a.status(&self.listeners))
                    .collect();
                self.send(conn, &ControlResponse::Apps(apps), Vec::new());
            }
            ControlRequest::Status { app } => {
                if let Some(index) = self.app_index(conn, &app) {
                    let status = self.apps[index].status(&self.listeners);
                    self.send(conn, &ControlResponse::Apps(vec![status]), Vec::new());
                }
            }
            ControlRequest::Reload { app, wait } => {
                if let Some(index) = self.app_index(conn, &app) {
                    log!("{app}: reload asked");
                    let waiter = Waiter::Control { conn, wait };
                    self.apps[index].request_reload(waiter, &mut notices);
                }
            }
            ControlRequest::Start { app } => {
                if let Some(index) = self.app_index(conn, &app) {
                    log!("{app}: start asked");
                    let waiter = Waiter::Lifecycle { conn };
                    self.apps[index].start(waiter, &mut notices);
                }
            }
            ControlRequest::Stop { app } => {
                if let Some(index) = self.app_index(conn, &app) {
                    log!("{app}: stop asked");
                    self.apps[index].stop(conn, &mut notices);
                }
            }
            ControlRequest::Restart { app } => {
                if let Some(index) = self.app_index(conn, &app) {
                    log!("{app}: restart asked");
                    let waiter = Waiter::Lifecycle { conn };
                    self.apps[index].restart(waiter, &mut notices);
                }
            }
            ControlRequest::Kill { app, signal } => {
                if let Some(index) = self.app_index(conn, &app) {
                    let response = match Signal::from_named_raw(signal) {
                        Some(sig) => {
                            let sent = self.apps[index].kill(sig);
                            ControlResponse::Done(format!(
                                "{app}: sent signal {signal} to {sent} instance(s)"
                            ))
                        }
                        None => ControlResponse::Error(Failure::new(
                            ErrorCode::BadRequest,
                            format!("{signal} is not a signal number this system knows"),
                        )),
                    };
                    self.send(conn, &response, Vec::new());
                }
            }
            ControlRequest::Logs { app, lines, follow } => {
                if let Some(index) = self.app_index(conn, &app) {
                    let lines = usize::try_from(lines).unwrap_or(usize::MAX);
                    let tail = self.apps[index].log().tail(lines);
                    self.send(conn, &ControlResponse::LogLines(tail), Vec::new());
                    if follow {
                        self.apps.follow(index, conn);
                    }
                }
            }
            ControlRequest::Reopen => {
                let response = match self.apps.reopen_logs() {
                    Ok(n) => ControlResponse::Done(format!("reopened {n} log file(s)")),
                    Err(e) => ControlResponse::Error(Failure::new(ErrorCode::Internal, e)),
                };
                self.send(conn, &response, Vec::new());
            }
            ControlRequest::Upgrade { wait } => {
                log!("upgrade asked");
                self.request_upgrade(Some((conn, wait)));
            }
            ControlRequest::Version => {
                let version = ControlResponse::MasterVersion {
                    version: crate::version::VERSION.to_owned(),
                    handover: crate::version::HANDOVER_VERSION,
                };
                self.send(conn, &version, Vec::new());
            }
            ControlRequest::Reread => {
                let response = match self.reread() {
                    Ok(summary) => ControlResponse::Done(summary),
                    Err(failure) => ControlResponse::Error(failure),
                };
                self.send(conn, &response, Vec::new());
            }
        }
        self.deliver(notices);
    }

    /// The id of app `name`, or `None` after telling `conn` which apps
    /// exist.
    fn app_index(&mut self, conn: u64, name: &str) -> Option<AppId> {
        let found = self.apps.id_of(name);
        if found.is_none() {
            let known = self.apps.names();
            let failure = Failure::new(
                ErrorCode::UnknownApp,
                format!(
                    "no app named `{name}`; this master runs: {}",
                    known.join(", ")
                ),
            );
            self.send(conn, &ControlResponse::Error(failure), Vec::new());
        }
        found
    }
}
