//! Where shared-state requests go: to the master when managed, to the
//! in-process store in simulate mode. Both answer with the same
//! [`InstanceResponse`]s, decided by the same code, so [`Cache`],
//! [`Atomic`] and [`Locker`] cannot tell the two apart.
//!
//! [`Cache`]: crate::Cache
//! [`Atomic`]: crate::Atomic
//! [`Locker`]: crate::Locker

use ally_proto::frame::MAX_FRAME_LEN;
use ally_proto::{InstanceRequest, InstanceResponse, LockMode};

use crate::client;
use crate::error::Error;
use crate::listen::unexpected;
use crate::local_state;
use crate::mode;

/// Longest name shown whole in an error message; longer ones are cut.
const SHOWN_NAME_LEN: usize = 64;

/// Room a request takes on the wire besides its names and value: the
/// variant, length prefixes, numbers.
const ENVELOPE: usize = 64;

/// Sends a state request that the master answers at once (anything but a
/// lock request that may wait) and returns the answer.
///
/// `what` describes the request for error messages, for example
/// `set key "k" in cache "c"`; it is only called when needed.
///
/// # Errors
///
/// [`Error::State`] when the request is refused (the master's or the local
/// store's [`InstanceResponse::Error`]); when managed, anything
/// [`client::request`] fails with.
pub(crate) fn call(
    req: InstanceRequest,
    what: &dyn Fn() -> String,
) -> Result<InstanceResponse, Error> {
    let response = match mode::managed()? {
        Some(m) => client::request(m, &req, &what())?.response,
        None => {
            check_size(&req, what)?;
            local_state::handle(&req)
        }
    };
    refused(response, what)
}

/// Takes lock `name` in `mode`, waiting at most `timeout_ms` (`None`: as
/// long as it takes; `Some(0)`: only if free now); whether it was taken.
///
/// # Errors
///
/// As [`call`].
pub(crate) fn lock(
    name: &str,
    mode: LockMode,
    timeout_ms: Option<u64>,
    what: &dyn Fn() -> String,
) -> Result<bool, Error> {
    let response = match mode::managed()? {
        Some(m) => client::lock(m, name, mode, timeout_ms, &what())?,
        None => {
            let req = InstanceRequest::Lock {
                name: name.to_owned(),
                mode,
                timeout_ms,
            };
            check_size(&req, what)?;
            local_state::handle(&req)
        }
    };
    match refused(response, what)? {
        InstanceResponse::Bool(taken) => Ok(taken),
        other => Err(unexpected(what(), &other)),
    }
}

/// Turns a refusal into [`Error::State`].
fn refused(
    response: InstanceResponse,
    what: &dyn Fn() -> String,
) -> Result<InstanceResponse, Error> {
    match response {
        InstanceResponse::Error(failure) => Err(Error::State {
            request: what(),
            failure,
        }),
        other => Ok(other),
    }
}

/// Refuses in simulate mode what would not fit in a frame to the master,
/// so that a service behaves the same with and without one.
fn check_size(req: &InstanceRequest, what: &dyn Fn() -> String) -> Result<(), Error> {
    if payload(req) + ENVELOPE <= MAX_FRAME_LEN {
        return Ok(());
    }
    client::encode(req, &what()).map(drop)
}

/// The bytes of a state request's names and value.
fn payload(req: &InstanceRequest) -> usize {
    use InstanceRequest as R;
    match req {
        R::CacheSet { ns, key, value, .. } => ns.len() + key.len() + value.len(),
        R::CacheGet { ns, key } | R::CacheDel { ns, key } | R::CacheExists { ns, key } => {
            ns.len() + key.len()
        }
        R::CacheKeys { ns }
        | R::CacheCount { ns }
        | R::CacheItems { ns }
        | R::CacheFlush { ns } => ns.len(),
        R::AtomicAdd { name, .. }
        | R::AtomicLoad { name }
        | R::AtomicStore { name, .. }
        | R::AtomicSwap { name, .. }
        | R::AtomicCas { name, .. }
        | R::Lock { name, .. }
        | R::Unlock { name, .. }
        | R::LockQueue { name } => name.len(),
        // Not state requests; never sent through here. Measure exactly.
        R::Listen(_)
        | R::Unlisten(_)
        | R::Ready
        | R::Report(_)
        | R::Reload
        | R::Info
        | R::Connect => MAX_FRAME_LEN,
    }
}

/// `name` quoted for an error message, cut after [`SHOWN_NAME_LEN`] bytes
/// (a hostile or mistaken name may be huge).
pub(crate) fn quote(name: &str) -> String {
    if name.len() <= SHOWN_NAME_LEN {
        return format!("{name:?}");
    }
    let mut end = SHOWN_NAME_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &name[..end], name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_in_messages() {
        assert_eq!(quote("k"), "\"k\"");
        let long = "é".repeat(100);
        let shown = quote(&long);
        assert!(shown.ends_with("… (200 bytes)"), "{shown}");
        assert!(shown.len() < 100, "{shown}");
    }
}
