//! The sockets of the app's `listen` key: bound while the app is
//! configured, handed to every instance at fds 3.., kept across a reread
//! for each address that stays.

use ally_proto::ListenSpec;

use super::App;
use crate::config::AppConfig;
use crate::listeners::Bound;

impl App {
    /// Its sockets, by `listen` name, in order.
    pub fn sockets(&self) -> &[(String, Bound)] {
        &self.sockets
    }

    /// Whether it holds a socket for `spec` already.
    pub fn holds(&self, spec: &ListenSpec) -> bool {
        self.sockets.iter().any(|(_, b)| b.spec() == Some(spec))
    }

    /// Takes the sockets for `new`'s `listen` entries, in order: those it
    /// holds for the same address, else the next of `fresh`; the rest are
    /// closed.
    pub fn rebind(&mut self, new: &AppConfig, fresh: Vec<Bound>) {
        let old = std::mem::take(&mut self.sockets);
        self.sockets = assemble(new, old, fresh);
    }

    /// Closes its sockets (the master is exiting).
    pub fn close_sockets(&mut self) {
        self.sockets.clear();
    }
}

/// The sockets for `app`'s `listen` entries, in order: taken from `old`
/// when the same address was bound before, else the next of `fresh`.
pub fn assemble(
    app: &AppConfig,
    mut old: Vec<(String, Bound)>,
    fresh: Vec<Bound>,
) -> Vec<(String, Bound)> {
    let mut fresh = fresh.into_iter();
    app.listen
        .iter()
        .filter_map(|decl| {
            let kept = old
                .iter()
                .position(|(_, b)| b.spec() == Some(&decl.spec))
                .map(|i| old.swap_remove(i).1);
            kept.or_else(|| fresh.next())
                .map(|bound| (decl.name.clone(), bound))
        })
        .collect()
}
