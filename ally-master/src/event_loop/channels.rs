//! Instances' own connections: the channel made at spawn, and more made
//! on request over it. Identity is the connection itself: each is
//! registered as the instance's from the moment it exists, and closed when
//! the instance is reaped, so no other process can speak as an instance.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use ally_proto::{ErrorCode, Failure};

use super::Master;
use crate::app::App;
use crate::conn::{Conn, Peer};
use crate::conns::Conns;
use crate::limits::MAX_INSTANCE_CONNECTIONS;

impl Master {
    /// Serves the channels of instances spawned since the last call.
    pub(crate) fn adopt_channels(&mut self) {
        for conn in self.apps.take_channels() {
            self.conns.add(conn);
        }
    }

    /// Closes the connections of instances that are no longer live: a
    /// descriptor an instance passed on before it exited speaks for no one.
    pub(crate) fn close_dead_instance_conns(&mut self) {
        let apps = &self.apps;
        self.conns
            .close_dead_instances(|app, id| apps.is_live(app, id));
    }
}

/// A new connection, served in `conns`, for instance `id` of `app`;
/// returns the end to send it.
///
/// # Errors
///
/// At [`MAX_INSTANCE_CONNECTIONS`], or if no socket pair can be made.
pub(crate) fn connect_instance(conns: &mut Conns, app: &App, id: u64) -> Result<OwnedFd, Failure> {
    let name = app.name().to_owned();
    let open = conns.count_of_instance(&name, id);
    if open >= MAX_INSTANCE_CONNECTIONS {
        return Err(Failure::new(
            ErrorCode::LimitExceeded,
            format!(
                "instance {id} of {name} already has {open} connections to the master, \
                 the most one instance may have"
            ),
        ));
    }
    let Some(cred) = app.instances().iter().find(|i| i.id == id).map(|i| i.cred) else {
        return Err(Failure::new(
            ErrorCode::NotPermitted,
            format!("instance {id} of {name} is no longer live"),
        ));
    };
    let internal = |e: std::io::Error| {
        Failure::new(
            ErrorCode::Internal,
            format!("cannot make a connection for instance {id} of {name}: {e}"),
        )
    };
    let (ours, theirs) = UnixStream::pair().map_err(internal)?;
    ours.set_nonblocking(true).map_err(internal)?;
    let peer = Peer::Instance {
        app: name.clone(),
        id,
    };
    conns.add(Conn::new(ours, cred, peer));
    Ok(theirs.into())
}
