//! The table `ally-ctl list` prints for people.
//!
//! ```text
//! APP  INSTANCE  STATE                PID   UPTIME  LISTENERS
//! web  3*        main                 4242  5m12s   2
//! web  2         draining (28s left)  4100  2h03m   2
//!      reload in progress: waiting for instance 4 (1 more queued)
//! api  -         down                 -     -       -
//!      last error: instance 1 exited with status 1
//! ```
//!
//! `*` marks an app's main instance. Colour, when asked for, is added after
//! padding so that columns stay aligned.

use std::fmt::Write;

use ally_proto::{AppStatus, InstanceState};

const HEADER: [&str; 6] = ["APP", "INSTANCE", "STATE", "PID", "UPTIME", "LISTENERS"];

/// Space between columns.
const GAP: &str = "  ";

const BOLD: &str = "\x1b[1m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// One line of the table: a row of cells, or a note under an app.
enum Line {
    Row([String; 6], Option<&'static str>),
    Note(String, &'static str),
}

/// Renders `apps` as of `now_ms` (milliseconds since the Unix epoch), with
/// ANSI colours if `colour`.
pub fn render(apps: &[AppStatus], now_ms: u64, colour: bool) -> String {
    let mut lines = Vec::new();
    for app in apps {
        if app.instances.is_empty() {
            let mut cells = ["-", "-", "down", "-", "-", "-"].map(String::from);
            cells[0].clone_from(&app.name);
            lines.push(Line::Row(cells, Some(RED)));
        }
        for i in &app.instances {
            let marker = if app.main == Some(i.id) { "*" } else { "" };
            let mut state = i.state.name().to_owned();
            if let Some(deadline) = i.deadline_unix_ms {
                let left = deadline.saturating_sub(now_ms).div_ceil(1000);
                let _ = write!(state, " ({} left)", duration(left));
            }
            let cells = [
                app.name.clone(),
                format!("{}{marker}", i.id),
                state,
                i.pid.to_string(),
                duration(now_ms.saturating_sub(i.started_unix_ms) / 1000),
                i.listeners.to_string(),
            ];
            let colour = match i.state {
                InstanceState::Main => GREEN,
                InstanceState::Starting => YELLOW,
                InstanceState::Draining | InstanceState::Killed => DIM,
            };
            lines.push(Line::Row(cells, Some(colour)));
        }
        if let Some(id) = app.reloading {
            let mut note = format!("reload in progress: waiting for instance {id}");
            if app.queued_reloads > 0 {
                let _ = write!(note, " ({} more queued)", app.queued_reloads);
            }
            lines.push(Line::Note(note, YELLOW));
        }
        if let Some(error) = &app.last_error {
            // A failed reload's reason carries the stderr tail: its lines
            // are kept, indented under the first.
            lines.push(Line::Note(format!("last error: {}", error.trim_end()), RED));
        }
    }

    let mut widths = HEADER.map(str::len);
    for line in &lines {
        if let Line::Row(cells, _) = line {
            for (w, cell) in widths.iter_mut().zip(cells) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }

    let paint = |text: &str, code: Option<&str>| match code {
        Some(code) if colour => format!("{code}{text}{RESET}"),
        _ => text.to_owned(),
    };
    let mut out = String::new();
    let header = row(&HEADER.map(String::from), &widths);
    out.push_str(&paint(&header, Some(BOLD)));
    out.push('\n');
    for line in &lines {
        match line {
            Line::Row(cells, code) => {
                // Colour the state only, so the table stays easy to read.
                let head = row(&cells[..2], &widths[..2]);
                let state = format!("{:<w$}", cells[2], w = widths[2]);
                let tail = row(&cells[3..], &widths[3..]);
                let _ = writeln!(out, "{head}{GAP}{}{GAP}{tail}", paint(&state, *code));
            }
            Line::Note(text, code) => {
                let indent = " ".repeat(widths[0] + GAP.len());
                for (k, part) in text.lines().enumerate() {
                    let more = if k == 0 { "" } else { GAP };
                    let _ = writeln!(out, "{indent}{more}{}", paint(part, Some(code)));
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

/// Cells padded to their widths and joined by [`GAP`].
fn row(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if k > 0 {
            out.push_str(GAP);
        }
        let _ = write!(out, "{cell:<w$}");
    }
    out
}

/// A duration in seconds, short: `3s`, `5m12s`, `2h03m`, `4d07h`.
pub fn duration(secs: u64) -> String {
    let (m, s) = (secs / 60, secs % 60);
    let (h, m) = (m / 60, m % 60);
    let (d, h) = (h / 24, h % 24);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use ally_proto::InstanceStatus;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(3), "3s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(60), "1m00s");
        assert_eq!(duration(312), "5m12s");
        assert_eq!(duration(2 * 3600 + 3 * 60 + 59), "2h03m");
        assert_eq!(duration(4 * 86400 + 7 * 3600), "4d07h");
    }

    fn instance(id: u64, state: InstanceState, started: u64) -> InstanceStatus {
        InstanceStatus {
            id,
            pid: 4000 + id as u32,
            state,
            started_unix_ms: started,
            listeners: 2,
            deadline_unix_ms: None,
        }
    }

    #[test]
    fn table() {
        let now = 10_000_000;
        let mut draining = instance(2, InstanceState::Draining, now - 7_380_000);
        draining.deadline_unix_ms = Some(now + 27_001);
        let apps = [
            AppStatus {
                name: "web".into(),
                main: Some(3),
                reloading: Some(4),
                queued_reloads: 1,
                last_error: None,
                instances: vec![
                    draining,
                    instance(3, InstanceState::Main, now - 312_400),
                    instance(4, InstanceState::Starting, now - 900),
                ],
            },
            AppStatus {
                name: "api".into(),
                main: None,
                reloading: None,
                queued_reloads: 0,
                last_error: Some("instance 1 exited with status 1\nstderr: boom\n".into()),
                instances: vec![],
            },
        ];
        let expected = "\
APP  INSTANCE  STATE                PID   UPTIME  LISTENERS
web  2         draining (28s left)  4002  2h03m   2
web  3*        main                 4003  5m12s   2
web  4         starting             4004  0s      2
     reload in progress: waiting for instance 4 (1 more queued)
api  -         down                 -     -       -
     last error: instance 1 exited with status 1
       stderr: boom
";
        assert_eq!(render(&apps, now, false), expected);
        let coloured = render(&apps, now, true);
        assert!(coloured.contains(&format!("{GREEN}main    ")), "{coloured}");
        assert!(coloured.starts_with(BOLD));
    }
}
