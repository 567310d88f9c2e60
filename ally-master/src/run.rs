//! `ally-master run [OPTIONS] -- CMD ARGS...`: a master for one app with
//! no config file, in the foreground (Go ally's `with`; a development
//! loop like systemfd's).
//!
//! The flags are written as the `[[app]]` table they stand for and parsed
//! by the config parser itself ([`config::parse`]), so they are checked
//! exactly as the file's keys are, with the same messages, and a flag in
//! error is named by the line its key is on. Its log goes to the terminal
//! (`log = "inherit"`) unless `--log` says otherwise; its control socket is
//! `<runtime dir>/<NAME>.sock`; relative paths are resolved against the
//! current directory.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use argh::FromArgs;

use crate::config::settings::quote;
use crate::config::{self, Config, ConfigError};

/// run one app in the foreground, with no config file
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "run",
    example = "ally-master run -- ./target/debug/examples/demo --addr 127.0.0.1:8080\n\
               ally-master run --name web --listen tcp://127.0.0.1:8080 --ready notify -- ./server",
    note = "every option is the config key of the same name (see the config reference) and \
            is checked as it is; the app's output goes to the terminal unless --log names a \
            file. ally-ctl controls it as any master (ally-ctl reload NAME starts its command \
            from disk anew); there is no file for reread. Ctrl-C (SIGINT) stops it gracefully, \
            a second one kills the instances."
)]
pub struct RunArgs {
    /// the app's name (default: the command's file name)
    #[argh(option)]
    pub name: Option<String>,
    /// the app's family, for ally-ctl's --family
    #[argh(option)]
    pub family: Option<String>,
    /// a socket to bind and hand over as LISTEN_FDS, as in `listen`:
    /// [NAME=]SCHEME://ADDRESS[?mode=OCTAL] (repeatable)
    #[argh(option)]
    pub listen: Vec<String>,
    /// how readiness is known: lib, notify, delay:2s or immediate (default
    /// lib)
    #[argh(option)]
    pub ready: Option<String>,
    /// time to report ready before a reload fails (default 30s)
    #[argh(option)]
    pub ready_timeout: Option<String>,
    /// time to drain after the stop signal before SIGKILL (default 30s)
    #[argh(option)]
    pub stop_timeout: Option<String>,
    /// the signal that asks an instance to drain (default SIGTERM)
    #[argh(option)]
    pub stop_signal: Option<String>,
    /// an environment variable for the app: KEY=VALUE (repeatable)
    #[argh(option)]
    pub env: Vec<String>,
    /// give the app the master's whole environment
    #[argh(switch)]
    pub inherit_env: bool,
    /// the app's working directory (default: the current one)
    #[argh(option)]
    pub cwd: Option<String>,
    /// run the app as this user (name or uid; the master must be root)
    #[argh(option)]
    pub user: Option<String>,
    /// run the app with this primary group (name or gid)
    #[argh(option)]
    pub group: Option<String>,
    /// a file for the app's output instead of the terminal
    #[argh(option)]
    pub log: Option<String>,
    /// the program and its arguments, after `--`
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The app's name: `--name`, else the command's file name.
    fn app_name(&self) -> Option<String> {
        self.name.clone().or_else(|| {
            let program = self.command.first()?;
            let base = Path::new(program).file_name()?.to_str()?;
            Some(base.to_owned())
        })
    }

    /// The config the flags stand for, and the path whose stem names the
    /// control socket (`<NAME>.sock`).
    ///
    /// # Errors
    ///
    /// A missing command, or the message of the config parser for the
    /// first flag in error, naming the flag.
    pub fn config(&self) -> Result<(Config, PathBuf), String> {
        if self.command.is_empty() {
            return Err("`run` needs a command after `--`, e.g. \
                        `ally-master run -- ./server --port 8080`"
                .into());
        }
        let name = self
            .app_name()
            .ok_or_else(|| "cannot name the app after its command: give --name NAME".to_owned())?;
        // One line per flag, so that an error's line names its flag.
        let mut lines: Vec<(&str, String)> = vec![
            ("", "[[app]]".into()),
            ("--name", format!("name = {}", quote(&name))),
            (
                "the command",
                format!(
                    "command = [{}]",
                    self.command
                        .iter()
                        .map(|a| quote(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            (
                "--log",
                format!("log = {}", quote(self.log.as_deref().unwrap_or("inherit"))),
            ),
        ];
        let mut key = |flag: &'static str, key: &str, value: &Option<String>| {
            if let Some(v) = value {
                lines.push((flag, format!("{key} = {}", quote(v))));
            }
        };
        key("--family", "family", &self.family);
        key("--ready", "ready", &self.ready);
        key("--ready-timeout", "ready_timeout", &self.ready_timeout);
        key("--stop-timeout", "stop_timeout", &self.stop_timeout);
        key("--stop-signal", "stop_signal", &self.stop_signal);
        key("--cwd", "cwd", &self.cwd);
        key("--user", "user", &self.user);
        key("--group", "group", &self.group);
        if self.inherit_env {
            lines.push(("--inherit-env", "inherit_env = true".into()));
        }
        if !self.listen.is_empty() {
            let specs: Vec<String> = self.listen.iter().map(|s| quote(s)).collect();
            lines.push(("--listen", format!("listen = [{}]", specs.join(", "))));
        }
        if !self.env.is_empty() {
            let mut table = String::from("env = {");
            for (i, pair) in self.env.iter().enumerate() {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(format!(
                        "--env {pair:?}: write KEY=VALUE, e.g. --env RUST_LOG=info"
                    ));
                };
                let sep = if i == 0 { " " } else { ", " };
                let _ = write!(table, "{sep}{} = {}", quote(k), quote(v));
            }
            table.push_str(" }");
            lines.push(("--env", table));
        }
        let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        let cwd = std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?;
        // No file is read: the path anchors relative paths (the current
        // directory) and names the app in messages.
        let anchor = cwd.join(format!("{name}.run"));
        let config = config::parse(&text, &anchor).map_err(|e| match e {
            ConfigError::Invalid { line, message, .. } => {
                let flag = lines.get(line.wrapping_sub(1)).map_or("", |(f, _)| *f);
                if flag.is_empty() {
                    message
                } else {
                    format!("{flag}: {message}")
                }
            }
            other => other.to_string(),
        })?;
        Ok((config, PathBuf::from(format!("{name}.sock"))))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::LogTarget;

    fn run(args: &[&str]) -> Result<(Config, PathBuf), String> {
        RunArgs::from_args(&["run"], args).unwrap().config()
    }

    #[test]
    fn the_flags_are_the_keys_and_the_command_names_the_app() {
        let (config, socket) = run(&[
            "--listen",
            "http=tcp://127.0.0.1:8080",
            "--listen",
            "unix:///tmp/a.sock",
            "--stop-timeout",
            "2s",
            "--env",
            "A=1=2",
            "--",
            "/usr/bin/demo",
            "--addr",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(socket, PathBuf::from("demo.sock"));
        let app = &config.apps[0];
        assert_eq!(app.name, "demo");
        assert_eq!(app.command, ["/usr/bin/demo", "--addr", "127.0.0.1:0"]);
        assert_eq!(app.listen.len(), 2);
        assert_eq!(app.listen[0].name, "http");
        assert_eq!(app.stop_timeout, Duration::from_secs(2));
        assert_eq!(app.env.get("A").map(String::as_str), Some("1=2"));
        assert_eq!(app.log, LogTarget::Inherit);
        assert_eq!(app.cwd, std::env::current_dir().unwrap());
    }

    #[test]
    fn a_bad_value_is_refused_as_the_file_would_naming_the_flag() {
        let e = run(&["--ready-timeout", "soon", "--", "x"]).unwrap_err();
        assert!(e.starts_with("--ready-timeout: "), "{e}");
        assert!(e.contains("\"soon\""), "{e}");
        let e = run(&["--listen", "tcp://host:80", "--", "x"]).unwrap_err();
        assert!(e.contains("--listen: "), "{e}");
        let e = run(&["--name", "a b", "--", "x"]).unwrap_err();
        assert!(e.contains("--name: "), "{e}");
        let e = run(&["--env", "NOEQUALS", "--", "x"]).unwrap_err();
        assert!(e.contains("KEY=VALUE"), "{e}");
        assert!(run(&[]).unwrap_err().contains("needs a command"));
    }
}
