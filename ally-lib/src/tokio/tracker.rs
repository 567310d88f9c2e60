//! [`Tracker`]: counts live connections, to wait for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::tokio::sync::Notify;

/// Counts what is still in progress (connections, usually), so that a
/// draining service can wait for it, with a deadline. Clones share the
/// count.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// let tracker = ally::tokio::Tracker::new();
/// let conn = tracker.track();
/// assert_eq!(tracker.active(), 1);
/// assert!(!tracker.wait_idle(Duration::from_millis(10)).await);
/// drop(conn);
/// tracker.idle().await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    active: AtomicUsize,
    /// Woken when `active` drops to zero.
    idle: Notify,
}

/// One tracked thing; counted by its [`Tracker`] until dropped.
#[derive(Debug)]
#[must_use = "the count drops as soon as the guard is dropped"]
pub struct Tracked {
    inner: Arc<Inner>,
}

impl Tracker {
    /// A tracker with nothing tracked.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Counts one more until the guard is dropped.
    pub fn track(&self) -> Tracked {
        self.inner.active.fetch_add(1, Ordering::SeqCst);
        Tracked {
            inner: Arc::clone(&self.inner),
        }
    }

    /// How many guards are alive.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    /// Returns once no guard is alive (at once if none is).
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check: a drop between the two wakes it.
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits for [`idle`](Self::idle) at most `deadline`; whether it came.
    pub async fn wait_idle(&self, deadline: Duration) -> bool {
        ::tokio::time::timeout(deadline, self.idle()).await.is_ok()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}
