//! `ally-ctl version`: the program's version, protocol and build, and the
//! running master's beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use argh::{ArgsInfo, FromArgs};

use ally_proto::{BuildInfo, ControlRequest, ControlResponse, PROTOCOL_VERSION};

use crate::cli::say;
use crate::client::Client;
use crate::failure::Failure;

/// How long `version` waits for a master to answer before it shows its own
/// version only.
const MASTER_WAIT: Duration = Duration::from_secs(5);

/// print the version and build of ally-ctl and of the protocol it speaks,
/// and those of the running master
#[derive(FromArgs, ArgsInfo, Debug, PartialEq)]
#[argh(
    subcommand,
    name = "version",
    example = "ally-ctl version",
    note = "exits 0 with ally-ctl's own version even when no master is reachable\n\
            (it says why on stderr)."
)]
pub struct VersionArgs {}

/// This build: version, git commit and build date, from build.rs.
pub fn build() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: env!("ALLY_BUILD_COMMIT").to_owned(),
        date: env!("ALLY_BUILD_DATE").to_owned(),
    }
}

/// `ally-ctl <version> (protocol <n>)`, then `commit ..., built ...`:
/// what `--version` prints too.
pub fn lines() -> String {
    format!(
        "ally-ctl {} (protocol {PROTOCOL_VERSION})\n{}",
        env!("CARGO_PKG_VERSION"),
        build()
    )
}

/// Prints [`lines`], then the running master's version and build, if one
/// answers.
///
/// # Errors
///
/// Only if stdout cannot be written.
pub fn run(_args: &VersionArgs, socket: Option<&Path>) -> Result<(), Failure> {
    say(&lines())?;
    match master(socket) {
        Ok((version, handover, build)) => {
            say(&format!(
                "ally-master {version} (handover {handover}), running"
            ))?;
            match build {
                Some(build) => say(&build.to_string()),
                None => Ok(()),
            }
        }
        Err(failure) => {
            eprintln!("ally-ctl: no running master's version: {failure}");
            Ok(())
        }
    }
}

/// The running master's version, handover version and build (`None` from
/// a master that does not say).
fn master(socket: Option<&Path>) -> Result<(String, u32, Option<BuildInfo>), Failure> {
    let mut client = Client::connect(socket, Some(Instant::now() + MASTER_WAIT))?;
    client.send(&ControlRequest::Version)?;
    let (version, handover) = match client.recv()? {
        ControlResponse::MasterVersion { version, handover } => (version, handover),
        ControlResponse::Error(f) => return Err(Failure::from_master("version", &f)),
        other => return Err(crate::ask::unexpected(&other, "MasterVersion")),
    };
    // A master that does not know the request closes the connection.
    let build = match client
        .send(&ControlRequest::Build)
        .and_then(|()| client.recv())
    {
        Ok(ControlResponse::Build(build)) => Some(build),
        _ => None,
    };
    Ok((version, handover, build))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_protocol_and_the_build() {
        let lines = super::lines();
        let (first, second) = lines.split_once('\n').unwrap();
        assert_eq!(
            first,
            format!("ally-ctl {} (protocol 4)", env!("CARGO_PKG_VERSION"))
        );
        assert!(second.starts_with("commit "), "{second}");
        assert!(second.contains(", built "), "{second}");
    }
}
