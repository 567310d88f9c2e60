//! The `ally.toml` a test writes: one [`AppConfig`] per `[[app]]`.

use std::path::Path;

/// One `[[app]]` of a config.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's name.
    pub name: String,
    /// Its argv.
    pub command: Vec<String>,
    /// `ready_timeout`, e.g. `"2s"`.
    pub ready_timeout: Option<String>,
    /// `stop_timeout`, e.g. `"3s"`.
    pub stop_timeout: Option<String>,
    /// `stop_signal`, e.g. `"SIGTERM"`.
    pub stop_signal: Option<String>,
    /// `log`: `"inherit"` unless changed, so instance output lands in
    /// `master.log` where tests read it.
    pub log: Option<String>,
    /// Further `key = value` lines, written as they are.
    pub extra: Vec<String>,
}

impl AppConfig {
    /// An app running `command` (one argument) with the master's defaults.
    pub fn new(name: &str, command: &Path) -> AppConfig {
        AppConfig {
            name: name.into(),
            command: vec![command.to_string_lossy().into_owned()],
            ready_timeout: None,
            stop_timeout: None,
            stop_signal: None,
            log: Some("inherit".into()),
            extra: Vec::new(),
        }
    }

    /// Sets `log` (`None`: the master's default file).
    pub fn log(mut self, target: Option<&str>) -> AppConfig {
        self.log = target.map(Into::into);
        self
    }

    /// Adds a raw `key = value` line to the table.
    pub fn line(mut self, line: &str) -> AppConfig {
        self.extra.push(line.into());
        self
    }

    /// Sets `ready_timeout`.
    pub fn ready_timeout(mut self, d: &str) -> AppConfig {
        self.ready_timeout = Some(d.into());
        self
    }

    /// Sets `stop_timeout`.
    pub fn stop_timeout(mut self, d: &str) -> AppConfig {
        self.stop_timeout = Some(d.into());
        self
    }

    /// Sets `stop_signal`.
    pub fn stop_signal(mut self, s: &str) -> AppConfig {
        self.stop_signal = Some(s.into());
        self
    }

    /// The app as a TOML `[[app]]` table.
    pub fn to_toml(&self) -> String {
        let mut t = format!("[[app]]\nname = {}\n", toml_str(&self.name));
        let argv: Vec<String> = self.command.iter().map(|a| toml_str(a)).collect();
        t.push_str(&format!("command = [{}]\n", argv.join(", ")));
        for (key, value) in [
            ("ready_timeout", &self.ready_timeout),
            ("stop_timeout", &self.stop_timeout),
            ("stop_signal", &self.stop_signal),
            ("log", &self.log),
        ] {
            if let Some(v) = value {
                t.push_str(&format!("{key} = {}\n", toml_str(v)));
            }
        }
        for line in &self.extra {
            t.push_str(line);
            t.push('\n');
        }
        t
    }
}

/// A config file's text for `apps`.
pub fn config_toml(apps: &[AppConfig]) -> String {
    apps.iter()
        .map(AppConfig::to_toml)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid_toml_shape() {
        let app = AppConfig::new("web", Path::new("/t/a \"b\".sh"))
            .ready_timeout("1s")
            .stop_timeout("3s")
            .stop_signal("SIGTERM");
        assert_eq!(
            app.to_toml(),
            "[[app]]\nname = \"web\"\ncommand = [\"/t/a \\\"b\\\".sh\"]\n\
             ready_timeout = \"1s\"\nstop_timeout = \"3s\"\nstop_signal = \"SIGTERM\"\n\
             log = \"inherit\"\n"
        );
    }
}
