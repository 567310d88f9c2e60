//! Colour for people: ANSI codes, when to use them, and which state gets
//! which.
//!
//! Colour goes to a terminal only, never with `NO_COLOR` set or
//! `TERM=dumb`, and is added after padding so that columns stay aligned.

use std::io::IsTerminal;

use ally_proto::{AppState, InstanceState};

/// Headers.
pub const BOLD: &str = "\x1b[1m";
/// Serving.
pub const GREEN: &str = "\x1b[32m";
/// On its way, or waiting.
pub const YELLOW: &str = "\x1b[33m";
/// Down, or an error.
pub const RED: &str = "\x1b[31m";
/// On its way out, or at rest.
pub const DIM: &str = "\x1b[2m";
/// Back to plain text.
pub const RESET: &str = "\x1b[0m";

/// Whether stdout gets colour: it is a terminal, `NO_COLOR` is unset or
/// empty, and `TERM` is not `dumb`.
pub fn enabled() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// `text` in colour `code` if `on`.
pub fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("{code}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

/// The colour of an app's state.
pub fn of_app(state: AppState) -> &'static str {
    match state {
        AppState::Running => GREEN,
        AppState::Starting | AppState::Backoff { .. } => YELLOW,
        AppState::Failed => RED,
        AppState::Stopping | AppState::Stopped => DIM,
    }
}

/// The colour of an instance's state.
pub fn of_instance(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Main => GREEN,
        InstanceState::Starting => YELLOW,
        InstanceState::Draining | InstanceState::Killed => DIM,
    }
}
