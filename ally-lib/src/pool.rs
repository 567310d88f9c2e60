//! A small pool of connections to the master, shared by every thread.
//!
//! Each request takes an idle connection, or asks the instance's
//! [channel](crate::channel) for a new one while fewer than
//! [`MAX_CONNECTIONS`] are open, or else waits for one to come back. A
//! connection returns to the pool after a complete answer; one that failed
//! is dropped, since its stream may be mid-frame.
//!
//! Lock requests that may wait hold their connection until the lock is
//! granted or the wait times out. At most [`MAX_LOCK_WAITS`] connections do
//! that at once, so some are always left for requests the master answers at
//! once: a thread holding a lock can always release it, and cache calls go
//! on while other threads wait for locks.
//!
//! Holds belong to the instance, not to a connection: the master releases
//! them when the instance exits, so a connection dropped after a timeout
//! gives up nothing but the wait it carried.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::client::{Conn, Reply};
use crate::error::Error;
use crate::mode::Managed;

/// Most connections one process keeps to the master. A process rarely
/// needs more than one per thread talking to the master at the same time;
/// past the cap, requests wait for a connection to come back.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// Most of those connections that may wait for a lock at once. The other
/// `MAX_CONNECTIONS - MAX_LOCK_WAITS` serve only requests the master
/// answers at once (cache, atomics, unlock, listen, ...), so a lock holder
/// is never kept from unlocking by threads waiting for the lock.
pub(crate) const MAX_LOCK_WAITS: usize = 12;

/// What a connection is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// A request the master answers without waiting on anything the
    /// process itself might have to do first.
    Prompt,
    /// A lock request that may wait for the lock.
    LockWait,
}

#[derive(Debug)]
struct State {
    idle: Vec<Conn>,
    /// Connections open or being opened: idle, leased, or connecting.
    open: usize,
    /// Leases taken with [`Use::LockWait`].
    lock_waits: usize,
}

/// The process's pool.
static STATE: Mutex<State> = Mutex::new(State {
    idle: Vec::new(),
    open: 0,
    lock_waits: 0,
});

/// Signalled whenever a connection or a lock-wait slot is given back.
static RETURNED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    // The lock guards only counters and idle connections, each left
    // consistent at every step: a panic elsewhere cannot have broken them.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection taken from the pool for one request; given back on drop
/// if its last exchange completed, dropped otherwise.
#[derive(Debug)]
pub(crate) struct Lease {
    /// `None` only while connecting.
    conn: Option<Conn>,
    usage: Use,
    /// Whether the connection is between complete exchanges.
    healthy: bool,
}

/// Takes a connection for `usage`, opening one if none is idle and the
/// cap allows; otherwise waits until one comes back, or until `deadline`
/// (then `Ok(None)`).
///
/// # Errors
///
/// Opening a connection failed (see [`Conn::open`]).
pub(crate) fn take(
    m: &Managed,
    usage: Use,
    deadline: Option<Instant>,
) -> Result<Option<Lease>, Error> {
    let mut st = state();
    loop {
        if usage == Use::Prompt || st.lock_waits < MAX_LOCK_WAITS {
            if let Some(conn) = st.idle.pop() {
                return Ok(Some(Lease::new(&mut st, Some(conn), usage)));
            }
            if st.open < MAX_CONNECTIONS {
                st.open += 1;
                let mut lease = Lease::new(&mut st, None, usage);
                // Connect without holding the pool: others go on meanwhile.
                // On failure the lease's drop gives back its place.
                drop(st);
                lease.conn = Some(m.channel.connect(m.request_timeout)?);
                lease.healthy = true;
                return Ok(Some(lease));
            }
        }
        st = match deadline {
            None => RETURNED.wait(st).unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                RETURNED
                    .wait_timeout(st, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

impl Lease {
    /// A lease on `conn` (`None`: about to connect; `open` already counts
    /// it), counted as a lock wait if `usage` says so.
    fn new(st: &mut State, conn: Option<Conn>, usage: Use) -> Lease {
        if usage == Use::LockWait {
            st.lock_waits += 1;
        }
        Lease {
            healthy: conn.is_some(),
            conn,
            usage,
        }
    }

    /// Sends one encoded request and reads its answer (see
    /// [`Conn::exchange`]). A failed exchange leaves the connection to be
    /// dropped.
    pub(crate) fn exchange(
        &mut self,
        request: &[u8],
        what: &str,
        timeout: Option<Duration>,
    ) -> Result<Reply, Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Disconnected);
        };
        self.healthy = false;
        let reply = conn.exchange(request, what, timeout)?;
        self.healthy = true;
        Ok(reply)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let conn = self.conn.take().filter(|_| self.healthy);
        let mut st = state();
        if self.usage == Use::LockWait {
            st.lock_waits -= 1;
        }
        match conn {
            Some(conn) => st.idle.push(conn),
            None => st.open -= 1,
        }
        drop(st);
        // Waiters wait for different things (any connection, or a lock-wait
        // slot): wake them all; there are few.
        RETURNED.notify_all();
    }
}
