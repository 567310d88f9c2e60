//! Atomics: named `i64`s, every one 0 until set.

use std::collections::BTreeMap;

use super::Limits;
use crate::{ErrorCode, Failure};

/// One app's atomics.
///
/// An atomic at 0 is indistinguishable from one never set, so it takes no
/// room: storing 0 (or adding back down to 0) frees its name, and only
/// atomics with another value count against [`Limits::max_atomics`].
///
/// Each operation is one step of the single-threaded state machine, so it
/// is atomic with respect to every other request to the same app.
#[derive(Debug, Clone)]
pub struct Atomics {
    limits: Limits,
    /// Atomics whose value is not 0.
    values: BTreeMap<String, i64>,
}

impl Atomics {
    /// No atomics set, bounded by `limits`.
    pub fn new(limits: Limits) -> Atomics {
        Atomics {
            limits,
            values: BTreeMap::new(),
        }
    }

    /// Adds `delta` to `name`; the new value.
    ///
    /// # Errors
    ///
    /// - [`ErrorCode::BadRequest`] if `name` is empty or longer than
    ///   [`Limits::max_name_len`].
    /// - [`ErrorCode::Overflow`] if the sum does not fit an `i64`; the value
    ///   is unchanged.
    /// - [`ErrorCode::LimitExceeded`] if `name` is at 0 and the sum is not,
    ///   while [`Limits::max_atomics`] atomics are in use.
    pub fn add(&mut self, name: &str, delta: i64) -> Result<i64, Failure> {
        self.limits.check_name("atomic name", name)?;
        let old = self.load(name);
        let new = old.checked_add(delta).ok_or_else(|| {
            let way = if delta < 0 { "below i64::MIN" } else { "above i64::MAX" };
            Failure::new(
                ErrorCode::Overflow,
                format!(
                    "atomic {name:?} is {old}: adding {delta} would go {way}; the value is unchanged"
                ),
            )
        })?;
        self.put(name, new)?;
        Ok(new)
    }

    /// The value of `name`: 0 if it was never set.
    ///
    /// A name that could never be stored (empty, or longer than
    /// [`Limits::max_name_len`]) was never set either, so it reads 0 like
    /// any other; only writes refuse it.
    pub fn load(&self, name: &str) -> i64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// Sets `name` to `value`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::BadRequest`] for a bad name, and
    /// [`ErrorCode::LimitExceeded`] as for [`add`](Atomics::add).
    pub fn store(&mut self, name: &str, value: i64) -> Result<(), Failure> {
        self.limits.check_name("atomic name", name)?;
        self.put(name, value)
    }

    /// Sets `name` to `value`; the old value.
    ///
    /// # Errors
    ///
    /// As for [`store`](Atomics::store).
    pub fn swap(&mut self, name: &str, value: i64) -> Result<i64, Failure> {
        self.limits.check_name("atomic name", name)?;
        let old = self.load(name);
        self.put(name, value)?;
        Ok(old)
    }

    /// Sets `name` to `new` if it is `current`; whether it did.
    ///
    /// # Errors
    ///
    /// As for [`store`](Atomics::store); a failed write leaves the value
    /// unchanged.
    pub fn cas(&mut self, name: &str, current: i64, new: i64) -> Result<bool, Failure> {
        self.limits.check_name("atomic name", name)?;
        if self.load(name) != current {
            return Ok(false);
        }
        self.put(name, new)?;
        Ok(true)
    }

    /// How many atomics are not 0.
    pub fn in_use(&self) -> usize {
        self.values.len()
    }

    /// Stores `value` under a checked `name`; 0 frees it.
    /// Every atomic that is not 0 (for the master's handover).
    pub(super) fn snapshot(&self) -> Vec<(String, i64)> {
        self.values.iter().map(|(k, &v)| (k.clone(), v)).collect()
    }

    /// Sets the atomics of an empty table to `values`.
    pub(super) fn restore(
        &mut self,
        values: Vec<(String, i64)>,
    ) -> Result<(), super::snapshot::RestoreError> {
        for (name, value) in values {
            if name.is_empty() {
                return Err(super::snapshot::RestoreError(
                    "an atomic with an empty name".into(),
                ));
            }
            if value != 0 {
                self.values.insert(name, value);
            }
        }
        Ok(())
    }

    fn put(&mut self, name: &str, value: i64) -> Result<(), Failure> {
        if value == 0 {
            self.values.remove(name);
            return Ok(());
        }
        if let Some(slot) = self.values.get_mut(name) {
            *slot = value;
            return Ok(());
        }
        if self.values.len() >= self.limits.max_atomics {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "too many atomics: {} of max_atomics {} in use; store 0 in atomics no \
                     longer needed to free them, or raise max_atomics",
                    self.values.len(),
                    self.limits.max_atomics
                ),
            ));
        }
        self.values.insert(name.to_owned(), value);
        Ok(())
    }
}
