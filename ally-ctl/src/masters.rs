//! Every master in the runtime directory at once: their apps for one
//! `list`, and which master runs the app a command names.
//!
//! A stale socket (a file left by a master that exited) is reported once
//! on stderr and skipped. A master that is there but does not answer
//! (refuses us, another protocol, untrusted, or silent for
//! [`ANSWER_TIMEOUT`] without `--timeout`) is reported once too; `list`
//! shows the others and exits with that failure's code, and a command on
//! apps refuses to guess where the app it cannot find might run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ally_proto::{AppStatus, ControlRequest, ControlResponse};

use crate::ask::unexpected;
use crate::client::{self, Client};
use crate::failure::Failure;
use crate::select::Selection;

/// How long each of several masters has to answer for its list when no
/// `--timeout` is given: a master that is stuck is reported and skipped
/// rather than hang the whole view.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One master's apps.
#[derive(Debug)]
pub struct Listing {
    /// Its name: the socket's file name without `.sock` (the config's).
    pub master: String,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its apps, in config order.
    pub apps: Vec<AppStatus>,
}

/// What asking every master found.
#[derive(Debug)]
pub struct Survey {
    /// The masters that answered, in socket order.
    pub listings: Vec<Listing>,
    /// The first failure of a live master that did not answer, if any.
    pub failed: Option<Failure>,
}

/// An app and the socket of the master that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The app's name.
    pub app: String,
    /// The master's control socket.
    pub socket: PathBuf,
}

/// A master's name: its socket's file name without the extension.
pub fn name_of(socket: &Path) -> String {
    socket.file_stem().map_or_else(
        || socket.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// The apps of the master at `socket`.
///
/// # Errors
///
/// The connection's failures, or the master's refusal.
pub fn list_of(socket: &Path, deadline: Option<Instant>) -> Result<Vec<AppStatus>, Failure> {
    let mut client = Client::connect(Some(socket), deadline)?;
    client.send(&ControlRequest::List)?;
    match client.recv()? {
        ControlResponse::Apps(apps) => Ok(apps),
        ControlResponse::Error(f) => Err(Failure::from_master(
            &format!("{} cannot list its apps", socket.display()),
            &f,
        )),
        other => Err(unexpected(&other, "Apps")),
    }
}

/// Asks the master at `socket`, or every master in the runtime directory,
/// for its apps. Problems with some of them go to stderr, once each.
///
/// # Errors
///
/// When no master answers: the only master's failure, or
/// [`Failure::Unreachable`].
pub fn survey(socket: Option<&Path>, deadline: Option<Instant>) -> Result<Survey, Failure> {
    let socket = match socket {
        Some(socket) => socket.to_owned(),
        None => {
            let mut probe = client::probe_runtime_dir()?;
            for dead in &probe.dead {
                warn(&format!("skipping a stale socket: {dead}"));
            }
            for refusal in &probe.untrusted {
                warn(&refusal.to_string());
            }
            if probe.live.len() > 1 || !probe.untrusted.is_empty() {
                let failed = probe.untrusted.into_iter().next();
                return Ok(ask_each(probe.live, failed, deadline));
            }
            // One master: its failure is the command's, as ever.
            probe.live.swap_remove(0)
        }
    };
    let apps = list_of(&socket, deadline)?;
    Ok(Survey {
        listings: vec![listing(socket, apps)],
        failed: None,
    })
}

fn listing(socket: PathBuf, apps: Vec<AppStatus>) -> Listing {
    Listing {
        master: name_of(&socket),
        socket,
        apps,
    }
}

/// Asks each of `sockets`; `failed` is a failure already met.
fn ask_each(sockets: Vec<PathBuf>, failed: Option<Failure>, deadline: Option<Instant>) -> Survey {
    let mut survey = Survey {
        listings: Vec::new(),
        failed,
    };
    for socket in sockets {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + ANSWER_TIMEOUT);
        match list_of(&socket, Some(deadline)) {
            Ok(apps) => survey.listings.push(listing(socket, apps)),
            Err(failure) => {
                warn(&failure.to_string());
                survey.failed.get_or_insert(failure);
            }
        }
    }
    survey
}

/// One line on stderr about a master that is left out.
fn warn(message: &str) {
    eprintln!("{}: {message}", crate::cli::PROGRAM);
}

/// The apps `selection` names and the master of each.
///
/// Names given with `--socket`, or with one master running, go to it
/// without a listing (it answers for an unknown app itself); otherwise
/// every master is asked, and a name must be run by exactly one.
///
/// # Errors
///
/// [`Failure::Refused`] for a name no master runs, a name several run
/// (naming them: pass `--socket`), or a family with no app;
/// [`Failure::Unreachable`] when a master that did not answer might run
/// what was asked; and the failures of reaching the masters.
pub fn resolve(
    selection: &Selection,
    socket: Option<&Path>,
    deadline: Option<Instant>,
) -> Result<Vec<Target>, Failure> {
    if let Selection::Apps(names) = selection {
        let direct = match socket {
            Some(socket) => Some(socket.to_owned()),
            None => {
                let mut probe = client::probe_runtime_dir()?;
                (probe.live.len() == 1 && probe.untrusted.is_empty())
                    .then(|| probe.live.swap_remove(0))
            }
        };
        if let Some(socket) = direct {
            return Ok(names
                .iter()
                .map(|app| Target {
                    app: app.clone(),
                    socket: socket.clone(),
                })
                .collect());
        }
    }
    let survey = survey(socket, deadline)?;
    pick(selection, &survey)
}

/// The targets `selection` picks from `survey`.
fn pick(selection: &Selection, survey: &Survey) -> Result<Vec<Target>, Failure> {
    let incomplete = |what: &str| {
        survey.failed.as_ref().map(|failed| {
            Failure::Unreachable(format!(
                "{what}, and a master did not answer ({failed}): it may run it; fix that \
                 or pass --socket"
            ))
        })
    };
    let names = match selection {
        Selection::Apps(names) => names,
        Selection::Family(_) | Selection::All => {
            if let Some(failure) = incomplete("cannot tell every app of the selection") {
                return Err(failure);
            }
            let targets: Vec<Target> = survey
                .listings
                .iter()
                .flat_map(|l| {
                    l.apps
                        .iter()
                        .filter(|a| selection.matches(a))
                        .map(|a| Target {
                            app: a.name.clone(),
                            socket: l.socket.clone(),
                        })
                })
                .collect();
            if targets.is_empty() {
                return Err(Failure::Refused(format!(
                    "no app matches {} (asked {}); `ally-ctl list` shows each app's family",
                    selection.describe(),
                    asked(survey)
                )));
            }
            return Ok(targets);
        }
    };
    let mut targets = Vec::with_capacity(names.len());
    for app in names {
        let runs: Vec<&Listing> = survey
            .listings
            .iter()
            .filter(|l| l.apps.iter().any(|a| a.name == *app))
            .collect();
        match runs.as_slice() {
            [one] => targets.push(Target {
                app: app.clone(),
                socket: one.socket.clone(),
            }),
            [] => {
                let what = format!("no master runs an app named {app:?}");
                return Err(incomplete(&what).unwrap_or_else(|| {
                    Failure::Refused(format!(
                        "{what} (asked {}); `ally-ctl list` shows them all",
                        asked(survey)
                    ))
                }));
            }
            several => {
                let named: Vec<String> = several
                    .iter()
                    .map(|l| format!("{} ({})", l.master, l.socket.display()))
                    .collect();
                return Err(Failure::Refused(format!(
                    "several masters run an app named {app:?}: {}; pass --socket with the \
                     one you mean, e.g. ally-ctl --socket {} ...",
                    named.join(", "),
                    several[0].socket.display()
                )));
            }
        }
    }
    Ok(targets)
}

/// The masters asked, for messages: `web, api`.
fn asked(survey: &Survey) -> String {
    let names: Vec<&str> = survey.listings.iter().map(|l| l.master.as_str()).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ally_proto::AppState;

    fn app(name: &str, family: Option<&str>) -> AppStatus {
        AppStatus {
            name: name.into(),
            state: AppState::Running,
            restarts: 0,
            main: None,
            reloading: None,
            queued_reloads: 0,
            last_error: None,
            instances: Vec::new(),
            dropped_lines: 0,
            family: family.map(str::to_owned),
        }
    }

    fn survey() -> Survey {
        Survey {
            listings: vec![
                Listing {
                    master: "one".into(),
                    socket: "/r/one.sock".into(),
                    apps: vec![app("web", Some("pay")), app("cron", None)],
                },
                Listing {
                    master: "two".into(),
                    socket: "/r/two.sock".into(),
                    apps: vec![app("api", Some("pay")), app("cron", None)],
                },
            ],
            failed: None,
        }
    }

    fn target(app: &str, socket: &str) -> Target {
        Target {
            app: app.into(),
            socket: socket.into(),
        }
    }

    #[test]
    fn a_family_spans_masters_and_a_name_finds_its_master() {
        let s = survey();
        assert_eq!(
            pick(&Selection::Family("pay".into()), &s).unwrap(),
            [target("web", "/r/one.sock"), target("api", "/r/two.sock")]
        );
        assert_eq!(pick(&Selection::All, &s).unwrap().len(), 4);
        assert_eq!(
            pick(&Selection::Apps(vec!["api".into(), "web".into()]), &s).unwrap(),
            [target("api", "/r/two.sock"), target("web", "/r/one.sock")]
        );
    }

    #[test]
    fn an_ambiguous_or_unknown_name_is_refused() {
        let s = survey();
        let e = pick(&Selection::Apps(vec!["cron".into()]), &s).unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::EXIT_REFUSED);
        for part in ["one (/r/one.sock)", "two (/r/two.sock)", "--socket"] {
            assert!(e.to_string().contains(part), "{e}");
        }
        let e = pick(&Selection::Apps(vec!["nope".into()]), &s).unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::EXIT_REFUSED, "{e}");
        let e = pick(&Selection::Family("none".into()), &s).unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::EXIT_REFUSED, "{e}");

        // A master that did not answer might run it: do not guess.
        let mut s = survey();
        s.failed = Some(Failure::Refused("x".into()));
        let e = pick(&Selection::Apps(vec!["nope".into()]), &s).unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::EXIT_UNREACHABLE, "{e}");
        let e = pick(&Selection::All, &s).unwrap_err();
        assert_eq!(e.exit_code(), crate::failure::EXIT_UNREACHABLE, "{e}");
        // A name found is found.
        assert!(pick(&Selection::Apps(vec!["web".into()]), &s).is_ok());
    }
}
