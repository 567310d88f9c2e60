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
/// [`FAMILYLESS_VERSION`](crate::handover::FAMILYLESS_VERSION)); 5: each
/// instance's start config follows that (a version 4 state is still read:
/// [`crate::handover::started`]).
pub const HANDOVER_VERSION: u32 = match option_env!("ALLY_HANDOVER_VERSION_OVERRIDE") {
    Some(v) => parse_u32(v),
    None => 5,
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

/// The git commit this binary was built from (short hash, `-dirty` if the
/// tree differed from it, `unknown` if not built from git), from build.rs.
pub const COMMIT: &str = env!("ALLY_BUILD_COMMIT");

/// When it was built, UTC (`SOURCE_DATE_EPOCH` if that was set), from
/// build.rs.
pub const BUILD_DATE: &str = env!("ALLY_BUILD_DATE");

/// This build, as `ally-ctl version` asks for it.
pub fn build() -> ally_proto::BuildInfo {
    ally_proto::BuildInfo {
        version: VERSION.to_owned(),
        commit: COMMIT.to_owned(),
        date: BUILD_DATE.to_owned(),
    }
}

/// What `--version` prints: the version, protocol and handover state
/// version, then the build (`commit ..., built ...`).
pub fn lines() -> String {
    format!(
        "ally-master {VERSION} (protocol {}, handover {HANDOVER_VERSION})\n{}",
        ally_proto::PROTOCOL_VERSION,
        build()
    )
}
