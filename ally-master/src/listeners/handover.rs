//! The listener table across an in-place upgrade: as plain data, and back.

use std::os::fd::AsFd;

use ally_proto::ListenSpec;

use super::{Bound, Key, Listeners, SocketFile};
use crate::fd_store::{FdName, FdStore, Parked};
use crate::handover::HandoverError;
use crate::handover::fds::{Export, Import};
use crate::handover::snapshot::{BoundSnap, ListenerSnap, SocketFileSnap};
use crate::helpers::Owner;
use crate::path_socket::FileId;

impl Bound {
    /// As plain data, its socket listed in `fds`.
    pub fn snapshot<'a>(&'a self, fds: &mut Export<'a>) -> BoundSnap {
        BoundSnap {
            fd: fds.add(self.fd.as_fd()),
            local: self.local.clone(),
            file: self.file.as_ref().map(|f| SocketFileSnap {
                path: f.path.clone(),
                dev: f.id.dev,
                ino: f.id.ino,
                owner: f.owner.map(|o| (o.uid, o.gid)),
            }),
            spec: self.spec.clone(),
            parked: self.parked.name().map(|name| name.as_str().to_owned()),
        }
    }

    /// The socket `snap` describes (its file removed when it is dropped,
    /// as before the upgrade), still parked in `store` if it was: nothing
    /// is sent to the store, which holds it already.
    ///
    /// # Errors
    ///
    /// A missing descriptor.
    pub fn restore(
        snap: BoundSnap,
        fds: &mut Import,
        store: &FdStore,
    ) -> Result<Bound, HandoverError> {
        let parked = snap
            .parked
            .as_deref()
            .and_then(FdName::given)
            .map_or_else(Parked::none, |name| store.keep(name));
        Ok(Bound {
            fd: fds.take(snap.fd)?,
            local: snap.local,
            file: snap.file.map(|f| SocketFile {
                path: f.path,
                id: FileId {
                    dev: f.dev,
                    ino: f.ino,
                },
                owner: f.owner.map(|(uid, gid)| Owner { uid, gid }),
            }),
            spec: snap.spec,
            parked,
        })
    }
}

impl Listeners {
    /// The table as plain data.
    pub fn snapshot<'a>(&'a self, fds: &mut Export<'a>) -> Vec<ListenerSnap> {
        self.entries
            .iter()
            .map(|(key, entry)| ListenerSnap {
                app: key.app.clone(),
                network: key.network,
                address: key.addr.to_string(),
                mode: entry.mode,
                bound: entry.bound.snapshot(fds),
                holders: entry.holders.iter().copied().collect(),
            })
            .collect()
    }

    /// The table `snaps` describe.
    ///
    /// # Errors
    ///
    /// A missing descriptor, or an address that no longer parses.
    pub fn restore(
        snaps: Vec<ListenerSnap>,
        fds: &mut Import,
        store: &FdStore,
    ) -> Result<Listeners, HandoverError> {
        let mut table = Listeners::default();
        for snap in snaps {
            let spec = ListenSpec {
                network: snap.network,
                address: snap.address,
                mode: snap.mode,
            };
            let (key, _) =
                Key::of(&snap.app, &spec).map_err(|f| HandoverError::Restore(f.message))?;
            let bound = Bound::restore(snap.bound, fds, store)?;
            table.insert(key, bound, snap.mode, snap.holders.into_iter().collect());
        }
        Ok(table)
    }

    /// Whether every key's address reads back as itself from its text
    /// (what [`restore`](Self::restore) needs).
    pub fn addresses_round_trip(&self) -> bool {
        self.entries.keys().all(|key| {
            let spec = ListenSpec {
                network: key.network,
                address: key.addr.to_string(),
                mode: None,
            };
            Key::of(&key.app, &spec).is_ok_and(|(k, _)| k == *key)
        })
    }
}
