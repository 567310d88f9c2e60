//! What instances send besides requests: their output, into the app's
//! log, and their notify datagrams (`READY=1`, `STATUS=`, ...).

use std::time::Instant;

use super::{App, Notice};
use crate::instance::{Instance, Stream};
use crate::limits::{NOTIFY_STRANGER_REPORT_INTERVAL, OUTPUT_BYTES_AT_EXIT, OUTPUT_BYTES_PER_TURN};
use crate::log;
use crate::notify;

impl App {
    /// Handles what instance `id` sent on its notify socket.
    pub fn read_notify(&mut self, id: u64, out: &mut Vec<Notice>) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
            return;
        };
        let (messages, strangers) = instance.notify.receive(instance.pid);
        if let Some(count) = strangers {
            self.log_strangers(id, count);
        }
        for message in messages {
            match message {
                notify::Message::Ready => self.on_ready(id, out),
                notify::Message::Status(text) => {
                    if let Some(i) = self.instances.iter_mut().find(|i| i.id == id) {
                        i.report.text = Some(text);
                    }
                }
                notify::Message::Stopping => log!("{}#{id}: says it is stopping", self.config.name),
                notify::Message::Reloading => {
                    log!(
                        "{}#{id}: says it is reloading its configuration",
                        self.config.name
                    );
                }
                notify::Message::MainPid(pid) => log!(
                    "{}#{id}: MAINPID={pid} ignored: ally supervises the process it started",
                    self.config.name
                ),
            }
        }
    }

    /// Reports the notify datagrams from other processes whose report is
    /// due at `now`.
    pub(super) fn report_strangers(&mut self, now: Instant) {
        let due: Vec<(u64, u64)> = self
            .instances
            .iter_mut()
            .filter_map(|i| Some((i.id, i.notify.strangers.take_due(now)?)))
            .collect();
        for (id, count) in due {
            self.log_strangers(id, count);
        }
    }

    /// One line for `count` notify datagrams to instance `id` that other
    /// processes sent.
    pub(super) fn log_strangers(&self, id: u64, count: u64) {
        log!(
            "{}#{id}: dropped {count} notify datagram(s) from other processes \
             (reported at most every {}s)",
            self.config.name,
            NOTIFY_STRANGER_REPORT_INTERVAL.as_secs()
        );
    }

    /// Reads instance `id`'s pending output on `stream` into the app's
    /// log: at most [`OUTPUT_BYTES_PER_TURN`] from the pipe, so a flooding
    /// app gets its share of the turn and no more.
    pub fn read_output(&mut self, id: u64, stream: Stream) {
        if let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) {
            let (log, followers, unsent) = (&mut self.log, &self.followers, &mut self.unsent);
            instance.read_output(Some(stream), OUTPUT_BYTES_PER_TURN, |stream, line, cut| {
                let line = log.write(id, stream, line, cut);
                if !followers.is_empty() {
                    unsent.push(line.to_owned());
                }
            });
        }
    }

    /// Reads what is left in the output pipes of `instance`, which exited
    /// (at most [`OUTPUT_BYTES_AT_EXIT`] from each), into the app's log.
    pub(super) fn read_last_output(&mut self, instance: &mut Instance) {
        let id = instance.id;
        let (log, followers, unsent) = (&mut self.log, &self.followers, &mut self.unsent);
        instance.read_output(None, OUTPUT_BYTES_AT_EXIT, |stream, line, cut| {
            let line = log.write(id, stream, line, cut);
            if !followers.is_empty() {
                unsent.push(line.to_owned());
            }
        });
    }
}
