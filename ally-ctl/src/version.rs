//! `ally-ctl version`: the program's version and protocol.

use argh::FromArgs;

use ally_proto::PROTOCOL_VERSION;

use crate::cli::say;
use crate::failure::Failure;

/// print the version of ally-ctl and of the protocol it speaks
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand, name = "version", example = "ally-ctl version")]
pub struct VersionArgs {}

/// `ally-ctl <version> (protocol <n>)`.
pub fn line() -> String {
    format!(
        "ally-ctl {} (protocol {PROTOCOL_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Prints [`line`]; needs no master.
///
/// # Errors
///
/// Only if stdout cannot be written.
pub fn run(_args: &VersionArgs) -> Result<(), Failure> {
    say(&line())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_protocol() {
        assert_eq!(
            super::line(),
            format!("ally-ctl {} (protocol 3)", env!("CARGO_PKG_VERSION"))
        );
    }
}
