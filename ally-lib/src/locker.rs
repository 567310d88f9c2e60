//! Named read/write locks kept by the master, shared by every instance of
//! the app, and released when a holder dies.

use std::io::{self, Write};
use std::time::Duration;

use ally_proto::{InstanceRequest, InstanceResponse, LockMode, LockState};

use crate::client::ceil_millis;
use crate::listen::unexpected;
use crate::state::{self, quote};

/// A handle on lock `name` of this app. Cheap: nothing is sent until it is
/// used.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let migration = ally::locker("doc-locker-migration");
/// {
///     let _guard = migration.lock()?; // exclusive, until dropped
///     // ... only one thread of one instance runs this at a time ...
/// }
/// let readers = (migration.rlock()?, migration.rlock()?); // shared holds add up
/// assert_eq!(migration.state()?.shared, 2);
/// drop(readers);
/// assert!(migration.try_lock(None)?.is_some()); // free now: taken, and released at once
/// # Ok(()) }
/// ```
pub fn locker(name: &str) -> Locker {
    Locker {
        name: name.to_owned(),
    }
}

/// A named read/write lock; see [`locker`].
///
/// A lock is held either exclusively ([`lock`](Self::lock)) by one holder,
/// or shared ([`rlock`](Self::rlock)) by any number of holds.
///
/// # Who holds a lock
///
/// Holds belong to the *process* — under a master, to the instance — not
/// to a thread or a guard. So any thread may release a hold, and two
/// threads of one process wait for each other exactly as two instances do.
/// Locks are not reentrant: asking for a lock one's own process already
/// holds in a conflicting way waits behind that hold, so a thread that
/// takes the same lock twice deadlocks unless the second try has a
/// timeout. Shared holds are counted: each must be released.
///
/// When an instance exits or is killed, the master releases every hold it
/// had and withdraws its waits: a crash never deadlocks its successor.
/// Holds belong to the instance, not to any of its connections to the
/// master, so a request that times out (the master stopped for longer than
/// the app's `request_timeout`) loses nothing a guard holds. A lock request
/// itself is awaited for as long as the master takes to answer it (it ends
/// the wait at the request's timeout), so a wait given up here is never
/// granted there with nobody to release it.
///
/// If a hold is lost all the same — the master died, or something released
/// it behind the guard's back with [`Locker::unlock`] — the guard's
/// [`unlock`](LockGuard::unlock) returns the error, and a guard dropped
/// without `unlock` writes one line saying so to stderr.
///
/// # Fairness
///
/// Each lock has one first-come, first-served queue. A request is granted
/// at once only if no one is queued, so a waiting writer holds back the
/// readers that come after it: readers cannot starve a writer, and
/// consecutive readers at the head of the queue are let in together.
///
/// # Limits
///
/// Names are 1 to 1024 bytes. At most `max_locks` lock names (10 000 by
/// default and in simulate mode) may be in use — held or waited for — at
/// once; past that a new lock fails with
/// [`QuotaExceeded`](io::ErrorKind::QuotaExceeded). One instance may have
/// at most 256 lock requests waiting at once (the library's pool lets at
/// most 12 threads wait); a further wait fails the same way.
///
/// # Errors
///
/// Every method returns a refusal as an [`io::Error`] wrapping
/// [`Error::State`](crate::Error::State); when managed, also errors
/// talking to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locker {
    name: String,
}

impl Locker {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the lock exclusively, waiting as long as it takes.
    pub fn lock(&self) -> io::Result<LockGuard> {
        self.take(LockMode::Exclusive, None)?;
        Ok(LockGuard(self.guard(LockMode::Exclusive)))
    }

    /// Takes a shared hold, waiting as long as it takes.
    pub fn rlock(&self) -> io::Result<ReadGuard> {
        self.take(LockMode::Shared, None)?;
        Ok(ReadGuard(self.guard(LockMode::Shared)))
    }

    /// Takes the lock exclusively if that can be done within `timeout`
    /// (`None`: only if it is free now, without waiting at all); `None` if
    /// not. The wait is counted in whole milliseconds, rounded up.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// let l = ally::locker("doc-locker-try");
    /// let held = l.lock()?;
    /// // Another thread gives up after 20 ms.
    /// let other = std::thread::spawn(|| {
    ///     ally::locker("doc-locker-try").try_lock(Some(Duration::from_millis(20))).map(|g| g.is_some())
    /// });
    /// assert!(!other.join().unwrap()?);
    /// held.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn try_lock(&self, timeout: Option<Duration>) -> io::Result<Option<LockGuard>> {
        let taken = self.take(LockMode::Exclusive, Some(timeout.map_or(0, ceil_millis)))?;
        Ok(taken.then(|| LockGuard(self.guard(LockMode::Exclusive))))
    }

    /// Takes a shared hold if that can be done within `timeout`, as
    /// [`try_lock`](Self::try_lock) does.
    pub fn try_rlock(&self, timeout: Option<Duration>) -> io::Result<Option<ReadGuard>> {
        let taken = self.take(LockMode::Shared, Some(timeout.map_or(0, ceil_millis)))?;
        Ok(taken.then(|| ReadGuard(self.guard(LockMode::Shared))))
    }

    /// Releases an exclusive hold taken earlier without a guard in charge
    /// of it (for example after [`std::mem::forget`] of a [`LockGuard`]).
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if this process does
    /// not hold the lock exclusively; nothing changes.
    pub fn unlock(&self) -> io::Result<()> {
        self.release(LockMode::Exclusive)
    }

    /// Releases one shared hold taken earlier, as [`unlock`](Self::unlock)
    /// does for an exclusive one.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) if this process holds
    /// no shared hold of the lock.
    pub fn runlock(&self) -> io::Result<()> {
        self.release(LockMode::Shared)
    }

    /// Who holds the lock and how many wait, right now.
    pub fn state(&self) -> io::Result<LockState> {
        let req = InstanceRequest::LockQueue {
            name: self.name.clone(),
        };
        let what = || format!("read the state of lock {}", quote(&self.name));
        match state::call(req, &what)? {
            InstanceResponse::LockState(s) => Ok(s),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// Asks for the lock; whether it was taken. `timeout_ms` as on the wire.
    fn take(&self, mode: LockMode, timeout_ms: Option<u64>) -> io::Result<bool> {
        let what = || format!("{} {}", verb(mode, "lock"), quote(&self.name));
        let taken = state::lock(&self.name, mode, timeout_ms, &what)?;
        if !taken && timeout_ms.is_none() {
            // Only a wait with a timeout may end without the lock.
            let answer = InstanceResponse::Bool(false);
            return Err(unexpected(what(), &answer).into());
        }
        Ok(taken)
    }

    fn release(&self, mode: LockMode) -> io::Result<()> {
        let req = InstanceRequest::Unlock {
            name: self.name.clone(),
            mode,
        };
        let what = || format!("{} {}", verb(mode, "unlock"), quote(&self.name));
        match state::call(req, &what)? {
            InstanceResponse::Done => Ok(()),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    fn guard(&self, mode: LockMode) -> Guard {
        Guard {
            locker: self.clone(),
            mode,
            held: true,
        }
    }
}

/// "lock" / "unlock" with the mode: `lock` or `lock (shared)` followed by
/// the lock's name in messages.
fn verb(mode: LockMode, verb: &str) -> String {
    match mode {
        LockMode::Exclusive => verb.to_owned(),
        LockMode::Shared => format!("{verb} (shared)"),
    }
}

/// An exclusive hold of a lock, released when dropped.
///
/// Dropping reports an error on stderr (the master gone, for example; it
/// then holds nothing any more). Call [`unlock`](Self::unlock) to handle it.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard(Guard);

impl LockGuard {
    /// Releases the hold now.
    ///
    /// # Errors
    ///
    /// As [`Locker::unlock`].
    pub fn unlock(self) -> io::Result<()> {
        self.0.release()
    }

    /// The lock this guard holds.
    pub fn locker(&self) -> &Locker {
        &self.0.locker
    }
}

/// A shared hold of a lock, released when dropped. As for [`LockGuard`],
/// dropping reports errors on stderr and [`unlock`](Self::unlock) returns
/// them.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ReadGuard(Guard);

impl ReadGuard {
    /// Releases the hold now.
    ///
    /// # Errors
    ///
    /// As [`Locker::runlock`].
    pub fn unlock(self) -> io::Result<()> {
        self.0.release()
    }

    /// The lock this guard holds.
    pub fn locker(&self) -> &Locker {
        &self.0.locker
    }
}

#[derive(Debug)]
struct Guard {
    locker: Locker,
    mode: LockMode,
    /// Whether the hold is still this guard's to release.
    held: bool,
}

impl Guard {
    fn release(mut self) -> io::Result<()> {
        self.held = false;
        self.locker.release(self.mode)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.held
            && let Err(e) = self.locker.release(self.mode)
        {
            // The only way left to say the hold was lost; a failing
            // stderr must not turn the drop into a panic.
            let _ = writeln!(
                io::stderr(),
                "ally: {} {} when its guard was dropped failed: {e}",
                verb(self.mode, "unlock"),
                quote(&self.locker.name)
            );
        }
    }
}
