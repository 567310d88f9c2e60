//! Atomics: named `i64` counters kept by the master, so that they survive
//! reloads.

use std::io;

use ally_proto::{InstanceRequest, InstanceResponse};

use crate::listen::unexpected;
use crate::state::{self, quote};

/// A handle on atomic `name` of this app. Cheap: nothing is sent until it
/// is used.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let hits = ally::atomic("doc-atomic-hits");
/// assert_eq!(hits.add(1)?, 1);
/// assert_eq!(hits.add(41)?, 42);
/// assert!(hits.compare_and_swap(42, 0)?);
/// assert_eq!(hits.load()?, 0);
/// # Ok(()) }
/// ```
pub fn atomic(name: &str) -> Atomic {
    Atomic {
        name: name.to_owned(),
    }
}

/// A named `i64`; see [`atomic`].
///
/// Every atomic starts at 0, and one at 0 takes no room. Each operation is
/// one atomic step with respect to every other operation of every instance
/// of the app (under a master) or every thread (in simulate mode): `add`
/// from many threads and instances at once loses no update.
///
/// Values never wrap: an operation that would overflow fails with
/// [`InvalidInput`](io::ErrorKind::InvalidInput) and leaves the value as it
/// was. Names are 1 to 1024 bytes. The app may have at most `max_atomics`
/// atomics other than 0 (10 000 by default and in simulate mode); past
/// that a write fails with [`QuotaExceeded`](io::ErrorKind::QuotaExceeded).
///
/// # Errors
///
/// Every method returns a refusal as an [`io::Error`] wrapping
/// [`Error::State`](crate::Error::State); when managed, also errors
/// talking to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atomic {
    name: String,
}

impl Atomic {
    /// The atomic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds `delta` (which may be negative); the new value.
    pub fn add(&self, delta: i64) -> io::Result<i64> {
        let req = InstanceRequest::AtomicAdd {
            name: self.name.clone(),
            delta,
        };
        let what = || format!("add {delta} to atomic {}", quote(&self.name));
        self.int(req, &what)
    }

    /// The value.
    pub fn load(&self) -> io::Result<i64> {
        let req = InstanceRequest::AtomicLoad {
            name: self.name.clone(),
        };
        let what = || format!("load atomic {}", quote(&self.name));
        self.int(req, &what)
    }

    /// Sets the value.
    pub fn store(&self, value: i64) -> io::Result<()> {
        let req = InstanceRequest::AtomicStore {
            name: self.name.clone(),
            value,
        };
        let what = || format!("store {value} in atomic {}", quote(&self.name));
        match state::call(req, &what)? {
            InstanceResponse::Done => Ok(()),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// Sets the value; the value it replaced.
    pub fn swap(&self, value: i64) -> io::Result<i64> {
        let req = InstanceRequest::AtomicSwap {
            name: self.name.clone(),
            value,
        };
        let what = || format!("swap {value} into atomic {}", quote(&self.name));
        self.int(req, &what)
    }

    /// Sets the value to `new` if it is `current`; whether it did.
    pub fn compare_and_swap(&self, current: i64, new: i64) -> io::Result<bool> {
        let req = InstanceRequest::AtomicCas {
            name: self.name.clone(),
            current,
            new,
        };
        let what = || {
            format!(
                "compare-and-swap atomic {} from {current} to {new}",
                quote(&self.name)
            )
        };
        match state::call(req, &what)? {
            InstanceResponse::Bool(swapped) => Ok(swapped),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    fn int(&self, req: InstanceRequest, what: &dyn Fn() -> String) -> io::Result<i64> {
        match state::call(req, what)? {
            InstanceResponse::Int(v) => Ok(v),
            other => Err(unexpected(what(), &other).into()),
        }
    }
}
