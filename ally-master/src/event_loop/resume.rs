//! A master restored from the state its previous image handed over
//! ([`crate::handover`]), and its first moments: answering the upgrade's
//! waiter, reaping what exited during the exec, telling systemd it is
//! ready again.

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use ally_proto::{ControlResponse, ErrorCode, Failure};
use rustix::process::Rlimit;

use super::upgrade::{Exe, Upgrade};
use super::{Master, Shutdown};
use crate::app::App;
use crate::apps::Apps;
use crate::conn::Conn;
use crate::conns::Conns;
use crate::control_socket::ControlSocket;
use crate::fd_store::FdStore;
use crate::handover::HandoverError;
use crate::handover::fds::Import;
use crate::handover::snapshot::MasterSnap;
use crate::instance::Launch;
use crate::limits::READ_CHUNK;
use crate::listeners::Listeners;
use crate::pending_listens::PendingListens;
use crate::sd_notify::Notifier;
use crate::signals::Signals;
use crate::tally::Tally;
use crate::version::VERSION;
use crate::{log, sys};

impl Master {
    /// The master `snap` describes, its descriptors claimed from `fds`,
    /// running the binary `exe`.
    ///
    /// # Errors
    ///
    /// Any part that does not restore; what was claimed is closed then
    /// (duplicates: the originals stay in `fds` for the way back).
    pub fn restore(
        snap: MasterSnap,
        fds: &mut Import,
        signals: Signals,
        exe: Exe,
    ) -> Result<Master, HandoverError> {
        if snap.fd_count as usize != fds.len() {
            return Err(HandoverError::Restore(format!(
                "the state names {} descriptors, {} were passed",
                snap.fd_count,
                fds.len()
            )));
        }
        let now = Instant::now();
        let uid = rustix::process::geteuid();
        let launch = Launch {
            socket: snap.socket,
            fd_limit: snap
                .fd_limit
                .map(|(current, maximum)| Rlimit { current, maximum }),
        };
        let control = ControlSocket::new(UnixListener::from(fds.take(snap.control)?), uid);
        let ready_fd = snap.ready_fd.map(|i| fds.take(i)).transpose()?;
        // The sockets are in systemd's store already (if it has one):
        // they are kept there as they are, nothing is sent again.
        let notifier = Notifier::from_env();
        let fd_store = FdStore::new(&notifier);
        let apps = snap
            .apps
            .into_iter()
            .map(|(id, app)| Ok((id, App::restore(app, fds, now, launch.clone(), &fd_store)?)))
            .collect::<Result<Vec<_>, HandoverError>>()?;
        let listeners = Listeners::restore(snap.listeners, fds, &fd_store)?;
        let mut conns = Vec::with_capacity(snap.conns.len());
        for (id, conn) in snap.conns {
            let accepted = if conn.accepted {
                let uid = rustix::process::Uid::from_raw(conn.cred.uid);
                match control.readmit(uid) {
                    Some(parts) => Some(parts),
                    // Over the bounds of this build: not carried.
                    None => continue,
                }
            } else {
                None
            };
            conns.push((id, Conn::restore(conn, fds, now, accepted)?));
        }
        Ok(Master {
            frame_timeout: Duration::from_millis(snap.frame_timeout_ms),
            config_path: snap.config_path,
            log_dir: snap.log_dir,
            launch,
            control,
            signals,
            apps: Apps::restore(apps, snap.next_app),
            listeners,
            pending: PendingListens::default(),
            conns: Conns::restore(conns, snap.next_conn),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            tally: Tally::default(),
            shutdown: Shutdown::Running,
            uid,
            control_group: snap.control_group,
            notifier,
            fd_store,
            ready_fd,
            announced: snap.announced,
            upgrade: Upgrade::Idle,
            upgrade_signal_joined: false,
            exe: Exe {
                fd: exe.fd,
                path: snap.exe_path,
                argv: exe.argv,
            },
        })
    }

    /// Serves on after an exec: as the new master of an upgrade from
    /// `from`, or, with `failed`, as the old one the new one gave back to.
    /// `waiter` is the control connection waiting for the outcome.
    ///
    /// # Errors
    ///
    /// Only if polling itself fails.
    pub fn run_resumed(
        &mut self,
        from: &str,
        failed: Option<String>,
        waiter: Option<u64>,
    ) -> std::io::Result<()> {
        let _ = sys::raise_fd_limit();
        let answer = match &failed {
            None => {
                log!(
                    "pid {} upgraded in place: ally-master {from} -> {VERSION}, {} app(s), \
                     {} connection(s) carried over",
                    std::process::id(),
                    self.apps.len(),
                    self.conns.iter().count()
                );
                ControlResponse::Upgraded {
                    from: from.to_owned(),
                    to: VERSION.to_owned(),
                }
            }
            Some(why) => {
                let message = format!("{why}; ally-master {VERSION} serves on");
                log!("upgrade failed: {message}");
                ControlResponse::Error(Failure::new(ErrorCode::ReloadFailed, message))
            }
        };
        if let Some(conn) = waiter {
            self.send(conn, &answer, Vec::new());
        }
        // Children that exited while the exec ran: their SIGCHLD is pending
        // too, this only does not wait for it.
        self.reap();
        self.notifier.send("READY=1");
        self.serve()
    }
}
