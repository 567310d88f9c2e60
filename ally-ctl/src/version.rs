//! `ally-ctl version`: the program's version and protocol, and the running
//! master's version beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use argh::{ArgsInfo, FromArgs};

use ally_proto::{ControlRequest, ControlResponse, PROTOCOL_VERSION};

use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;

/// How long `version` waits for a master to answer before it shows its own
/// version only.
const MASTER_WAIT: Duration = Duration::from_secs(5);

/// print the version of ally-ctl and of the protocol it speaks, and that
/// of the running master
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "version",
    example = "ally-ctl version",
    note = "exits 0 with ally-ctl's own version even when no master is reachable\n\
            (it says why on stderr)."
)]
pub struct VersionArgs {}

/// `ally-ctl <version> (protocol <n>)`.
pub fn line() -> String {
    format!(
        "ally-ctl {} (protocol {PROTOCOL_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Prints [`line`], then the running master's version, if one answers.
///
/// # Errors
///
/// Only if stdout cannot be written.
pub fn run(_args: &VersionArgs, socket: Option<&Path>) -> Result<(), Failure> {
    say(&line())?;
    match master(socket) {
        Ok((version, handover)) => say(&format!(
            "ally-master {version} (handover {handover}), running"
        )),
        Err(failure) => {
            eprintln!("ally-ctl: no running master's version: {failure}");
            Ok(())
        }
    }
}

/// The running master's version and handover version.
fn master(socket: Option<&Path>) -> Result<(String, u32), Failure> {
    let mut client = Client::connect(socket, Some(Instant::now() + MASTER_WAIT))?;
    client.send(&ControlRequest::Version)?;
    match client.recv()? {
        ControlResponse::MasterVersion { version, handover } => Ok((version, handover)),
        ControlResponse::Error(f) => Err(Failure::from_master("version", &f)),
        other => Err(crate::ask::unexpected(&other, "MasterVersion")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_protocol() {
        assert_eq!(
            super::line(),
            format!("ally-ctl {} (protocol 4)", env!("CARGO_PKG_VERSION"))
        );
    }
}
