//! Log lines for events that can come in floods (refused connections,
//! unfinished frames): the first of a burst is logged in full, the rest
//! are counted and summed up in one line every [`REPORT_INTERVAL`], so a
//! flood of connections cannot flood the master's log too.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::limits::REPORT_INTERVAL;

/// Counts of what happened since the last line.
#[derive(Debug, Default)]
pub struct Tally {
    counts: BTreeMap<&'static str, u64>,
    /// When the summary is due; `None` while quiet (the next event is
    /// logged at once).
    report_at: Option<Instant>,
}

impl Tally {
    /// Records one event counted as `what` (e.g. "refused at the
    /// connection cap"). Returns `line()` to log now when the log has been
    /// quiet; else counts it for the next summary and returns `None`.
    pub fn note(
        &mut self,
        now: Instant,
        what: &'static str,
        line: impl FnOnce() -> String,
    ) -> Option<String> {
        if self.report_at.is_none() {
            self.report_at = Some(now + REPORT_INTERVAL);
            return Some(line());
        }
        *self.counts.entry(what).or_default() += 1;
        None
    }

    /// When [`report`](Self::report) is next due.
    pub fn next_report(&self) -> Option<Instant> {
        self.report_at
    }

    /// Once due: the summary line of what was counted, if anything was
    /// (and the next interval starts); else the tally goes quiet.
    pub fn report(&mut self, now: Instant) -> Option<String> {
        if self.report_at.is_none_or(|at| now < at) {
            return None;
        }
        if self.counts.is_empty() {
            self.report_at = None;
            return None;
        }
        self.report_at = Some(now + REPORT_INTERVAL);
        let counts: Vec<String> = std::mem::take(&mut self.counts)
            .into_iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        Some(format!(
            "connections in the last {REPORT_INTERVAL:?}: {}",
            counts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_line_then_one_summary() {
        let mut tally = Tally::default();
        let t0 = Instant::now();
        let first = tally.note(t0, "refused", || "refused uid 7".into());
        assert_eq!(first.as_deref(), Some("refused uid 7"));
        for _ in 0..1000 {
            assert_eq!(tally.note(t0, "refused", || unreachable!()), None);
        }
        assert_eq!(tally.note(t0, "timed out", || unreachable!()), None);
        assert_eq!(tally.next_report(), Some(t0 + REPORT_INTERVAL));
        assert_eq!(tally.report(t0), None, "not due yet");
        let line = tally.report(t0 + REPORT_INTERVAL).expect("a summary");
        assert!(line.ends_with(": 1000 refused, 1 timed out"), "{line}");
        // A quiet interval ends the burst: the next event is logged at once.
        let t1 = t0 + REPORT_INTERVAL * 2;
        assert_eq!(tally.report(t1), None);
        assert_eq!(tally.next_report(), None);
        assert!(tally.note(t1, "refused", || "again".into()).is_some());
    }
}
