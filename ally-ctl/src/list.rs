//! `ally-ctl list`: every app of the master and its instances, as a table
//! or as JSON.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::{ArgsInfo, FromArgs};
use serde::Serialize;

use ally_proto::{AppState, InstanceStatus};

use crate::cli::say;
use crate::failure::Failure;
use crate::masters;
use crate::select::Selection;
use crate::style;
use crate::table::{self, Listed};

/// show every app of every master and its instances
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "list",
    example = "ally-ctl list\nally-ctl list web api\nally-ctl list --family payments\n\
               ally-ctl list --json | jq '.apps[] | {{name, master, main}}'",
    note = "without --socket, every master in the runtime directory is asked. FAMILY\n\
            shows when an app has one, MASTER (its socket's name, the config's)\n\
            when several masters answered. A stale socket is reported on stderr\n\
            and skipped (exit 0); a master that is there but does not answer (in\n\
            5 s without --timeout) is reported, the others shown, and the exit\n\
            code is that failure's.\n\
            STATE is the app's (running, starting, backoff, failed, stopping, stopped);\n\
            INSTANCE is an instance's id, * if it is main, and its state (starting,\n\
            main, draining, killed) with the time left before it is killed if it is\n\
            starting or draining. TASKS, VERSION and COMMIT are what it reports.\n\
            An app's last error, its next start after a crash, a reload in\n\
            progress and output lines dropped by a slow log sink show on the lines\n\
            below it. --json prints one object:\n\
            {{\"apps\":[{{\"name\", \"master\", \"family\", \"state\", \"backoff_until_unix_ms\" (backoff only),\n\
            \"restarts\", \"main\", \"reloading\", \"queued_reloads\", \"last_error\",\n\
            \"dropped_lines\", \"instances\":[{{\"id\", \"pid\", \"state\", \"started_unix_ms\",\n\
            \"deadline_unix_ms\", \"listeners\", \"tasks\", \"version\", \"commit\",\n\
            \"text\", \"cpu_ms\", \"rss_bytes\", \"uid\"}}]}}]}}\n\
            with times in milliseconds since the Unix epoch and absent values as null."
)]
pub struct ListArgs {
    /// only these apps (default: every app)
    #[argh(positional)]
    pub apps: Vec<String>,
    /// only the apps of this family
    #[argh(option)]
    pub family: Option<String>,
    /// print JSON for scripts instead of a table
    #[argh(switch)]
    pub json: bool,
    /// print only the app names, one a line, each once, sorted (for
    /// scripts and shell completion)
    #[argh(switch)]
    pub names: bool,
    /// print only the families the apps are in, one a line, each once,
    /// sorted
    #[argh(switch)]
    pub families: bool,
    /// give up after this many seconds (decimals allowed) and exit 5
    /// (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks every master (or the one at `socket`) for its apps and prints
/// those selected.
///
/// # Errors
///
/// A name no master runs; the failure of a master that did not answer
/// (after the others are shown); the connection's failures, or the
/// master's refusal, when none answered.
pub fn run(args: &ListArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let selection = if args.apps.is_empty() && args.family.is_none() {
        Selection::All
    } else {
        Selection::parse(&args.apps, args.family.as_deref())?
    };
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let in_time = |failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {:?} waiting for the master's list of apps",
            args.timeout.unwrap_or_default()
        )),
        other => other,
    };
    let survey = masters::survey(socket, deadline).map_err(in_time)?;
    if survey.listings.is_empty() {
        return Err(survey.failed.map_or_else(
            || Failure::Unreachable("no master answered".into()),
            in_time,
        ));
    }
    let listed: Vec<Listed<'_>> = survey
        .listings
        .iter()
        .flat_map(|l| {
            l.apps.iter().map(|app| Listed {
                master: &l.master,
                app,
            })
        })
        .filter(|l| selection.matches(l.app))
        .collect();
    if let Selection::Apps(names) = &selection {
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !listed.iter().any(|l| l.app.name == **n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() && survey.failed.is_none() {
            return Err(Failure::Refused(format!(
                "no master runs an app named {}; `ally-ctl list` shows them all",
                unknown.join(", ")
            )));
        }
    }
    if args.names || args.families {
        let mut words: Vec<&str> = listed
            .iter()
            .filter_map(|l| {
                if args.names {
                    Some(l.app.name.as_str())
                } else {
                    l.app.family.as_deref()
                }
            })
            .collect();
        words.sort_unstable();
        words.dedup();
        if !words.is_empty() {
            say(&words.join("\n"))?;
        }
    } else if args.json {
        say(&json(&listed))?;
    } else {
        say(table::render(&listed, now_unix_ms(), style::enabled()).trim_end())?;
    }
    survey.failed.map_or(Ok(()), |f| Err(in_time(f)))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The `--json` document: its own types, so that the output stays the same
/// when the wire types change.
#[derive(Serialize)]
struct Listing<'a> {
    apps: Vec<App<'a>>,
}

#[derive(Serialize)]
struct App<'a> {
    name: &'a str,
    master: &'a str,
    family: Option<&'a str>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backoff_until_unix_ms: Option<u64>,
    restarts: u32,
    main: Option<u64>,
    reloading: Option<u64>,
    queued_reloads: u32,
    last_error: Option<&'a str>,
    dropped_lines: u64,
    instances: Vec<Instance<'a>>,
}

#[derive(Serialize)]
struct Instance<'a> {
    id: u64,
    pid: u32,
    state: &'static str,
    started_unix_ms: u64,
    deadline_unix_ms: Option<u64>,
    listeners: u32,
    tasks: Option<u64>,
    version: Option<&'a str>,
    commit: Option<&'a str>,
    text: Option<&'a str>,
    cpu_ms: u64,
    rss_bytes: u64,
    uid: Option<u32>,
}

/// `apps` as one line of JSON.
fn json(apps: &[Listed<'_>]) -> String {
    fn instance(i: &InstanceStatus) -> Instance<'_> {
        Instance {
            id: i.id,
            pid: i.pid,
            state: i.state.name(),
            started_unix_ms: i.started_unix_ms,
            deadline_unix_ms: i.deadline_unix_ms,
            listeners: i.listeners,
            tasks: i.report.tasks,
            version: i.report.version.as_deref(),
            commit: i.report.commit.as_deref(),
            text: i.report.text.as_deref(),
            cpu_ms: i.cpu_ms,
            rss_bytes: i.rss_bytes,
            uid: i.uid,
        }
    }
    let listing = Listing {
        apps: apps
            .iter()
            .map(|&Listed { master, app: a }| App {
                name: &a.name,
                master,
                family: a.family.as_deref(),
                state: a.state.name(),
                backoff_until_unix_ms: match a.state {
                    AppState::Backoff { until_unix_ms } => Some(until_unix_ms),
                    _ => None,
                },
                restarts: a.restarts,
                main: a.main,
                reloading: a.reloading,
                queued_reloads: a.queued_reloads,
                last_error: a.last_error.as_deref(),
                dropped_lines: a.dropped_lines,
                instances: a.instances.iter().map(instance).collect(),
            })
            .collect(),
    };
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_string(&listing).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use ally_proto::{AppStatus, InstanceState, Report};

    use super::*;

    #[test]
    fn json_shape() {
        let apps = [
            AppStatus {
                name: "web".into(),
                state: AppState::Running,
                restarts: 2,
                main: Some(3),
                reloading: None,
                queued_reloads: 0,
                dropped_lines: 7,
                family: Some("pay".into()),
                last_error: Some("boom \"x\"".into()),
                instances: vec![InstanceStatus {
                    id: 3,
                    pid: 42,
                    state: InstanceState::Main,
                    started_unix_ms: 1000,
                    listeners: 2,
                    deadline_unix_ms: None,
                    report: Report {
                        tasks: Some(17),
                        version: Some("1.4.2".into()),
                        commit: Some("0123abcd4567".into()),
                        text: None,
                    },
                    cpu_ms: 1234,
                    rss_bytes: 12_900_000,
                    uid: Some(1000),
                }],
            },
            AppStatus {
                name: "idle".into(),
                state: AppState::Backoff {
                    until_unix_ms: 5000,
                },
                restarts: 0,
                main: None,
                reloading: None,
                queued_reloads: 0,
                dropped_lines: 0,
                family: None,
                last_error: None,
                instances: vec![],
            },
        ];
        let listed = [
            Listed {
                master: "one",
                app: &apps[0],
            },
            Listed {
                master: "two",
                app: &apps[1],
            },
        ];
        assert_eq!(
            json(&listed),
            r#"{"apps":[{"name":"web","master":"one","family":"pay","state":"running","restarts":2,"main":3,"reloading":null,"queued_reloads":0,"last_error":"boom \"x\"","dropped_lines":7,"instances":[{"id":3,"pid":42,"state":"main","started_unix_ms":1000,"deadline_unix_ms":null,"listeners":2,"tasks":17,"version":"1.4.2","commit":"0123abcd4567","text":null,"cpu_ms":1234,"rss_bytes":12900000,"uid":1000}]},{"name":"idle","master":"two","family":null,"state":"backoff","backoff_until_unix_ms":5000,"restarts":0,"main":null,"reloading":null,"queued_reloads":0,"last_error":null,"dropped_lines":0,"instances":[]}]}"#
        );
    }
}
