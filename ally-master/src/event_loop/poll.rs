//! One poll of everything the master waits on: which descriptors, with
//! which interest, and how long until the nearest deadline.

use std::io;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::Master;
use crate::apps::AppId;
use crate::instance::Stream;

/// What a ready poll entry belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Token {
    Signals,
    Control,
    Conn(u64),
    Output {
        app: AppId,
        instance: u64,
        stream: Stream,
    },
    Notify {
        app: AppId,
        instance: u64,
    },
    Helper(u64),
    Probe,
}

impl Master {
    fn next_deadline(&self) -> Option<Instant> {
        self.apps
            .next_deadline()
            .into_iter()
            .chain(self.conns.next_deadline(self.frame_timeout))
            .chain(self.pending.deadline())
            .chain(self.control.paused_until())
            .chain(self.tally.next_report())
            .chain(self.upgrade_deadline())
            .min()
    }

    /// Polls everything once; returns what is ready.
    pub(super) fn poll(&self) -> io::Result<Vec<(Token, PollFlags)>> {
        let mut tokens = vec![Token::Signals];
        let mut fds = vec![PollFd::new(&self.signals, PollFlags::IN)];
        if self.control.wants_accept(Instant::now()) {
            tokens.push(Token::Control);
            fds.push(PollFd::new(&self.control, PollFlags::IN));
        }
        for (id, conn) in self.conns.iter() {
            // With requests still buffered, or the input budget spent, read
            // no more: a client cannot make the master buffer its input.
            let mut flags = if conn.may_read() {
                PollFlags::IN
            } else {
                PollFlags::empty()
            };
            if conn.wants_write() {
                flags |= PollFlags::OUT;
            }
            tokens.push(Token::Conn(id));
            fds.push(PollFd::new(conn, flags));
        }
        for (index, app) in self.apps.entries() {
            for instance in app.instances() {
                tokens.push(Token::Notify {
                    app: index,
                    instance: instance.id,
                });
                fds.push(PollFd::new(&instance.notify, PollFlags::IN));
                for pipe in &instance.pipes {
                    tokens.push(Token::Output {
                        app: index,
                        instance: instance.id,
                        stream: pipe.stream(),
                    });
                    fds.push(PollFd::new(pipe, PollFlags::IN));
                }
            }
        }
        for (ticket, helper) in self.pending.helpers() {
            tokens.push(Token::Helper(ticket));
            fds.push(PollFd::new(helper, PollFlags::IN));
        }
        let probe = self.probe_output();
        if let Some(probe) = &probe {
            tokens.push(Token::Probe);
            fds.push(PollFd::new(probe, PollFlags::IN));
        }
        // Requests left to handle now; those of a peer that does not read
        // its answers wait for it to read (a writable wake-up).
        let deadline = if self.conns.any_backlog() {
            Some(Instant::now())
        } else {
            self.next_deadline()
        };
        let timeout = deadline.map(|deadline| {
            let wait = deadline.saturating_duration_since(Instant::now());
            // Round up so the deadline has passed when we wake.
            let wait = wait + Duration::from_millis(1);
            Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(wait.subsec_nanos()),
            }
        });
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            // Woken by a deadline: look once more, without waiting, at what
            // is ready. After a stall (SIGSTOP, a slow turn) the timeout can
            // win over descriptors that became ready long before it, and
            // what arrived before a deadline must count (see `turn`).
            Ok(0) if timeout.is_some() => {
                match rustix::event::poll(&mut fds, Some(&Timespec::default())) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(tokens
            .into_iter()
            .zip(fds.iter().map(PollFd::revents))
            .filter(|(_, revents)| !revents.is_empty())
            .collect())
    }
}
