//! The app's log as others reach it: its tail, reopening or replacing the
//! file, and the connections following it (`ally-ctl logs -f`).

use super::App;
use crate::logs::AppLog;

impl App {
    /// Where its instances' output goes.
    pub fn log(&self) -> &AppLog {
        &self.log
    }

    /// Reopens its log file (after a rotation).
    ///
    /// # Errors
    ///
    /// If the file cannot be reopened; the old one is kept.
    pub fn reopen_log(&mut self) -> Result<(), String> {
        self.log.reopen()
    }

    /// Writes its output to `log` from now on (a reread changed where).
    pub fn replace_log(&mut self, log: AppLog) {
        self.log = log;
    }

    /// Sends its new log lines to connection `conn` from now on.
    pub fn follow(&mut self, conn: u64) {
        self.followers.push(conn);
    }

    /// Keeps only the followers for which `keep` says yes.
    pub fn retain_followers(&mut self, keep: impl Fn(u64) -> bool) {
        self.followers.retain(|&c| keep(c));
    }

    /// The lines written since the last call, and who follows them; `None`
    /// if there are none.
    pub fn take_new_lines(&mut self) -> Option<(Vec<String>, Vec<u64>)> {
        if self.unsent.is_empty() {
            return None;
        }
        let lines = std::mem::take(&mut self.unsent);
        Some((lines, self.followers.clone()))
    }
}
