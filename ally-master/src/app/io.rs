//! What instances send besides requests: their output, into the app's
//! log, and their notify datagrams (`READY=1`, `STATUS=`, ...).

use super::{App, Notice};
use crate::instance::{Launch, Stream};
use crate::log;
use crate::notify;

impl App {
    /// Handles what instance `id` sent on its notify socket.
    pub fn read_notify(&mut self, id: u64, launch: &Launch, out: &mut Vec<Notice>) {
        let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
            return;
        };
        let (messages, strangers) = instance.notify.receive(instance.pid);
        if strangers > 0 {
            log!(
                "{}#{id}: ignored {strangers} notify message(s) not sent by the instance itself",
                self.config.name
            );
        }
        for message in messages {
            match message {
                notify::Message::Ready => self.on_ready(id, launch, out),
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

    /// Reads instance `id`'s pending output into the app's log.
    pub fn read_output(&mut self, id: u64) {
        if let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) {
            let lines = instance.read_output();
            self.record(id, lines);
        }
    }

    /// Writes `lines` of instance `id` to the log, keeping them for
    /// followers if there are any.
    pub(super) fn record(&mut self, id: u64, lines: Vec<(Stream, String)>) {
        for (stream, text) in lines {
            let line = self.log.write(id, stream, &text);
            if !self.followers.is_empty() {
                self.unsent.push(line);
            }
        }
    }
}
