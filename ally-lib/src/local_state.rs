//! Shared state in simulate mode: the master's own logic, in-process.
//!
//! The process drives one [`Store`] — the same code the master runs for
//! each app — behind a mutex, so every answer and every error is the one a
//! master would give. The whole process is one lock [`Owner`], as an
//! instance is under a master. A lock request that has to wait sleeps on a
//! condition variable until its ticket is granted, or until its timeout
//! passes, when it is withdrawn (which may let others in).
//!
//! The store is created on first use with [`Limits::default`]: 100 000
//! cache entries and 64 MiB of cache, names up to 1 KiB, times to live up
//! to 365 days, 10 000 atomics and 10 000 locks in use.

use std::collections::HashSet;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ally_proto::state::{Limits, Owner, Store, Ticket};
use ally_proto::{ErrorCode, Failure, InstanceRequest, InstanceResponse};

/// The owner of every hold in simulate mode: this process.
const OWNER: Owner = 1;

/// Expired cache entries freed per request. The master frees them on a
/// timer; here each request frees a few, so entries nobody reads again do
/// not keep their memory for ever.
const SWEEP_BATCH: usize = 16;

#[derive(Debug)]
struct Local {
    state: Mutex<State>,
    /// Signalled when tickets are granted.
    granted: Condvar,
}

#[derive(Debug)]
struct State {
    store: Store,
    /// Granted tickets whose waiter has not yet woken to take them.
    granted: HashSet<Ticket>,
}

static LOCAL: LazyLock<Local> = LazyLock::new(|| Local {
    state: Mutex::new(State {
        store: Store::new(Limits::default()),
        granted: HashSet::new(),
    }),
    granted: Condvar::new(),
});

impl Local {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every store operation either completes or changes nothing before
        // it could panic; a panic in another thread leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Records granted tickets; whether there were any.
    fn grant(&mut self, tickets: Vec<Ticket>) -> bool {
        let any = !tickets.is_empty();
        self.granted.extend(tickets);
        any
    }
}

/// Answers a state request as the master would, waiting in this thread if
/// it is a lock request that has to wait.
pub(crate) fn handle(req: &InstanceRequest) -> InstanceResponse {
    let local = &*LOCAL;
    let mut st = local.state();
    let now = Instant::now();
    st.store.cache.sweep(now, SWEEP_BATCH);
    let Some(handled) = st.store.handle(OWNER, req, now) else {
        return InstanceResponse::Error(Failure::new(
            ErrorCode::BadRequest,
            "not a shared-state request",
        ));
    };
    if st.grant(handled.granted) {
        local.granted.notify_all();
    }
    if let Some(reply) = handled.reply {
        return reply;
    }
    let Some(ticket) = handled.queued else {
        return InstanceResponse::Error(Failure::new(
            ErrorCode::Internal,
            "a lock request neither answered nor queued",
        ));
    };
    let deadline = match req {
        InstanceRequest::Lock {
            timeout_ms: Some(ms),
            ..
        } => now.checked_add(Duration::from_millis(*ms)),
        _ => None,
    };
    loop {
        if st.granted.remove(&ticket) {
            return InstanceResponse::Bool(true);
        }
        st = match deadline {
            None => local
                .granted
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let granted = st.store.locker.withdraw(ticket);
                    if st.grant(granted) {
                        local.granted.notify_all();
                    }
                    return InstanceResponse::Bool(false);
                }
                local
                    .granted
                    .wait_timeout(st, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}
