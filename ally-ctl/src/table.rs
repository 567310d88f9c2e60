//! The table `ally-ctl list` prints for people.
//!
//! ```text
//! APP  STATE    INSTANCE          PID   UPTIME  LISTEN  TASKS  CPU   RAM    VERSION  COMMIT
//! web  running  2 draining (28s)  4002  2h03m   2       0      4.1s  9.8M   1.4.1    89abcdef
//! web  running  3* main           4003  5m12s   2       17     1.2s  12.3M  1.4.2    0123abcd
//!      reload in progress: waiting for instance 4 (1 more queued)
//! api  failed   -                 -     -       -       -      -     -      -        -
//!      last error: instance 1 exited with status 1
//! ```
//!
//! STATE is the app's; INSTANCE is an instance's id, `*` if it is main, and
//! its state, with the time left before it is killed when it is starting or
//! draining. FAMILY follows APP when an app has a family, then MASTER when
//! the apps come from more than one master, so that the common table still
//! fits 100 columns. Colour, when asked for, is added after padding so that
//! columns stay aligned.

use std::fmt::Write;

use ally_proto::{AppState, AppStatus, InstanceStatus};

use crate::style::{self, BOLD, RED, YELLOW};
use crate::units::{cpu, duration, size};

/// Column headers.
const HEADER: [&str; COLUMNS] = [
    "APP", "STATE", "INSTANCE", "PID", "UPTIME", "LISTEN", "TASKS", "CPU", "RAM", "VERSION",
    "COMMIT",
];
const COLUMNS: usize = 11;
/// The coloured columns: the app's state and the instance's.
const APP_STATE: usize = 1;
const INSTANCE: usize = 2;

/// Space between columns.
const GAP: &str = "  ";

/// Characters of a commit shown: enough to tell builds apart.
pub const COMMIT_CHARS: usize = 8;
/// Characters of a version shown before it is cut with `…`.
const VERSION_CHARS: usize = 10;

/// One line of the table: a row of cells with the colours of the two state
/// cells, or a note under an app.
enum Line {
    Row(Vec<String>, [&'static str; 2]),
    Note(String, &'static str),
}

/// An app and the name of the master that runs it.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// The master's name.
    pub master: &'a str,
    /// The app.
    pub app: &'a AppStatus,
}

/// Renders `apps` as of `now_ms` (milliseconds since the Unix epoch), with
/// ANSI colours if `colour`.
pub fn render(apps: &[Listed<'_>], now_ms: u64, colour: bool) -> String {
    let families = apps.iter().any(|l| l.app.family.is_some());
    let masters = apps.iter().any(|l| l.master != apps[0].master);
    let mut header: Vec<&str> = HEADER.to_vec();
    let mut extra = Vec::new();
    if families {
        extra.push("FAMILY");
    }
    if masters {
        extra.push("MASTER");
    }
    header.splice(1..1, extra.iter().copied());
    let shift = extra.len();
    // The cells after APP that only some tables have.
    let more = |l: &Listed<'_>| {
        let mut cells = Vec::with_capacity(shift);
        if families {
            cells.push(l.app.family.clone().unwrap_or_else(|| "-".to_owned()));
        }
        if masters {
            cells.push(l.master.to_owned());
        }
        cells
    };
    let row = |l: &Listed<'_>, cells: [String; COLUMNS]| {
        let mut cells = cells.to_vec();
        cells.splice(1..1, more(l));
        cells
    };
    let mut lines = Vec::new();
    for listed in apps {
        let app = listed.app;
        let app_colour = style::of_app(app.state);
        if app.instances.is_empty() {
            let mut cells = [(); COLUMNS].map(|()| "-".to_owned());
            cells[0].clone_from(&app.name);
            cells[APP_STATE] = app.state.name().to_owned();
            lines.push(Line::Row(row(listed, cells), [app_colour, ""]));
        }
        for i in &app.instances {
            let cells = instance_row(app, i, now_ms);
            lines.push(Line::Row(
                row(listed, cells),
                [app_colour, style::of_instance(i.state)],
            ));
        }
        if let AppState::Backoff { until_unix_ms } = app.state {
            let note = format!("next start in {}", time_left(until_unix_ms, now_ms));
            lines.push(Line::Note(note, YELLOW));
        }
        if let Some(note) = reload_note(app) {
            lines.push(Line::Note(note, YELLOW));
        }
        if app.dropped_lines > 0 {
            let note = format!(
                "{} output line(s) dropped: log sink too slow",
                app.dropped_lines
            );
            lines.push(Line::Note(note, YELLOW));
        }
        if let Some(error) = &app.last_error {
            // A failed reload's reason carries the stderr tail: its lines
            // are kept, indented under the first.
            lines.push(Line::Note(format!("last error: {}", error.trim_end()), RED));
        }
    }

    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for line in &lines {
        if let Line::Row(cells, _) = line {
            for (w, cell) in widths.iter_mut().zip(cells.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }

    let mut out = String::new();
    let header: Vec<String> = header
        .iter()
        .zip(&widths)
        .map(|(h, w)| pad(h, *w))
        .collect();
    out.push_str(&style::paint(header.join(GAP).trim_end(), BOLD, colour));
    out.push('\n');
    for line in &lines {
        match line {
            Line::Row(cells, colours) => {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(k, (cell, &w))| {
                        let code = match k.checked_sub(shift) {
                            Some(APP_STATE) => colours[0],
                            Some(INSTANCE) => colours[1],
                            _ => "",
                        };
                        // Colour the states only, so the table stays easy
                        // to read.
                        style::paint(&pad(cell, w), code, colour && !code.is_empty())
                    })
                    .collect();
                out.push_str(&padded.join(GAP));
                out.push('\n');
            }
            Line::Note(text, code) => {
                let indent = " ".repeat(widths[0] + GAP.len());
                for (k, part) in text.lines().enumerate() {
                    let more = if k == 0 { "" } else { GAP };
                    let _ = writeln!(out, "{indent}{more}{}", style::paint(part, code, colour));
                }
            }
        }
    }
    out.lines()
        .map(str::trim_end)
        .fold(String::new(), |mut acc, l| {
            acc.push_str(l);
            acc.push('\n');
            acc
        })
}

/// The cells of one instance's row.
fn instance_row(app: &AppStatus, i: &InstanceStatus, now_ms: u64) -> [String; COLUMNS] {
    let marker = if app.main == Some(i.id) { "*" } else { "" };
    let mut instance = format!("{}{marker} {}", i.id, i.state.name());
    if let Some(deadline) = i.deadline_unix_ms {
        let _ = write!(instance, " ({})", time_left(deadline, now_ms));
    }
    let report = &i.report;
    [
        app.name.clone(),
        app.state.name().to_owned(),
        instance,
        i.pid.to_string(),
        duration(now_ms.saturating_sub(i.started_unix_ms) / 1000),
        i.listeners.to_string(),
        report
            .tasks
            .map_or_else(|| "-".to_owned(), |t| t.to_string()),
        cpu(i.cpu_ms),
        size(i.rss_bytes),
        report
            .version
            .as_deref()
            .map_or_else(|| "-".to_owned(), |v| cut(v, VERSION_CHARS, "…")),
        report
            .commit
            .as_deref()
            .map_or_else(|| "-".to_owned(), |c| cut(c, COMMIT_CHARS, "")),
    ]
}

/// The note for a reload in progress, if one is.
pub fn reload_note(app: &AppStatus) -> Option<String> {
    let id = app.reloading?;
    let mut note = format!("reload in progress: waiting for instance {id}");
    if app.queued_reloads > 0 {
        let _ = write!(note, " ({} more queued)", app.queued_reloads);
    }
    Some(note)
}

/// The time from `now_ms` to `deadline_ms`, rounded up: `28s`, `0s` once
/// past.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> String {
    duration(deadline_ms.saturating_sub(now_ms).div_ceil(1000))
}

/// `text` cut to `max` characters, the last one replaced by `ellipsis`
/// (when not empty) if anything was cut.
fn cut(text: &str, max: usize, ellipsis: &str) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = if ellipsis.is_empty() { max } else { max - 1 };
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(ellipsis);
    out
}

/// `cell` padded with spaces to `width` characters.
fn pad(cell: &str, width: usize) -> String {
    format!("{cell:<width$}")
}

#[cfg(test)]
mod tests {
    use ally_proto::{InstanceState, Report};

    use super::*;
    use crate::style::{DIM, GREEN, RESET};

    fn instance(id: u64, state: InstanceState, started: u64) -> InstanceStatus {
        InstanceStatus {
            id,
            pid: 4000 + id as u32,
            state,
            started_unix_ms: started,
            listeners: 2,
            deadline_unix_ms: None,
            report: Report::default(),
            cpu_ms: 4_100,
            rss_bytes: 10_300_000,
            uid: Some(1000),
        }
    }

    fn app(name: &str, state: AppState, instances: Vec<InstanceStatus>) -> AppStatus {
        AppStatus {
            name: name.into(),
            state,
            restarts: 0,
            main: None,
            reloading: None,
            queued_reloads: 0,
            dropped_lines: 0,
            family: None,
            last_error: None,
            instances,
        }
    }

    /// `apps` as one master's.
    fn render(apps: &[AppStatus], now: u64, colour: bool) -> String {
        let listed: Vec<Listed<'_>> = apps.iter().map(|app| Listed { master: "m", app }).collect();
        super::render(&listed, now, colour)
    }

    #[test]
    fn family_and_master_columns_show_when_they_say_something() {
        let mut web = app("web", AppState::Stopped, vec![]);
        web.family = Some("pay".into());
        let api = app("api", AppState::Stopped, vec![]);
        let listed = [
            Listed {
                master: "one",
                app: &web,
            },
            Listed {
                master: "two",
                app: &api,
            },
        ];
        let out = super::render(&listed, 0, false);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("APP  FAMILY  MASTER  STATE "), "{out}");
        assert!(
            lines[1].starts_with("web  pay     one     stopped"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("api  -       two     stopped"),
            "{out}"
        );
        let out = super::render(&listed[..1], 0, false);
        assert!(out.starts_with("APP  FAMILY  STATE "), "{out}");
        let out = super::render(&listed[1..], 0, false);
        assert!(out.starts_with("APP  STATE "), "{out}");
    }

    #[test]
    fn table() {
        let now = 10_000_000;
        let mut draining = instance(2, InstanceState::Draining, now - 7_380_000);
        draining.deadline_unix_ms = Some(now + 27_001);
        draining.report = Report {
            tasks: Some(0),
            version: Some("1.4.1".into()),
            commit: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
            text: None,
        };
        let mut main = instance(3, InstanceState::Main, now - 312_400);
        main.report = Report {
            tasks: Some(17),
            version: Some("1.4.2-beta.3+build.2024".into()),
            commit: Some("0123abcd".into()),
            text: Some("warm".into()),
        };
        main.cpu_ms = 1_234;
        main.rss_bytes = 12_900_000;
        let mut web = app(
            "web",
            AppState::Running,
            vec![
                draining,
                main,
                instance(4, InstanceState::Starting, now - 900),
            ],
        );
        web.main = Some(3);
        web.reloading = Some(4);
        web.queued_reloads = 1;
        let mut api = app("api", AppState::Failed, vec![]);
        api.last_error = Some("instance 1 exited with status 1\nstderr: boom\n".into());
        let worker = app(
            "worker",
            AppState::Backoff {
                until_unix_ms: now + 2_500,
            },
            vec![],
        );
        let expected = "\
APP     STATE    INSTANCE          PID   UPTIME  LISTEN  TASKS  CPU   RAM    VERSION     COMMIT
web     running  2 draining (28s)  4002  2h03m   2       0      4.1s  9.8M   1.4.1       89abcdef
web     running  3* main           4003  5m12s   2       17     1.2s  12.3M  1.4.2-bet…  0123abcd
web     running  4 starting        4004  0s      2       -      4.1s  9.8M   -           -
        reload in progress: waiting for instance 4 (1 more queued)
api     failed   -                 -     -       -       -      -     -      -           -
        last error: instance 1 exited with status 1
          stderr: boom
worker  backoff  -                 -     -       -       -      -     -      -           -
        next start in 3s
";
        assert_eq!(render(&[web, api, worker], now, false), expected);
        let coloured = render(&[app("web", AppState::Stopped, vec![])], now, true);
        assert!(coloured.starts_with(BOLD), "{coloured}");
        assert!(
            coloured.contains(&format!("{DIM}stopped{RESET}")),
            "{coloured}"
        );
        let mut one = app(
            "web",
            AppState::Running,
            vec![instance(3, InstanceState::Main, now)],
        );
        one.main = Some(3);
        let coloured = render(&[one], now, true);
        assert!(
            coloured.contains(&format!("{GREEN}running{RESET}")),
            "{coloured}"
        );
        assert!(
            coloured.contains(&format!("{GREEN}3* main {RESET}")),
            "{coloured}"
        );
    }

    #[test]
    fn fits_100_columns_during_a_reload() {
        // pid_max is 4194304 on most 64-bit systems: seven digits.
        let now = 10_000_000;
        let mut draining = instance(2, InstanceState::Draining, now - 7_380_000);
        draining.deadline_unix_ms = Some(now + 27_001);
        let mut main = instance(3, InstanceState::Main, now - 312_400);
        main.pid = 4_194_304;
        main.report = Report {
            tasks: Some(123),
            version: Some("1.14.2".into()),
            commit: Some("0123abcd4567".into()),
            text: None,
        };
        main.cpu_ms = 59_900;
        main.rss_bytes = 1023 * 1024 * 1024;
        let mut web = app("worker", AppState::Running, vec![draining, main]);
        web.main = Some(3);
        for line in render(&[web], now, false).lines() {
            assert!(line.chars().count() <= 100, "{} wide: {line}", line.len());
        }
    }

    #[test]
    fn dropped_lines_get_a_note() {
        let mut web = app("web", AppState::Running, vec![]);
        assert!(!render(&[web.clone()], 0, false).contains("dropped"));
        web.dropped_lines = 42;
        let out = render(&[web], 0, false);
        assert!(
            out.contains("42 output line(s) dropped: log sink too slow"),
            "{out}"
        );
    }
}
