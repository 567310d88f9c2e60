//! One command on several apps: one at a time or `--parallel N` at once,
//! stopping at the first failure unless `--keep-going`, with one line per
//! app and a summary.
//!
//! On one app a command prints and exits exactly as it always has. On
//! several, each app's line comes as it finishes (its message on stdout,
//! its failure on stderr), an app not tried gets a `not run` line on
//! stderr, and the summary (`3 reloaded, 1 failed, 1 not run`) ends the
//! output: on stdout with exit 0 when every app succeeded, else on stderr
//! with the exit code of the first failure (in the order the apps were
//! given), so that `reload --family F` fails like `reload APP` would.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::{PROGRAM, say};
use crate::failure::Failure;
use crate::masters::Target;

/// The most apps `--parallel` works on at once: each is one connection
/// to its master, and a master bounds a client's connections.
pub const MAX_PARALLEL: usize = 16;

/// How to go through the apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// How many at once, from 1 to [`MAX_PARALLEL`].
    pub parallel: usize,
    /// Whether to go on past a failure.
    pub keep_going: bool,
}

/// Parses `--parallel N`: 1 to [`MAX_PARALLEL`].
///
/// # Errors
///
/// A message for argh to show.
pub fn parse_parallel(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PARALLEL).contains(n))
        .ok_or_else(|| format!("expected a number of apps from 1 to {MAX_PARALLEL}, not {s:?}"))
}

/// How one app went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded; the message says how.
    Done(String),
    /// It failed.
    Failed(Failure),
    /// It was not tried: an earlier app failed.
    NotRun,
}

/// Runs `op` on every target as `plan` says, printing as it goes.
/// `verb` is what a success is called in the summary: `reloaded`.
///
/// # Errors
///
/// The failure of the only app; with several, the summary with the first
/// failure's exit code.
pub fn run<F>(targets: &[Target], plan: Plan, verb: &str, op: F) -> Result<(), Failure>
where
    F: Fn(&Target) -> Result<String, Failure> + Sync,
{
    if let [one] = targets {
        return say(op(one)?.trim_end());
    }
    let outcomes = go(targets, plan, |target| {
        let result = op(target);
        match &result {
            Ok(message) => {
                let _ = say(message.trim_end());
            }
            Err(failure) => eprintln!("{PROGRAM}: {failure}"),
        }
        result
    });
    for (target, outcome) in targets.iter().zip(&outcomes) {
        if *outcome == Outcome::NotRun {
            eprintln!(
                "{PROGRAM}: {}: not run, as an earlier app failed (--keep-going goes on past \
                 a failure)",
                target.app
            );
        }
    }
    let line = summary(&outcomes, verb);
    match outcomes.iter().find_map(|o| match o {
        Outcome::Failed(f) => Some(f),
        _ => None,
    }) {
        None => say(&line),
        Some(first) => Err(first.with_message(line)),
    }
}

/// Runs `op` on the targets, at most `plan.parallel` at once, and stops
/// handing out targets after a failure unless `plan.keep_going`. The
/// outcomes are in the targets' order.
pub fn go<F>(targets: &[Target], plan: Plan, op: F) -> Vec<Outcome>
where
    F: Fn(&Target) -> Result<String, Failure> + Sync,
{
    let next = Mutex::new(0_usize);
    let failed = AtomicBool::new(false);
    let outcomes = Mutex::new(vec![Outcome::NotRun; targets.len()]);
    let work = || {
        loop {
            let index = {
                let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                if *next == targets.len() || (failed.load(Ordering::SeqCst) && !plan.keep_going) {
                    return;
                }
                *next += 1;
                *next - 1
            };
            let outcome = match op(&targets[index]) {
                Ok(message) => Outcome::Done(message),
                Err(failure) => {
                    failed.store(true, Ordering::SeqCst);
                    Outcome::Failed(failure)
                }
            };
            outcomes.lock().unwrap_or_else(|e| e.into_inner())[index] = outcome;
        }
    };
    let workers = plan.parallel.clamp(1, MAX_PARALLEL).min(targets.len());
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(work);
            }
        });
    }
    outcomes.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// `3 reloaded, 1 failed, 1 not run`: the counts that are not zero, and
/// the successes even when zero.
pub fn summary(outcomes: &[Outcome], verb: &str) -> String {
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let done = count(|o| matches!(o, Outcome::Done(_)));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let not_run = count(|o| matches!(o, Outcome::NotRun));
    let mut line = format!("{done} {verb}");
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
    if not_run > 0 {
        line.push_str(&format!(", {not_run} not run"));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    fn targets(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                app: format!("app{i}"),
                socket: "/s".into(),
            })
            .collect()
    }

    fn fail_at(bad: usize) -> impl Fn(&Target) -> Result<String, Failure> + Sync {
        move |t: &Target| {
            if t.app == format!("app{bad}") {
                Err(Failure::Failed(format!("{} broke", t.app)))
            } else {
                Ok(format!("{}: ok", t.app))
            }
        }
    }

    #[test]
    fn one_at_a_time_stops_at_the_first_failure() {
        let plan = Plan {
            parallel: 1,
            keep_going: false,
        };
        let outcomes = go(&targets(5), plan, fail_at(2));
        assert_eq!(outcomes[1], Outcome::Done("app1: ok".into()));
        assert!(matches!(outcomes[2], Outcome::Failed(_)));
        assert_eq!(outcomes[3..], [Outcome::NotRun, Outcome::NotRun]);
        assert_eq!(
            summary(&outcomes, "reloaded"),
            "2 reloaded, 1 failed, 2 not run"
        );
    }

    #[test]
    fn keep_going_runs_every_app() {
        let plan = Plan {
            parallel: 1,
            keep_going: true,
        };
        let outcomes = go(&targets(5), plan, fail_at(2));
        assert_eq!(summary(&outcomes, "stopped"), "4 stopped, 1 failed");
        assert_eq!(summary(&outcomes[..2], "stopped"), "2 stopped");
    }

    #[test]
    fn parallel_runs_at_most_n_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let plan = Plan {
            parallel: 3,
            keep_going: false,
        };
        let outcomes = go(&targets(9), plan, |t: &Target| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            // Hold the slot until three are busy (each round of three
            // gets there), so that a fourth would show.
            let start = std::time::Instant::now();
            while running.load(Ordering::SeqCst) < 3 && start.elapsed() < Duration::from_millis(500)
            {
                std::thread::yield_now();
            }
            most.fetch_max(running.load(Ordering::SeqCst), Ordering::SeqCst);
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(t.app.clone())
        });
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Done(_))));
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn parallel_takes_1_to_the_bound() {
        assert_eq!(parse_parallel("4"), Ok(4));
        for bad in ["0", "-1", "x", &(MAX_PARALLEL + 1).to_string()] {
            assert!(parse_parallel(bad).is_err(), "{bad}");
        }
    }
}
