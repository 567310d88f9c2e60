//! The cache: namespaces of key → bytes, kept by the master so that they
//! survive reloads, each entry with an optional time to live.

use std::io;
use std::time::Duration;

use ally_proto::{InstanceRequest, InstanceResponse};

use crate::client::ceil_millis;
use crate::listen::unexpected;
use crate::state::{self, quote};

/// A handle on cache namespace `ns` of this app. Cheap: nothing is sent
/// until it is used.
///
/// Under a master the namespace belongs to the app and is shared by all
/// its instances, old and new, so what one instance stores the next one
/// finds after a reload. In simulate mode it lives in this process.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let sessions = ally::cache("doc-cache-sessions");
/// sessions.set("alice", b"token-1")?;
/// assert_eq!(sessions.get("alice")?.as_deref(), Some(&b"token-1"[..]));
/// assert_eq!(sessions.keys()?, ["alice"]);
/// assert!(sessions.del("alice")?);
/// assert_eq!(sessions.get("alice")?, None);
/// # Ok(()) }
/// ```
pub fn cache(ns: &str) -> Cache {
    Cache { ns: ns.to_owned() }
}

/// A cache namespace; see [`cache`].
///
/// Namespaces and keys are 1 to 1024 bytes. A write with another name is
/// refused ([`InvalidInput`](io::ErrorKind::InvalidInput)); a read finds
/// nothing under it, as under any key never written.
///
/// An entry with a time to live is gone from the instant it expires: no
/// call returns, counts or lists it afterwards.
///
/// # Limits
///
/// The app's cache is bounded in entries and bytes (the namespace, key and
/// value of each entry count). Past a limit a write fails with
/// [`QuotaExceeded`](io::ErrorKind::QuotaExceeded) and changes nothing;
/// nothing is evicted to make room, except entries already expired. Under
/// a master the limits are the app's `max_cache_entries` and
/// `max_cache_bytes`; in simulate mode the defaults (100 000 entries,
/// 64 MiB). A single request must also fit in a 1 MiB frame, so a value is
/// at most a little under 1 MiB.
///
/// # Errors
///
/// Every method returns the refusal as an [`io::Error`] wrapping
/// [`Error::State`](crate::Error::State); when managed, also errors
/// talking to the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    ns: String,
}

impl Cache {
    /// The namespace.
    pub fn name(&self) -> &str {
        &self.ns
    }

    /// Sets `key` to `value`, replacing any entry and its time to live.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> io::Result<()> {
        self.put(key, value.as_ref(), None)
    }

    /// Sets `key` to `value` for `ttl`, replacing any entry.
    ///
    /// The time to live is counted in whole milliseconds, rounded up, from
    /// when the master (or, in simulate mode, this process) handles the
    /// request; it must be between 1 ms and 365 days.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// let c = ally::cache("doc-cache-ttl");
    /// c.set_with_ttl("otp", b"123456", Duration::from_secs(300))?;
    /// let err = c.set_with_ttl("otp", b"123456", Duration::ZERO).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok(()) }
    /// ```
    pub fn set_with_ttl(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> io::Result<()> {
        self.put(key, value.as_ref(), Some(ceil_millis(ttl)))
    }

    fn put(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> io::Result<()> {
        let req = InstanceRequest::CacheSet {
            ns: self.ns.clone(),
            key: key.to_owned(),
            value: value.to_vec(),
            ttl_ms,
        };
        let what = || format!("set key {} in cache {}", quote(key), quote(&self.ns));
        match state::call(req, &what)? {
            InstanceResponse::Done => Ok(()),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// The value of `key`, or `None` if it has no live entry.
    pub fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let req = InstanceRequest::CacheGet {
            ns: self.ns.clone(),
            key: key.to_owned(),
        };
        let what = || format!("get key {} from cache {}", quote(key), quote(&self.ns));
        match state::call(req, &what)? {
            InstanceResponse::Value(value) => Ok(value),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// Deletes `key`; whether it had a live entry.
    pub fn del(&self, key: &str) -> io::Result<bool> {
        let req = InstanceRequest::CacheDel {
            ns: self.ns.clone(),
            key: key.to_owned(),
        };
        let what = || format!("delete key {} from cache {}", quote(key), quote(&self.ns));
        self.boolean(req, &what)
    }

    /// Whether `key` has a live entry.
    pub fn exists(&self, key: &str) -> io::Result<bool> {
        let req = InstanceRequest::CacheExists {
            ns: self.ns.clone(),
            key: key.to_owned(),
        };
        let what = || format!("look up key {} in cache {}", quote(key), quote(&self.ns));
        self.boolean(req, &what)
    }

    fn boolean(&self, req: InstanceRequest, what: &dyn Fn() -> String) -> io::Result<bool> {
        match state::call(req, what)? {
            InstanceResponse::Bool(b) => Ok(b),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// The keys with a live entry, sorted.
    ///
    /// The whole answer must fit in one 1 MiB frame: a namespace whose keys
    /// take more is refused with
    /// [`QuotaExceeded`](io::ErrorKind::QuotaExceeded), managed or not; for a
    /// large namespace, keep an index of your own.
    pub fn keys(&self) -> io::Result<Vec<String>> {
        let what = || format!("list the keys of cache {}", quote(&self.ns));
        let req = InstanceRequest::CacheKeys {
            ns: self.ns.clone(),
        };
        match state::call(req, &what)? {
            InstanceResponse::Keys(keys) => Ok(keys),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// How many live entries the namespace has.
    pub fn count(&self) -> io::Result<u64> {
        let what = || format!("count the entries of cache {}", quote(&self.ns));
        let req = InstanceRequest::CacheCount {
            ns: self.ns.clone(),
        };
        self.number(req, &what)
    }

    /// The live entries, sorted by key. As for [`keys`](Self::keys), the
    /// answer must fit in one frame, or it is refused.
    pub fn items(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let what = || format!("list the entries of cache {}", quote(&self.ns));
        let req = InstanceRequest::CacheItems {
            ns: self.ns.clone(),
        };
        match state::call(req, &what)? {
            InstanceResponse::Items(items) => Ok(items),
            other => Err(unexpected(what(), &other).into()),
        }
    }

    /// Deletes every entry of the namespace; how many were live.
    pub fn flush(&self) -> io::Result<u64> {
        let what = || format!("flush cache {}", quote(&self.ns));
        let req = InstanceRequest::CacheFlush {
            ns: self.ns.clone(),
        };
        self.number(req, &what)
    }

    fn number(&self, req: InstanceRequest, what: &dyn Fn() -> String) -> io::Result<u64> {
        match state::call(req, what)? {
            InstanceResponse::Count(n) => Ok(n),
            other => Err(unexpected(what(), &other).into()),
        }
    }
}
