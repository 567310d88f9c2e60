//! `ally-ctl status APP`: one app in detail, field by field.
//!
//! ```text
//! app         web
//! state       running
//! restarts    2
//! main        instance 3
//! reload      -
//! last error  -
//! instances   1
//!
//! instance    3
//! state       main
//! pid         4242
//! user        www-data (uid 33)
//! uptime      5m12s
//! listeners   2
//! tasks       17
//! cpu         1.2s
//! ram         12.3M
//! version     1.4.2
//! commit      0123abcd4567
//! text        -
//! deadline    -
//! ```
//!
//! Every field is always there, `-` when absent, so that
//! `ally-ctl status web | grep ^state` finds it.

use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use argh::{ArgsInfo, FromArgs};

use ally_proto::{AppState, AppStatus, ControlRequest, ControlResponse, InstanceStatus};

use crate::ask::unexpected;
use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;
use crate::list::now_unix_ms;
use crate::masters;
use crate::select::Selection;
use crate::style;
use crate::table::{reload_note, time_left};
use crate::units::{cpu, duration, size};

/// Width of the field names, so that the values line up.
const KEY: usize = 12;

/// show one app in detail: its state, restarts, last error, and each
/// instance with what it reports
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "status",
    example = "ally-ctl status web",
    note = "the app's state is running, starting, backoff (with the time to the\n\
            next start), failed, stopping or stopped; an instance's is starting,\n\
            main, draining or killed, and its deadline is the time left before it\n\
            is killed. tasks, version, commit and text are what the instance last\n\
            reported; - marks a field with no value."
)]
pub struct StatusArgs {
    /// the apps to show, as named in their masters' configs, or all
    #[argh(positional)]
    pub apps: Vec<String>,
    /// every app of this family (--family all: every app)
    #[argh(option)]
    pub family: Option<String>,
    /// give up after this many seconds (decimals allowed) and exit 5
    /// (default: no limit)
    #[argh(option, from_str_fn(crate::cli::parse_seconds))]
    pub timeout: Option<Duration>,
}

/// Asks the masters for the apps and prints each, a blank line between
/// two; an app that cannot be shown is reported on stderr and the others
/// are still shown.
///
/// # Errors
///
/// The first app's failure: the connection's, or the master's refusal.
pub fn run(args: &StatusArgs, socket: Option<&Path>) -> Result<(), Failure> {
    let selection = Selection::parse(&args.apps, args.family.as_deref())?;
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let targets = masters::resolve(&selection, socket, deadline)?;
    if let [one] = targets.as_slice() {
        return say(&show(&one.app, &one.socket, args.timeout)?);
    }
    let mut first = None;
    let mut shown = 0;
    for target in &targets {
        match show(&target.app, &target.socket, args.timeout) {
            Ok(text) => {
                say(&if shown == 0 {
                    text
                } else {
                    format!("\n{text}")
                })?;
                shown += 1;
            }
            Err(failure) => {
                eprintln!("{}: {failure}", crate::cli::PROGRAM);
                first.get_or_insert(failure);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// The status of `app` from the master at `socket`, rendered.
///
/// # Errors
///
/// The connection's failures, or the master's refusal.
fn show(app: &str, socket: &Path, timeout: Option<Duration>) -> Result<String, Failure> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let in_time = |failure| match failure {
        Failure::TimedOut(_) => Failure::TimedOut(format!(
            "timed out after {:?} waiting for the status of {app}",
            timeout.unwrap_or_default()
        )),
        other => other,
    };
    let mut client = Client::connect(Some(socket), deadline).map_err(in_time)?;
    client
        .send(&ControlRequest::Status {
            app: app.to_owned(),
        })
        .map_err(in_time)?;
    let status = match client.recv().map_err(in_time)? {
        ControlResponse::Apps(apps) => match <[AppStatus; 1]>::try_from(apps) {
            Ok([status]) if status.name == app => status,
            Ok([status]) => {
                return Err(Failure::Protocol(format!(
                    "asked the master for {app}, got the status of {}",
                    status.name
                )));
            }
            Err(apps) => {
                return Err(Failure::Protocol(format!(
                    "asked the master for one app, got {}",
                    apps.len()
                )));
            }
        },
        ControlResponse::Error(f) => {
            return Err(Failure::from_master(&format!("cannot show {app}"), &f));
        }
        other => return Err(unexpected(&other, "Apps")),
    };
    Ok(render(&status, now_unix_ms(), style::enabled())
        .trim_end()
        .to_owned())
}

/// Renders `app` as of `now_ms` (milliseconds since the Unix epoch), its
/// states in colour if `colour`.
pub fn render(app: &AppStatus, now_ms: u64, colour: bool) -> String {
    let mut out = String::new();
    let mut state = app.state.name().to_owned();
    if let AppState::Backoff { until_unix_ms } = app.state {
        let _ = write!(
            state,
            " (next start in {})",
            time_left(until_unix_ms, now_ms)
        );
    }
    let state = style::paint(&state, style::of_app(app.state), colour);
    field(&mut out, "app", &app.name);
    field(&mut out, "state", &state);
    field(&mut out, "restarts", &app.restarts.to_string());
    let main = app.main.map(|id| format!("instance {id}"));
    field(&mut out, "main", or_dash(main.as_deref()));
    let reload = reload_note(app).map(|n| n.replacen("reload in progress: ", "", 1));
    field(&mut out, "reload", or_dash(reload.as_deref()));
    field(&mut out, "last error", or_dash(app.last_error.as_deref()));
    field(&mut out, "dropped", &dropped(app.dropped_lines));
    field(&mut out, "instances", &app.instances.len().to_string());
    for i in &app.instances {
        out.push('\n');
        instance(&mut out, i, now_ms, colour);
    }
    out
}

/// Output lines lost to a log sink that could not keep up, and so where
/// to look.
fn dropped(lines: u64) -> String {
    if lines == 0 {
        "0".to_owned()
    } else {
        format!("{lines} (its log sink could not keep up; see the markers in the log)")
    }
}

/// The fields of one instance.
fn instance(out: &mut String, i: &InstanceStatus, now_ms: u64, colour: bool) {
    let report = &i.report;
    let state = style::paint(i.state.name(), style::of_instance(i.state), colour);
    let uptime = duration(now_ms.saturating_sub(i.started_unix_ms) / 1000);
    let tasks = report.tasks.map(|t| t.to_string());
    let deadline = i
        .deadline_unix_ms
        .map(|d| format!("{} left", time_left(d, now_ms)));
    field(out, "instance", &i.id.to_string());
    field(out, "state", &state);
    field(out, "pid", &i.pid.to_string());
    field(out, "user", &user(i.uid));
    field(out, "uptime", &uptime);
    field(out, "listeners", &i.listeners.to_string());
    field(out, "tasks", or_dash(tasks.as_deref()));
    field(out, "cpu", &cpu(i.cpu_ms));
    field(out, "ram", &size(i.rss_bytes));
    field(out, "version", or_dash(report.version.as_deref()));
    field(out, "commit", or_dash(report.commit.as_deref()));
    field(out, "text", or_dash(report.text.as_deref()));
    field(out, "deadline", or_dash(deadline.as_deref()));
}

/// Who an instance runs as: `name (uid N)`, the name from `/etc/passwd`
/// when it has one there.
fn user(uid: Option<u32>) -> String {
    let Some(uid) = uid else {
        return "-".to_owned();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid.to_string()).then_some(name)
    });
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// One `key  value` line; the value's further lines are indented under
/// its first.
fn field(out: &mut String, key: &str, value: &str) {
    let value = value.trim_end();
    let value = if value.is_empty() { "-" } else { value };
    for (k, part) in value.lines().enumerate() {
        let key = if k == 0 { key } else { "" };
        let _ = writeln!(out, "{}", format!("{key:<KEY$}{part}").trim_end());
    }
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use ally_proto::{InstanceState, Report};

    use super::*;

    #[test]
    fn every_field_shows() {
        let now = 10_000_000;
        let app = AppStatus {
            name: "web".into(),
            state: AppState::Running,
            restarts: 2,
            main: Some(3),
            reloading: Some(4),
            queued_reloads: 1,
            dropped_lines: 1234,
            family: None,
            last_error: Some("instance 1 exited with status 1\nstderr: boom\n".into()),
            instances: vec![
                InstanceStatus {
                    id: 3,
                    pid: 4242,
                    state: InstanceState::Main,
                    started_unix_ms: now - 312_000,
                    listeners: 2,
                    deadline_unix_ms: None,
                    report: Report {
                        tasks: Some(17),
                        version: Some("1.4.2".into()),
                        commit: Some("0123abcd4567".into()),
                        text: Some("warming caches\n50% done".into()),
                    },
                    cpu_ms: 1_234,
                    rss_bytes: 12_900_000,
                    uid: Some(4_000_000_000),
                },
                InstanceStatus {
                    id: 4,
                    pid: 4300,
                    state: InstanceState::Starting,
                    started_unix_ms: now - 1_000,
                    listeners: 0,
                    deadline_unix_ms: Some(now + 29_500),
                    report: Report::default(),
                    cpu_ms: 10,
                    rss_bytes: 2_000_000,
                    uid: Some(4_000_000_000),
                },
            ],
        };
        let expected = "\
app         web
state       running
restarts    2
main        instance 3
reload      waiting for instance 4 (1 more queued)
last error  instance 1 exited with status 1
            stderr: boom
dropped     1234 (its log sink could not keep up; see the markers in the log)
instances   2

instance    3
state       main
pid         4242
user        uid 4000000000
uptime      5m12s
listeners   2
tasks       17
cpu         1.2s
ram         12.3M
version     1.4.2
commit      0123abcd4567
text        warming caches
            50% done
deadline    -

instance    4
state       starting
pid         4300
user        uid 4000000000
uptime      1s
listeners   0
tasks       -
cpu         0.0s
ram         1.9M
version     -
commit      -
text        -
deadline    30s left
";
        assert_eq!(render(&app, now, false), expected);
    }

    #[test]
    fn backoff_says_when_and_colour_is_optional() {
        let app = AppStatus {
            name: "worker".into(),
            state: AppState::Backoff {
                until_unix_ms: 12_000,
            },
            restarts: 5,
            main: None,
            reloading: None,
            queued_reloads: 0,
            dropped_lines: 0,
            family: None,
            last_error: None,
            instances: vec![],
        };
        let plain = render(&app, 10_000, false);
        assert!(
            plain.contains("\nstate       backoff (next start in 2s)\n"),
            "{plain}"
        );
        assert!(plain.ends_with("\ninstances   0\n"), "{plain}");
        let coloured = render(&app, 10_000, true);
        assert!(
            coloured.contains(&format!("{}backoff", style::YELLOW)),
            "{coloured}"
        );
    }
}
