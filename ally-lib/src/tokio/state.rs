//! The shared state with `async` methods: each call runs the blocking one
//! on tokio's blocking pool (see [the module docs](super#shared-state)).

use std::io;
use std::time::Duration;

use crate::{Atomic, Cache, LockGuard, LockState, Locker, ReadGuard};

/// Runs `call` on the blocking pool.
async fn blocking<T, F>(call: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match ::tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) => Err(io::Error::other(format!(
            "ally: a shared-state call on the blocking pool did not finish: {e}"
        ))),
    }
}

/// Cache namespace `ns` with `async` methods: [`crate::cache`] otherwise.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let sessions = ally::tokio::cache("doc-async-cache");
/// sessions.set("alice", b"token-1").await?;
/// assert_eq!(sessions.get("alice").await?.as_deref(), Some(&b"token-1"[..]));
/// # Ok(()) }
/// ```
pub fn cache(ns: &str) -> AsyncCache {
    AsyncCache(crate::cache(ns))
}

/// Atomic counter `name` with `async` methods: [`crate::atomic`] otherwise.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let hits = ally::tokio::atomic("doc-async-hits");
/// hits.store(0).await?;
/// assert_eq!(hits.add(2).await?, 2);
/// # Ok(()) }
/// ```
pub fn atomic(name: &str) -> AsyncAtomic {
    AsyncAtomic(crate::atomic(name))
}

/// Lock `name` with `async` methods: [`crate::locker`] otherwise.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let l = ally::tokio::locker("doc-async-lock");
/// let held = l.lock().await?;
/// assert!(l.try_lock(None).await?.is_none());
/// ally::tokio::AsyncLocker::unlock_guard(held).await?;
/// # Ok(()) }
/// ```
pub fn locker(name: &str) -> AsyncLocker {
    AsyncLocker(crate::locker(name))
}

/// A [`Cache`] whose calls are `async`; see [`cache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncCache(Cache);

impl AsyncCache {
    /// The blocking handle.
    pub fn blocking(&self) -> &Cache {
        &self.0
    }

    /// [`Cache::set`].
    pub async fn set(&self, key: &str, value: impl Into<Vec<u8>>) -> io::Result<()> {
        let (c, key) = (self.0.clone(), key.to_owned());
        let value = value.into();
        blocking(move || c.set(&key, value)).await
    }

    /// [`Cache::set_with_ttl`].
    pub async fn set_with_ttl(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        ttl: Duration,
    ) -> io::Result<()> {
        let (c, key) = (self.0.clone(), key.to_owned());
        let value = value.into();
        blocking(move || c.set_with_ttl(&key, value, ttl)).await
    }

    /// [`Cache::get`].
    pub async fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let (c, key) = (self.0.clone(), key.to_owned());
        blocking(move || c.get(&key)).await
    }

    /// [`Cache::del`].
    pub async fn del(&self, key: &str) -> io::Result<bool> {
        let (c, key) = (self.0.clone(), key.to_owned());
        blocking(move || c.del(&key)).await
    }

    /// [`Cache::exists`].
    pub async fn exists(&self, key: &str) -> io::Result<bool> {
        let (c, key) = (self.0.clone(), key.to_owned());
        blocking(move || c.exists(&key)).await
    }

    /// [`Cache::keys`].
    pub async fn keys(&self) -> io::Result<Vec<String>> {
        let c = self.0.clone();
        blocking(move || c.keys()).await
    }

    /// [`Cache::count`].
    pub async fn count(&self) -> io::Result<u64> {
        let c = self.0.clone();
        blocking(move || c.count()).await
    }

    /// [`Cache::items`].
    pub async fn items(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let c = self.0.clone();
        blocking(move || c.items()).await
    }

    /// [`Cache::flush`].
    pub async fn flush(&self) -> io::Result<u64> {
        let c = self.0.clone();
        blocking(move || c.flush()).await
    }
}

/// An [`Atomic`] whose calls are `async`; see [`atomic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncAtomic(Atomic);

impl AsyncAtomic {
    /// The blocking handle.
    pub fn blocking(&self) -> &Atomic {
        &self.0
    }

    /// [`Atomic::add`].
    pub async fn add(&self, delta: i64) -> io::Result<i64> {
        let a = self.0.clone();
        blocking(move || a.add(delta)).await
    }

    /// [`Atomic::load`].
    pub async fn load(&self) -> io::Result<i64> {
        let a = self.0.clone();
        blocking(move || a.load()).await
    }

    /// [`Atomic::store`].
    pub async fn store(&self, value: i64) -> io::Result<()> {
        let a = self.0.clone();
        blocking(move || a.store(value)).await
    }

    /// [`Atomic::swap`].
    pub async fn swap(&self, value: i64) -> io::Result<i64> {
        let a = self.0.clone();
        blocking(move || a.swap(value)).await
    }

    /// [`Atomic::compare_and_swap`].
    pub async fn compare_and_swap(&self, current: i64, new: i64) -> io::Result<bool> {
        let a = self.0.clone();
        blocking(move || a.compare_and_swap(current, new)).await
    }
}

/// A [`Locker`] whose calls are `async`; see [`locker`].
///
/// The guards are the blocking ones: dropping one releases the hold with a
/// short blocking call to the master on the dropping thread. In async code
/// prefer [`unlock_guard`](Self::unlock_guard) /
/// [`unlock_read_guard`](Self::unlock_read_guard), which also return the
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncLocker(Locker);

impl AsyncLocker {
    /// The blocking handle.
    pub fn blocking(&self) -> &Locker {
        &self.0
    }

    /// [`Locker::lock`]: holds a blocking-pool thread while it waits.
    ///
    /// The wait cannot be cancelled: dropping the future leaves it running
    /// (the hold is then released as soon as it is taken), and dropping the
    /// runtime waits for it. Where a stop must not wait for a lock, use
    /// [`try_lock`](Self::try_lock) with a timeout.
    pub async fn lock(&self) -> io::Result<LockGuard> {
        let l = self.0.clone();
        blocking(move || l.lock()).await
    }

    /// [`Locker::rlock`]: holds a blocking-pool thread while it waits, as
    /// [`lock`](Self::lock) does.
    pub async fn rlock(&self) -> io::Result<ReadGuard> {
        let l = self.0.clone();
        blocking(move || l.rlock()).await
    }

    /// [`Locker::try_lock`].
    pub async fn try_lock(&self, timeout: Option<Duration>) -> io::Result<Option<LockGuard>> {
        let l = self.0.clone();
        blocking(move || l.try_lock(timeout)).await
    }

    /// [`Locker::try_rlock`].
    pub async fn try_rlock(&self, timeout: Option<Duration>) -> io::Result<Option<ReadGuard>> {
        let l = self.0.clone();
        blocking(move || l.try_rlock(timeout)).await
    }

    /// [`Locker::state`].
    pub async fn state(&self) -> io::Result<LockState> {
        let l = self.0.clone();
        blocking(move || l.state()).await
    }

    /// [`LockGuard::unlock`] off the runtime's workers.
    pub async fn unlock_guard(guard: LockGuard) -> io::Result<()> {
        blocking(move || guard.unlock()).await
    }

    /// [`ReadGuard::unlock`] off the runtime's workers.
    pub async fn unlock_read_guard(guard: ReadGuard) -> io::Result<()> {
        blocking(move || guard.unlock()).await
    }
}
