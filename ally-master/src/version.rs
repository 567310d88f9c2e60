//! The master's version, and the version of the state it hands over in
//! an in-place upgrade.
//!
//! Both can be overridden when the master is built (never at run time):
//! `ALLY_VERSION_OVERRIDE` replaces the version string and
//! `ALLY_HANDOVER_VERSION_OVERRIDE` the handover version, so that tests
//! build two distinguishable masters, or one that refuses the other's
//! state. `ALLY_HANDOVER_RESTORE_FAULT` builds a master that passes the
//! probe but fails to restore, to exercise the way back.

/// What `ally-master --version` and `ally-ctl version` show.
pub const VERSION: &str = match option_env!("ALLY_VERSION_OVERRIDE") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The version of the handover format ([`crate::handover::snapshot`]) and
/// of the exec's command line ([`crate::handover::exec`]); see the
/// versioning rule there. 2: the original command line comes first; 3:
/// each socket names its place in systemd's fd store; 4: each app's
/// `family` follows the state (a version 3 state is still read:
/// [`FAMILYLESS_VERSION`](crate::handover::FAMILYLESS_VERSION)).
pub const HANDOVER_VERSION: u32 = match option_env!("ALLY_HANDOVER_VERSION_OVERRIDE") {
    Some(v) => parse_u32(v),
    None => 4,
};

/// Whether this build fails every restore on purpose (a test build).
pub const RESTORE_FAULT: bool = option_env!("ALLY_HANDOVER_RESTORE_FAULT").is_some();

/// `text` as a decimal `u32`, at compile time (a bad override fails the
/// build).
const fn parse_u32(text: &str) -> u32 {
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "ALLY_HANDOVER_VERSION_OVERRIDE is empty");
    let mut value: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(
            digit.is_ascii_digit(),
            "ALLY_HANDOVER_VERSION_OVERRIDE is not a number"
        );
        value = value * 10 + (digit - b'0') as u32;
        i += 1;
    }
    value
}

/// The line `--version` prints.
pub fn line() -> String {
    format!(
        "ally-master {VERSION} (protocol {}, handover {HANDOVER_VERSION})",
        ally_proto::PROTOCOL_VERSION
    )
}
