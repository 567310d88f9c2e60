//! Who this process is: app name, instance id, start time.

use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use ally_proto::env;

use crate::error::Error;
use crate::mode;

/// This process as an instance of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Instance {
    /// The app's name: `ALLY_APP` when managed, the executable's file name
    /// in simulate mode.
    pub app: String,
    /// The instance id, counting from 1 within the app when managed; always
    /// 0 in simulate mode, so that logs tell the two apart.
    pub id: u64,
    /// When this process started (from `/proc/self/stat`; if that cannot be
    /// read, when this crate was first asked).
    pub started: SystemTime,
    /// Whether a master manages this process.
    pub managed: bool,
}

/// This process's [`Instance`]. Cheap after the first call.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let me = ally::instance()?;
/// eprintln!("{} instance {} (managed: {})", me.app, me.id, me.managed);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// When `ALLY_SOCKET` is set but the environment does not check out (see
/// [`Error::NotMasterChild`] and [`Error::BadEnv`]).
pub fn instance() -> io::Result<Instance> {
    static INSTANCE: OnceLock<Instance> = OnceLock::new();
    if let Some(me) = INSTANCE.get() {
        return Ok(me.clone());
    }
    let me = match mode::managed()? {
        Some(m) => {
            let app = m.app.clone().ok_or(Error::BadEnv {
                var: env::APP,
                value: None,
                expected: "the app's name",
            })?;
            let id = m
                .instance
                .as_deref()
                .and_then(|i| i.parse::<u64>().ok())
                .ok_or_else(|| Error::BadEnv {
                    var: env::INSTANCE,
                    value: m.instance.clone(),
                    expected: "a decimal instance id",
                })?;
            Instance {
                app,
                id,
                started: process_start(),
                managed: true,
            }
        }
        None => Instance {
            app: executable_name(),
            id: 0,
            started: process_start(),
            managed: false,
        },
    };
    Ok(INSTANCE.get_or_init(|| me).clone())
}

fn executable_name() -> String {
    let exe = std::env::current_exe().ok();
    let argv0 = std::env::args_os().next().map(Into::into);
    exe.or(argv0)
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| {
            let n = n.to_string_lossy();
            // A binary replaced on disk shows as "name (deleted)".
            n.strip_suffix(" (deleted)").unwrap_or(&n).to_owned()
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// When this process started, by the clock.
fn process_start() -> SystemTime {
    let now = SystemTime::now();
    match process_age() {
        Some(age) => now.checked_sub(age).unwrap_or(now),
        None => now,
    }
}

/// How long ago this process started: boot-clock now minus field 22 of
/// `/proc/self/stat` (`starttime`, clock ticks after boot).
fn process_age() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks = start_ticks(&stat)?;
    let hz = rustix::param::clock_ticks_per_second();
    if hz == 0 {
        return None;
    }
    let started =
        Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let now = Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    );
    now.checked_sub(started)
}

/// `starttime` from the text of `/proc/<pid>/stat`. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after the command name; starttime is field 22.
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_skips_odd_command_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 \
                    200 18446744073709551615";
        assert_eq!(start_ticks(stat), Some(98765));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn simulate_instance_is_id_zero_and_started_recently() {
        let me = instance().unwrap();
        assert!(!me.managed);
        assert_eq!(me.id, 0);
        assert!(!me.app.is_empty());
        let age = SystemTime::now().duration_since(me.started).unwrap();
        assert!(age < Duration::from_secs(3600), "age {age:?}");
    }
}
