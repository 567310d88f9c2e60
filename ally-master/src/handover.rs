//! In-place upgrade: the master hands its whole state and every descriptor
//! it holds to a new image of itself, in the same process.
//!
//! The old image writes a [`snapshot::MasterSnap`] into a sealed memfd
//! ([`write_memfd`]), lists the descriptors it hands over in a table
//! ([`fds::Export`]) whose numbers go on the command line, clears
//! `FD_CLOEXEC` on exactly those, and execs the new binary
//! ([`exec`]). The new image reads the state back ([`read_memfd`],
//! refusing any other [`HANDOVER_VERSION`]), takes every descriptor by its
//! index ([`fds::Import`]), and serves on; if it cannot, it execs the old
//! binary again with the same state and why ([`resume`]).
//!
//! The format: 8 bytes of [`MAGIC`], the handover version as a `u32`
//! little-endian, then the postcard encoding of [`snapshot::MasterSnap`],
//! then (from version 4) that of [`snapshot::Families`], then (from
//! version 5) that of each instance's start config ([`started`]); at most
//! [`MAX_HANDOVER_BYTES`] in all. States of [`FAMILYLESS_VERSION`] (the
//! build before families) and of [`started::STARTLESS_VERSION`] (the build
//! before start configs) are read too, without what they lack, so that an
//! upgrade from those builds keeps working.

pub mod exec;
pub mod fds;
pub mod probe;
pub mod resume;
pub mod snapshot;
pub mod started;
pub mod tail;
pub mod trust;

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{MemfdFlags, SealFlags};

use crate::limits::MAX_HANDOVER_BYTES;
use crate::version::HANDOVER_VERSION;
use snapshot::{Families, MasterSnap};

/// The handover version of the build before `family` existed: its state
/// is [`snapshot::MasterSnap`] alone, and this build still reads it.
pub const FAMILYLESS_VERSION: u32 = 3;

/// The first bytes of every handover state.
pub const MAGIC: [u8; 8] = *b"allyhov\0";

/// Why a handover could not be written, read or restored.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoverError {
    /// Not a handover state at all.
    Magic,
    /// A state of another version than this build's.
    Version {
        /// The state's.
        found: u32,
    },
    /// The state does not decode.
    Decode(String),
    /// Larger than [`MAX_HANDOVER_BYTES`].
    TooLarge(usize),
    /// More descriptors than [`MAX_HANDOVER_FDS`](crate::limits::MAX_HANDOVER_FDS).
    TooMany(usize),
    /// A descriptor index that is not in the table, or named twice.
    BadFd(u32),
    /// A system call failed.
    Io(String, std::io::Error),
    /// The state contradicts itself or this build's rules.
    Restore(String),
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoverError::Magic => write!(f, "the handover state does not start with its magic"),
            HandoverError::Version { found } => write!(
                f,
                "handover state version {found} is not this master's ({HANDOVER_VERSION}, \
                 which reads {FAMILYLESS_VERSION} and {} too); upgrade to a build that reads \
                 version {found}",
                started::STARTLESS_VERSION
            ),
            HandoverError::Decode(e) => write!(f, "the handover state does not decode: {e}"),
            HandoverError::TooLarge(n) => write!(
                f,
                "the handover state takes {n} bytes, more than the {MAX_HANDOVER_BYTES} allowed; \
                 flush some shared state (cache entries) first"
            ),
            HandoverError::TooMany(n) => write!(
                f,
                "{n} descriptors to hand over, more than the {} allowed; \
                 close some connections first",
                crate::limits::MAX_HANDOVER_FDS
            ),
            HandoverError::BadFd(i) => write!(f, "descriptor {i} of the handover is missing"),
            HandoverError::Io(what, e) => write!(f, "{what}: {e}"),
            HandoverError::Restore(why) => write!(f, "cannot restore the state: {why}"),
        }
    }
}

impl std::error::Error for HandoverError {}

fn io(what: &str) -> impl FnOnce(rustix::io::Errno) -> HandoverError + '_ {
    move |e| HandoverError::Io(what.to_owned(), e.into())
}

/// The bytes of `snap`: magic, version, body.
///
/// # Errors
///
/// If it cannot be encoded or is larger than [`MAX_HANDOVER_BYTES`].
pub fn encode(snap: &MasterSnap) -> Result<Vec<u8>, HandoverError> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&HANDOVER_VERSION.to_le_bytes());
    let bytes =
        postcard::to_extend(snap, bytes).map_err(|e| HandoverError::Decode(e.to_string()))?;
    let bytes = postcard::to_extend(&Families::of(snap), bytes)
        .map_err(|e| HandoverError::Decode(e.to_string()))?;
    let bytes = started::encode(snap, bytes)?;
    if bytes.len() > MAX_HANDOVER_BYTES {
        return Err(HandoverError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// The state in `bytes`, if it is of this build's version (or of
/// [`FAMILYLESS_VERSION`] or [`started::STARTLESS_VERSION`]) and decodes
/// whole.
///
/// # Errors
///
/// [`HandoverError::Magic`], [`HandoverError::Version`] (checked before
/// anything else is read) or [`HandoverError::Decode`], also for bytes
/// left over.
pub fn decode(bytes: &[u8]) -> Result<MasterSnap, HandoverError> {
    let (magic, rest) = bytes
        .split_at_checked(MAGIC.len())
        .ok_or(HandoverError::Magic)?;
    if magic != MAGIC {
        return Err(HandoverError::Magic);
    }
    let (version, body) = rest.split_at_checked(4).ok_or(HandoverError::Magic)?;
    let found = u32::from_le_bytes(version.try_into().unwrap_or_default());
    if ![
        HANDOVER_VERSION,
        FAMILYLESS_VERSION,
        started::STARTLESS_VERSION,
    ]
    .contains(&found)
    {
        return Err(HandoverError::Version { found });
    }
    let bad = |e: postcard::Error| HandoverError::Decode(e.to_string());
    let (mut snap, mut left) = postcard::take_from_bytes::<MasterSnap>(body).map_err(bad)?;
    if found != FAMILYLESS_VERSION {
        let (families, rest) = postcard::take_from_bytes::<Families>(left).map_err(bad)?;
        families
            .apply(&mut snap)
            .map_err(|why| HandoverError::Decode(why.to_owned()))?;
        left = rest;
    }
    if found == HANDOVER_VERSION {
        left = started::decode(&mut snap, left)?;
    }
    if !left.is_empty() {
        return Err(HandoverError::Decode(format!(
            "{} bytes left over after the state",
            left.len()
        )));
    }
    if snap.fd_count as usize > crate::limits::MAX_HANDOVER_FDS {
        return Err(HandoverError::TooMany(snap.fd_count as usize));
    }
    Ok(snap)
}

/// The seals a handover memfd carries: nobody can change it any more.
fn seals() -> SealFlags {
    SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE
}

/// A sealed memfd (close-on-exec) holding `bytes`.
///
/// # Errors
///
/// If it cannot be made, written or sealed.
pub fn write_memfd(bytes: &[u8]) -> Result<OwnedFd, HandoverError> {
    let fd = rustix::fs::memfd_create(
        "ally-handover",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(io("memfd_create"))?;
    let mut at = 0;
    while at < bytes.len() {
        match rustix::io::write(&fd, &bytes[at..]) {
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io("writing the handover memfd")(e)),
        }
    }
    rustix::fs::fcntl_add_seals(&fd, seals()).map_err(io("sealing the handover memfd"))?;
    Ok(fd)
}

/// The bytes of a sealed handover memfd.
///
/// # Errors
///
/// If it is not sealed, larger than [`MAX_HANDOVER_BYTES`] or unreadable.
pub fn read_memfd(fd: impl AsFd) -> Result<Vec<u8>, HandoverError> {
    let fd = fd.as_fd();
    let sealed = rustix::fs::fcntl_get_seals(fd).map_err(io("reading the memfd's seals"))?;
    if !sealed.contains(seals()) {
        return Err(HandoverError::Restore(
            "the handover memfd is not sealed".into(),
        ));
    }
    let size = rustix::fs::fstat(fd)
        .map_err(io("fstat of the memfd"))?
        .st_size;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > MAX_HANDOVER_BYTES {
        return Err(HandoverError::TooLarge(size));
    }
    let mut bytes = vec![0; size];
    let mut at = 0;
    while at < size {
        match rustix::io::pread(fd, &mut bytes[at..], at as u64) {
            Ok(0) => return Err(HandoverError::Decode("the memfd ended early".into())),
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io("reading the handover memfd")(e)),
        }
    }
    Ok(bytes)
}

/// Milliseconds from `now` until `deadline` (0 if it has passed).
pub fn left_ms(deadline: Instant, now: Instant) -> u64 {
    u64::try_from(deadline.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds from `then` until `now` (0 if it is ahead).
pub fn ago_ms(then: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(then).as_millis()).unwrap_or(u64::MAX)
}

/// `now` plus `ms` milliseconds (a deadline carried over).
pub fn after(now: Instant, ms: u64) -> Instant {
    now.checked_add(Duration::from_millis(ms)).unwrap_or(now)
}

/// `now` less `ms` milliseconds (a past time carried over; `now` if the
/// clock does not reach back that far).
pub fn before(now: Instant, ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::snapshot::*;
    use super::*;

    fn snap() -> MasterSnap {
        MasterSnap {
            from_version: "1.2.3".into(),
            fd_count: 1,
            config_path: "/etc/ally/a.toml".into(),
            exe_path: "/usr/bin/ally-master".into(),
            log_dir: "/var/log/ally".into(),
            socket: "/run/ally/a.sock".into(),
            fd_limit: Some((Some(1024), None)),
            frame_timeout_ms: 10_000,
            control_group: Some(50),
            announced: true,
            ready_fd: None,
            control: 0,
            apps: Vec::new(),
            next_app: 3,
            listeners: Vec::new(),
            conns: vec![(
                7,
                ConnSnap {
                    fd: 0,
                    cred: CredSnap {
                        pid: Some(42),
                        uid: 0,
                        gid: 0,
                    },
                    peer: PeerSnap::Control,
                    input: vec![5, 0, 0],
                    output: vec![(vec![1, 2, 3], Vec::new())],
                    backlog: false,
                    hung_up: false,
                    accepted: true,
                    frame_ago_ms: Some(12),
                },
            )],
            next_conn: 8,
            upgrade_waiter: Some(7),
        }
    }

    #[test]
    fn a_state_round_trips_through_a_sealed_memfd() {
        let bytes = encode(&snap()).unwrap();
        assert_eq!(&bytes[..8], &MAGIC);
        let fd = write_memfd(&bytes).unwrap();
        // Sealed: it can be neither written nor grown any more.
        assert!(rustix::io::write(&fd, b"x").is_err());
        assert_eq!(decode(&read_memfd(&fd).unwrap()).unwrap(), snap());
    }

    #[test]
    fn families_travel_and_a_familyless_state_still_decodes() {
        let mut with = snap();
        let app = |family: Option<&str>| AppSnap {
            config: AppConfigSnap {
                name: "web".into(),
                family: family.map(str::to_owned),
                command: vec!["./server".into()],
                cwd: "/srv".into(),
                env: Default::default(),
                ready_timeout_ms: 1,
                stop_timeout_ms: 2,
                request_timeout_ms: 3,
                stop_signal: 15,
                max_cache_entries: 4,
                max_cache_bytes: 5,
                max_name_len: 6,
                max_ttl_ms: 7,
                max_atomics: 8,
                max_locks: 9,
                autostart: true,
                restart: RestartSnap {
                    enabled: true,
                    min_delay_ms: 1,
                    max_delay_ms: 2,
                    factor: 2,
                    stable_after_ms: 3,
                    max_failures: 4,
                },
                max_draining: 1,
                inherit_env: false,
                user: None,
                group: None,
                listen: Vec::new(),
                ready: ReadySnap::Lib,
                privileged_ports: Vec::new(),
                log: LogTargetSnap::Default,
            },
            instances: Vec::new(),
            store: Default::default(),
            waits: Vec::new(),
            log: LogSnap {
                file: None,
                recent: Vec::new(),
                dropped: 0,
            },
            followers: Vec::new(),
            unsent: Vec::new(),
            sockets: Vec::new(),
            machine: MachineSnap {
                instances: Vec::new(),
                next_id: 1,
                life: LifeSnap::Failed,
                crashes: 0,
                restarts: 0,
                last_error: None,
            },
        };
        with.apps = vec![(1, app(Some("payments"))), (2, app(None))];
        assert_eq!(decode(&encode(&with).unwrap()).unwrap(), with);

        // What the build before families wrote: the same body, version 3,
        // no families after it.
        let mut old = FAMILYLESS_VERSION.to_le_bytes().to_vec();
        old = [MAGIC.to_vec(), old, postcard::to_stdvec(&with).unwrap()].concat();
        let mut without = with.clone();
        for (_, a) in &mut without.apps {
            a.config.family = None;
        }
        assert_eq!(decode(&old).unwrap(), without);

        // A version 4 state whose families do not match its apps.
        let mut short = encode(&snap()).unwrap();
        short.truncate(short.len() - 1);
        short.extend(postcard::to_stdvec(&Families(vec![None])).unwrap());
        assert!(matches!(decode(&short), Err(HandoverError::Decode(_))));
    }

    #[test]
    fn another_version_is_refused_before_its_body_is_read() {
        let mut bytes = encode(&snap()).unwrap();
        bytes[8..12].copy_from_slice(&(HANDOVER_VERSION + 1).to_le_bytes());
        let e = decode(&bytes).unwrap_err();
        assert!(matches!(e, HandoverError::Version { found } if found == HANDOVER_VERSION + 1));
        assert!(e.to_string().contains("is not this master's"), "{e}");
        // Even with a body this build could not read at all.
        bytes.truncate(12);
        bytes.push(0xff);
        assert!(matches!(decode(&bytes), Err(HandoverError::Version { .. })));
    }

    #[test]
    fn a_bad_magic_a_cut_state_or_bytes_left_over_are_refused() {
        let bytes = encode(&snap()).unwrap();
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert!(matches!(decode(&magic), Err(HandoverError::Magic)));
        assert!(matches!(decode(&bytes[..5]), Err(HandoverError::Magic)));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(HandoverError::Decode(_))
        ));
        let mut more = bytes.clone();
        more.push(0);
        assert!(matches!(decode(&more), Err(HandoverError::Decode(_))));
        // Any prefix decodes to an error, never a panic.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn a_state_of_the_version_before_is_read_without_start_configs() {
        // The same body and families, nothing after them.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&started::STARTLESS_VERSION.to_le_bytes());
        let bytes = postcard::to_extend(&snap(), bytes).unwrap();
        let bytes = postcard::to_extend(&Families::of(&snap()), bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), snap());
        // This version's needs what follows the body.
        let mut cut = bytes.clone();
        cut[8..12].copy_from_slice(&HANDOVER_VERSION.to_le_bytes());
        assert!(matches!(decode(&cut), Err(HandoverError::Decode(_))));
    }

    #[test]
    fn an_unsealed_memfd_is_refused() {
        let fd =
            rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::io::write(&fd, &encode(&snap()).unwrap()).unwrap();
        assert!(read_memfd(&fd).is_err());
    }
}
