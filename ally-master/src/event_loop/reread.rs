//! `ally-ctl reread`: apply an edited config without a restart.
//!
//! The new file is parsed and every new log file opened before anything
//! changes, so an invalid config (or an unwritable log) changes nothing.
//! Then: apps that appeared start (if `autostart`); apps that disappeared
//! are stopped and forgotten once their last instance exits (one added
//! back before that is supervised again at once, a new instance started
//! beside the draining ones, and counts as added); apps whose
//! settings changed take them from their next start (a running instance
//! keeps the command, environment and deadlines it was started with);
//! untouched apps are not disturbed at all. `[master]` settings apply when
//! the master restarts. Shared-state limits are those the app was first
//! loaded with, until the master restarts. Nothing is reread once the
//! master is shutting down.

use ally_proto::{ErrorCode, Failure};

use super::Master;
use crate::app::{App, assemble};
use crate::config;
use crate::listeners::Bound;
use crate::log;
use crate::logs::AppLog;
use crate::scope;

impl Master {
    /// Applies the config file as it is now; returns a summary.
    ///
    /// # Errors
    ///
    /// The config's error (with file, line and column) or a log file that
    /// cannot be opened; nothing has changed then. While the master shuts
    /// down a reread is refused: it would start the apps it adds.
    pub(crate) fn reread(&mut self) -> Result<String, Failure> {
        if self.shutting_down() {
            return Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the master is shutting down; the config is read again at its next start",
            ));
        }
        let config = config::load(&self.config_path)
            .map_err(|e| Failure::new(ErrorCode::InvalidConfig, e.to_string()))?;
        let mut opened = Vec::new();
        for app in &config.apps {
            let known = self.apps.by_name(&app.name);
            if known.is_none_or(|a| a.config().log != app.log) {
                let log = AppLog::open(&app.name, &app.log, &self.log_dir)
                    .map_err(|e| Failure::new(ErrorCode::Internal, e))?;
                opened.push(log);
            }
        }
        // Sockets of `listen` entries that are new for their app: bound now,
        // so a port in use fails the reread before anything changed.
        let mut staged = Vec::with_capacity(config.apps.len());
        for app in &config.apps {
            let known = self.apps.by_name(&app.name);
            let mut fresh = Vec::new();
            let mut owner = None;
            for decl in &app.listen {
                let held = known.is_some_and(|a| a.holds(&decl.spec));
                if !held {
                    let owner = match owner {
                        Some(owner) => owner,
                        None => *owner.insert(scope::owner_for_config_sockets(app)?),
                    };
                    fresh.push(Bound::new(&app.name, &decl.spec, owner, &self.fd_store)?);
                }
            }
            staged.push(fresh);
        }
        let mut staged = staged.into_iter();
        let mut opened = opened.into_iter();
        let (mut added, mut changed, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        let mut notices = Vec::new();
        for app in self.apps.iter_mut() {
            if !config.apps.iter().any(|a| a.name == app.name()) && !app.is_retired() {
                removed.push(app.name().to_owned());
                app.retire(&mut notices);
            }
        }
        for new in config.apps {
            let fresh = staged.next().unwrap_or_default();
            match self.apps.by_name_mut(&new.name) {
                // Removed by an earlier reread and still stopping: back in
                // the config, so supervised again rather than forgotten.
                Some(app) if app.is_retired() => {
                    app.rebind(&new, fresh);
                    if app.config().log != new.log
                        && let Some(log) = opened.next()
                    {
                        app.replace_log(log);
                    }
                    added.push(new.name.clone());
                    app.readmit(new, &mut notices);
                }
                Some(app) if *app.config() == new => {}
                Some(app) => {
                    app.rebind(&new, fresh);
                    if app.config().log != new.log
                        && let Some(log) = opened.next()
                    {
                        app.replace_log(log);
                    }
                    changed.push(new.name.clone());
                    app.reconfigure(new);
                }
                None => {
                    let Some(log) = opened.next() else {
                        continue;
                    };
                    added.push(new.name.clone());
                    let sockets = assemble(&new, Vec::new(), fresh);
                    let mut app = App::new(new, log, sockets, self.launch.clone());
                    app.boot(&mut notices);
                    self.apps.add(app);
                }
            }
        }
        self.deliver(notices);
        let summary = format!(
            "reread {}: added [{}], removed [{}], changed [{}] (changes apply from each app's next start)",
            self.config_path.display(),
            added.join(", "),
            removed.join(", "),
            changed.join(", ")
        );
        log!("{summary}");
        Ok(summary)
    }
}
