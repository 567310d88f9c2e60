//! Every app the master supervises, by a stable id ([`AppId`], the poll
//! token of its instances' pipes): lookups by id and by name, and the
//! operations the loop applies to all of them at once. Each app's own life
//! is its [`App`]; this is only the table.

use std::ops::{Index, IndexMut};
use std::time::Instant;

use rustix::process::{Pid, WaitStatus};

use crate::app::{App, Notice};
use crate::conn::{Conn, Peer};
use crate::listeners::Listeners;
use crate::log;

/// An app's id: stable while it is in the table, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppId(u64);

/// The apps, by id, in the order they were added (the config's order,
/// then those a reread added).
#[derive(Debug)]
pub struct Apps {
    list: Vec<(AppId, App)>,
    next: u64,
}

impl Apps {
    /// A table holding `apps`, in order.
    pub fn new(apps: Vec<App>) -> Apps {
        let mut table = Apps {
            list: Vec::with_capacity(apps.len()),
            next: 0,
        };
        for app in apps {
            table.add(app);
        }
        table
    }

    /// Supervises `app` from now on; returns its id.
    pub fn add(&mut self, app: App) -> AppId {
        let id = AppId(self.next);
        self.next += 1;
        self.list.push((id, app));
        id
    }

    /// How many apps there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Every app, in order.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.list.iter().map(|(_, app)| app)
    }

    /// Every app, in order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut App> {
        self.list.iter_mut().map(|(_, app)| app)
    }

    /// Every app with its id, in order.
    pub fn entries(&self) -> impl Iterator<Item = (AppId, &App)> {
        self.list.iter().map(|(id, app)| (*id, app))
    }

    /// The id of app `name`.
    pub fn id_of(&self, name: &str) -> Option<AppId> {
        self.list
            .iter()
            .find(|(_, app)| app.name() == name)
            .map(|(id, _)| *id)
    }

    /// App `id`, if it is still in the table.
    pub fn get(&self, id: AppId) -> Option<&App> {
        // Ids grow as apps are added, so the list is sorted by id.
        let at = self.list.binary_search_by_key(&id, |(i, _)| *i).ok()?;
        Some(&self.list[at].1)
    }

    /// App `id`, if it is still in the table.
    pub fn get_mut(&mut self, id: AppId) -> Option<&mut App> {
        let at = self.list.binary_search_by_key(&id, |(i, _)| *i).ok()?;
        Some(&mut self.list[at].1)
    }

    /// App `name`.
    pub fn by_name(&self, name: &str) -> Option<&App> {
        self.iter().find(|app| app.name() == name)
    }

    /// App `name`.
    pub fn by_name_mut(&mut self, name: &str) -> Option<&mut App> {
        self.iter_mut().find(|app| app.name() == name)
    }

    /// The apps' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.iter().map(App::name).collect()
    }

    /// Whether instance `instance` of app `app` is live.
    pub fn is_live(&self, app: &str, instance: u64) -> bool {
        self.by_name(app).is_some_and(|a| a.is_live(instance))
    }

    /// Whether every app has come to rest (serving, stopped or failed).
    pub fn all_settled(&self) -> bool {
        self.iter().all(App::settled)
    }

    /// Whether every app has stopped for good.
    pub fn all_stopped(&self) -> bool {
        self.iter().all(App::is_stopped)
    }

    /// The nearest deadline of any app.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.iter().filter_map(App::next_deadline).min()
    }

    /// Starts every app (those with `autostart = false` stay stopped, and
    /// the log says how to start them).
    pub fn boot(&mut self, out: &mut Vec<Notice>) {
        for app in self.iter_mut() {
            if !app.config().autostart {
                log!(
                    "{}: autostart = false; start it with `ally-ctl start {}`",
                    app.name(),
                    app.name()
                );
            }
            app.boot(out);
        }
    }

    /// Stops every app (the master is shutting down).
    pub fn shutdown(&mut self, out: &mut Vec<Notice>) {
        for app in self.iter_mut() {
            app.shutdown(out);
        }
    }

    /// Kills every instance of every app (a second shutdown signal).
    pub fn kill_all(&mut self) {
        for app in self.iter_mut() {
            app.kill_all();
        }
    }

    /// Applies every app's deadlines that have passed by `now`.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Notice>) {
        for app in self.iter_mut() {
            app.on_timer(now, out);
        }
    }

    /// The process `pid` ended with `status`: tells the app it was an
    /// instance of, if any.
    pub fn on_exit(
        &mut self,
        pid: Pid,
        status: WaitStatus,
        listeners: &mut Listeners,
        out: &mut Vec<Notice>,
    ) {
        let _ = self
            .iter_mut()
            .any(|app| app.on_exit(pid, status, listeners, out));
    }

    /// Connection `conn`, an instance's of app `app`, closed: the app
    /// withdraws the lock waits it carried; returns the answers that ends.
    pub fn conn_closed(&mut self, app: &str, conn: u64) -> Vec<Notice> {
        let mut out = Vec::new();
        if let Some(app) = self.by_name_mut(app) {
            app.conn_closed(conn, &mut out);
        }
        out
    }

    /// Makes `conn` follow app `id`'s log, and no other: a second follow
    /// on one connection replaces the first, so no line is sent twice.
    pub fn follow(&mut self, id: AppId, conn: u64) {
        for app in self.iter_mut() {
            app.retain_followers(|c| c != conn);
        }
        if let Some(app) = self.get_mut(id) {
            app.follow(conn);
        }
    }

    /// The log lines written since the last call, with the connections
    /// following each app's.
    pub fn take_new_lines(&mut self) -> Vec<(Vec<String>, Vec<u64>)> {
        self.iter_mut().filter_map(App::take_new_lines).collect()
    }

    /// Forgets the followers for which `open` says no.
    pub fn retain_followers(&mut self, open: impl Fn(u64) -> bool) {
        for app in self.iter_mut() {
            app.retain_followers(&open);
        }
    }

    /// The channels of instances spawned since the last call, as
    /// connections to serve.
    pub fn take_channels(&mut self) -> Vec<Conn> {
        let mut adopted = Vec::new();
        for app in self.iter_mut() {
            let name = app.name().to_owned();
            for instance in app.instances_mut() {
                if let Some(stream) = instance.take_channel() {
                    let peer = Peer::Channel {
                        app: name.clone(),
                        id: instance.id,
                    };
                    adopted.push(Conn::new(stream, instance.cred, peer));
                }
            }
        }
        adopted
    }

    /// Reopens every app's log file; returns how many there are.
    ///
    /// # Errors
    ///
    /// The files that could not be reopened (they keep the old file).
    pub fn reopen_logs(&mut self) -> Result<usize, String> {
        let mut failed = Vec::new();
        let mut files = 0;
        for app in self.iter_mut() {
            if app.log().path().is_some() {
                files += 1;
            }
            if let Err(e) = app.reopen_log() {
                log!("{}: cannot reopen its log: {e}", app.name());
                failed.push(e);
            }
        }
        if failed.is_empty() {
            Ok(files)
        } else {
            Err(failed.join("; "))
        }
    }

    /// Drops the apps that are gone for good (removed by a reread, their
    /// last instance reaped).
    pub fn forget_gone(&mut self) {
        self.list.retain(|(_, app)| !app.is_gone());
    }

    /// Closes every app's sockets (the master is exiting).
    pub fn close_sockets(&mut self) {
        for app in self.iter_mut() {
            app.close_sockets();
        }
    }

    /// Waits until `deadline` at most for every app's log to be written
    /// (the master is exiting).
    pub fn flush_logs(&self, deadline: Instant) {
        for app in self.iter() {
            app.log().flush(deadline);
        }
    }
}

impl Apps {
    /// Every app as plain data, by id, and the next id.
    pub fn snapshot<'a>(
        &'a self,
        fds: &mut crate::handover::fds::Export<'a>,
        now: Instant,
    ) -> (Vec<(u64, crate::handover::snapshot::AppSnap)>, u64) {
        let list = self
            .list
            .iter()
            .map(|(id, app)| (id.0, app.snapshot(fds, now)))
            .collect();
        (list, self.next)
    }

    /// The table of `apps`, ids kept, handing out ids from `next`.
    pub fn restore(apps: Vec<(u64, App)>, next: u64) -> Apps {
        let mut list: Vec<(AppId, App)> = apps.into_iter().map(|(id, a)| (AppId(id), a)).collect();
        list.sort_by_key(|(id, _)| *id);
        let next = list.last().map_or(0, |(id, _)| id.0 + 1).max(next);
        Apps { list, next }
    }
}

impl Index<AppId> for Apps {
    type Output = App;

    /// App `id`; it must be in the table (ids of this turn's poll are).
    fn index(&self, id: AppId) -> &App {
        self.get(id).expect("an app id from this turn")
    }
}

impl IndexMut<AppId> for Apps {
    fn index_mut(&mut self, id: AppId) -> &mut App {
        self.get_mut(id).expect("an app id from this turn")
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config;
    use crate::instance::Launch;
    use crate::logs::AppLog;

    /// Apps `names`, never started (`autostart = false`), logging to the
    /// master's stderr.
    fn apps(names: &[&str]) -> Apps {
        let text: String = names
            .iter()
            .map(|name| {
                format!(
                    "[[app]]\nname = \"{name}\"\ncommand = [\"true\"]\n\
                     autostart = false\nlog = \"inherit\"\n"
                )
            })
            .collect();
        let config = config::parse(&text, Path::new("/ally.toml")).unwrap();
        let launch = Launch {
            socket: PathBuf::from("/nonexistent/ally.sock"),
            fd_limit: None,
        };
        let list = config
            .apps
            .into_iter()
            .map(|app| {
                let log = AppLog::open(&app.name, &app.log, Path::new("/nonexistent")).unwrap();
                App::new(app, log, Vec::new(), launch.clone())
            })
            .collect();
        Apps::new(list)
    }

    #[test]
    fn ids_outlive_the_apps_removed_before_them() {
        let mut apps = apps(&["web", "api", "worker"]);
        let mut out = Vec::new();
        apps.boot(&mut out);
        let (web, api, worker) = (
            apps.id_of("web").unwrap(),
            apps.id_of("api").unwrap(),
            apps.id_of("worker").unwrap(),
        );
        assert_eq!(apps.names(), ["web", "api", "worker"]);
        // A stopped app that leaves the config has nothing to wait for.
        apps.by_name_mut("api").unwrap().retire(&mut out);
        apps.forget_gone();
        assert_eq!(apps.names(), ["web", "worker"]);
        assert!(apps.get(api).is_none());
        assert_eq!(apps[web].name(), "web");
        assert_eq!(apps[worker].name(), "worker");
        assert_eq!(apps.id_of("worker"), Some(worker));
    }
}
