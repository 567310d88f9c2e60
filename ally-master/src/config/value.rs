//! Scalar values of the config file, each checked while it is deserialized
//! so that an error points at the offending value (the TOML deserializer
//! attaches the value's span to any error raised here).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustix::process::Signal;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// Longest app name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Longest accepted `ready_timeout` or `stop_timeout`: one day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The signals `stop_signal` accepts, by name.
///
/// Signals that kill or stop a process outright (`KILL`, `STOP`) or that
/// report a fault (`SEGV`, ...) cannot ask for a graceful drain.
pub const STOP_SIGNALS: [(&str, Signal); 8] = [
    ("SIGHUP", Signal::HUP),
    ("SIGINT", Signal::INT),
    ("SIGQUIT", Signal::QUIT),
    ("SIGUSR1", Signal::USR1),
    ("SIGUSR2", Signal::USR2),
    ("SIGTERM", Signal::TERM),
    ("SIGWINCH", Signal::WINCH),
    ("SIGALRM", Signal::ALARM),
];

/// An example command, shown in messages about a malformed one.
const COMMAND_EXAMPLE: &str = r#"["./server", "--port", "8080"]"#;

/// A visitor for values written as a TOML string, checked by `parse`.
struct StrVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// Deserializes a string and checks it with `parse`.
pub(super) fn from_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_str(StrVisitor { expecting, parse })
}

/// The word `ally-ctl` reads as "every app" (`ally-ctl reload all`,
/// `--family all`): neither an app nor a family may be called that.
pub const ALL: &str = "all";

/// Checks an app or family name (`what`): 1 to [`MAX_NAME_LEN`] ASCII
/// letters, digits, `_`, `.` or `-`, neither `.` nor `..` (names become
/// file names), and not [`ALL`].
fn check_name(what: &str, s: &str) -> Result<String, String> {
    let charset = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if s.is_empty() || s.len() > MAX_NAME_LEN || !charset || s == "." || s == ".." {
        return Err(format!(
            "invalid {what} name {s:?}: use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' \
             or '-' (and not \".\" or \"..\")"
        ));
    }
    if s == ALL {
        return Err(format!(
            "invalid {what} name {s:?}: \"{ALL}\" is reserved, `ally-ctl reload {ALL}` means \
             every app; choose another name"
        ));
    }
    Ok(s.to_owned())
}

/// An app name, as [`check_name`] allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName(pub String);

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "an app name such as \"web\"", |s| {
            check_name("app", s).map(AppName)
        })
    }
}

/// A `family` name, checked like an app name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyName(pub String);

impl<'de> Deserialize<'de> for FamilyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a family name such as \"payments\"", |s| {
            check_name("family", s).map(FamilyName)
        })
    }
}

/// A timeout: a positive whole number with a unit (`ms`, `s`, `m`, `h`), at
/// most [`MAX_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a duration with a unit, e.g. \"10s\"", |s| {
            parse_duration(s).map(Timeout)
        })
    }
}

/// Parses `500ms`, `10s`, `2m` or `1h` into a duration in
/// `(0, MAX_TIMEOUT]`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    let scale_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    if digits == 0 || scale_ms == 0 {
        return Err(format!(
            "invalid duration {s:?}: expected a number with a unit, e.g. 500ms, 10s, 2m, 1h"
        ));
    }
    // Digits only, so the parse fails on overflow alone: far above the cap.
    let ms = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale_ms))
        .map(Duration::from_millis);
    match ms {
        Some(d) if d.is_zero() => Err(format!("invalid duration {s:?}: must be more than zero")),
        Some(d) if d <= MAX_TIMEOUT => Ok(d),
        _ => Err(format!("invalid duration {s:?}: must be at most 24h")),
    }
}

/// A limit: a whole number above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positive(pub usize);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .map(Positive)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid limit {n}: must be a whole number above zero"
                ))
            })
    }
}

/// A stop signal from [`STOP_SIGNALS`], named with or without `SIG`, in any
/// case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal(pub Signal);

impl<'de> Deserialize<'de> for StopSignal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a signal name such as \"SIGTERM\"", |s| {
            let upper = s.to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            STOP_SIGNALS
                .iter()
                .find(|(name, _)| name[3..] == *bare)
                .map(|&(_, sig)| StopSignal(sig))
                .ok_or_else(|| {
                    let names: Vec<&str> = STOP_SIGNALS.iter().map(|(n, _)| &n[3..]).collect();
                    format!(
                        "unsupported stop signal {s:?}: use one of {}",
                        names.join(", ")
                    )
                })
        })
    }
}

/// The name of an environment variable: not empty, no `=` or NUL, and not
/// one of the variables the master sets itself ([`ally_proto::env::ALL`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "an environment variable name", |s| {
            if s.is_empty() || s.contains(['=', '\0']) {
                return Err(format!(
                    "invalid environment variable name {s:?}: it must be non-empty, \
                     without '=' or NUL"
                ));
            }
            if ally_proto::env::ALL.contains(&s) {
                return Err(format!(
                    "environment variable {s} is set by the master for every instance; \
                     remove it from env"
                ));
            }
            Ok(EnvName(s.to_owned()))
        })
    }
}

/// The value of an environment variable: any string without NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue(pub String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a string", |s| {
            no_nul(s, "an environment variable value").map(|s| EnvValue(s.to_owned()))
        })
    }
}

/// A path as written in the config: not empty, no NUL. Relative paths are
/// resolved later, against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathValue(pub PathBuf);

impl<'de> Deserialize<'de> for PathValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a path", |s| {
            if s.is_empty() {
                return Err("empty path: write \".\" for the config file's directory".into());
            }
            no_nul(s, "a path").map(|s| PathValue(s.into()))
        })
    }
}

/// A whole number, used as a `factor` of the restart delay: 1 to
/// [`MAX_FACTOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor(pub u32);

/// Largest `factor`.
pub const MAX_FACTOR: u32 = 100;

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_FACTOR).contains(n))
            .map(Factor)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid factor {n}: must be a whole number from 1 to {MAX_FACTOR}"
                ))
            })
    }
}

/// A port of `privileged_ports`: a whole number from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u16::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .map(Port)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid port {n}: must be a whole number from 1 to 65535"
                ))
            })
    }
}

/// A count that may be zero: a whole number from 0 to `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u32::try_from(n).map(Count).map_err(|_| {
            de::Error::custom(format!(
                "invalid count {n}: must be a whole number from 0 to {}",
                u32::MAX
            ))
        })
    }
}

/// Largest uid or gid a config accepts: `(uid_t)-1` means "unchanged" to
/// the kernel, so it names no one.
pub const MAX_ID: u32 = u32::MAX - 1;

/// A `user` (`GROUP = false`) or `group` (`GROUP = true`): a name, or a
/// numeric id written as a string or an integer, kept as a string. Only the
/// syntax is checked here: not empty, no `:` or NUL, and a number of digits
/// only is at most [`MAX_ID`]. Whether it exists is checked at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal<const GROUP: bool>(pub String);

impl<const GROUP: bool> Principal<GROUP> {
    /// `user` or `group`, and `uid` or `gid`, for messages.
    const WHAT: (&str, &str) = if GROUP {
        ("group", "gid")
    } else {
        ("user", "uid")
    };

    /// The message for an id out of range.
    fn bad_id(id: impl fmt::Display) -> String {
        let (what, id_name) = Self::WHAT;
        format!("invalid {what} {id}: a numeric {id_name} must be from 0 to {MAX_ID}")
    }
}

impl<'de, const GROUP: bool> Deserialize<'de> for Principal<GROUP> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PrincipalVisitor::<GROUP>)
    }
}

struct PrincipalVisitor<const GROUP: bool>;

impl<const GROUP: bool> Visitor<'_> for PrincipalVisitor<GROUP> {
    type Value = Principal<GROUP>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, id) = Principal::<GROUP>::WHAT;
        write!(f, "a {what} name or a numeric {id}")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u32::try_from(v)
            .ok()
            .filter(|&id| id <= MAX_ID)
            .map(|id| Principal(id.to_string()))
            .ok_or_else(|| E::custom(Principal::<GROUP>::bad_id(v)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        let (what, id) = Principal::<GROUP>::WHAT;
        if s.is_empty() || s.contains([':', '\0']) {
            return Err(E::custom(format!(
                "invalid {what} {s:?}: give a name or a numeric {id}, without ':' or NUL"
            )));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().map_or(true, |id| id > MAX_ID)
        {
            return Err(E::custom(Principal::<GROUP>::bad_id(s)));
        }
        Ok(Principal(s.to_owned()))
    }
}

/// The `log` of an app as written: `"inherit"`, or a path that names a
/// file (not empty, no NUL, not ending in `/`, `.` or `..`). A relative
/// path is resolved later, against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogValue {
    /// `"inherit"`.
    Inherit,
    /// A file path, as written.
    File(PathBuf),
}

/// What `log` says to write instead of a bad value.
const LOG_EXAMPLE: &str = r#"write "inherit" or a file path such as "log/web.log""#;

impl<'de> Deserialize<'de> for LogValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "\"inherit\" or a file path", |s| {
            if s == "inherit" {
                return Ok(LogValue::Inherit);
            }
            if s.is_empty() {
                return Err(format!("empty log path: {LOG_EXAMPLE}"));
            }
            let last = s.rsplit('/').next().unwrap_or(s);
            if matches!(last, "" | "." | "..") {
                return Err(format!("log path {s:?} names a directory: {LOG_EXAMPLE}"));
            }
            no_nul(s, "a path").map(|s| LogValue::File(s.into()))
        })
    }
}

/// One `include` entry: a path, not empty, no NUL; `*` and `?` are
/// wildcards, allowed in its last component only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludePattern(pub String);

impl<'de> Deserialize<'de> for IncludePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a path or a pattern such as \"apps.d/*.toml\"", |s| {
            if s.is_empty() {
                return Err(
                    "empty include: give a file or a pattern such as \"apps.d/*.toml\"".into(),
                );
            }
            let (dir, last) = s.rsplit_once('/').unwrap_or(("", s));
            if dir.contains(['*', '?']) {
                return Err(format!(
                    "invalid include {s:?}: wildcards are allowed in the last path component \
                     only, e.g. \"apps.d/*.toml\""
                ));
            }
            if matches!(last, "" | "." | "..") {
                return Err(format!(
                    "invalid include {s:?}: it names a directory, not a file"
                ));
            }
            no_nul(s, "an include path").map(|s| IncludePattern(s.to_owned()))
        })
    }
}

/// The argv of an app: an array of strings whose first element names the
/// program (not blank) and where no element contains NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(pub Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(CommandVisitor)
    }
}

struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = Command;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the program and its arguments as an array, e.g. {COMMAND_EXAMPLE}"
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
        // Each element is deserialized on its own, so its error carries its
        // own span.
        let Some(program) = seq.next_element::<Arg<true>>()? else {
            return Err(de::Error::custom(format!(
                "command is empty: give the program and its arguments, e.g. {COMMAND_EXAMPLE}"
            )));
        };
        let mut argv = vec![program.0];
        while let Some(arg) = seq.next_element::<Arg<false>>()? {
            argv.push(arg.0);
        }
        Ok(Command(argv))
    }
}

/// One element of a command; `PROGRAM` for the first one, which must not be
/// blank.
struct Arg<const PROGRAM: bool>(String);

impl<'de, const PROGRAM: bool> Deserialize<'de> for Arg<PROGRAM> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parse = if PROGRAM {
            |s: &str| {
                if s.trim().is_empty() {
                    return Err(format!(
                        "the program name is blank: the command's first element names the \
                         program to run, e.g. {COMMAND_EXAMPLE}"
                    ));
                }
                no_nul(s, "a command argument").map(|s| Arg(s.to_owned()))
            }
        } else {
            |s: &str| no_nul(s, "a command argument").map(|s| Arg(s.to_owned()))
        };
        from_str(d, "a string", parse)
    }
}

/// Refuses a string with a NUL byte, which no exec or environment can carry.
fn no_nul<'s>(s: &'s str, what: &str) -> Result<&'s str, String> {
    if s.contains('\0') {
        return Err(format!("{what} cannot contain a NUL character"));
    }
    Ok(s)
}
