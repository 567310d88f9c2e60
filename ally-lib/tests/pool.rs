//! The connection pool against a fake master that serves each connection
//! in a thread of its own: threads waiting for a lock hold connections,
//! never all of them, and other requests go on meanwhile.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ally_proto::{InstanceRequest, InstanceResponse, LockState, env};
use util::{Greeting, Handler, channel_for, child, is_child, run_ok, serve_channel};

/// Threads waiting for the lock at once in the test: more than may wait on
/// connections of their own.
const WAITERS: usize = 15;
/// The pool's cap on connections waiting for a lock (`pool::MAX_LOCK_WAITS`).
const MAX_LOCK_WAITS: u32 = 12;
/// The pool's cap on connections (`pool::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 16;

/// A master with one lock, held by someone else until an `Unlock` arrives.
#[derive(Default)]
struct Fake {
    released: Mutex<bool>,
    changed: Condvar,
    waiting: AtomicUsize,
}

fn answers(fake: Arc<Fake>) -> Handler {
    Arc::new(move |req: &InstanceRequest| {
        let reply = match req {
            InstanceRequest::Lock {
                timeout_ms: None, ..
            } => {
                fake.waiting.fetch_add(1, Ordering::SeqCst);
                let mut released = fake.released.lock().unwrap();
                while !*released {
                    released = fake.changed.wait(released).unwrap();
                }
                fake.waiting.fetch_sub(1, Ordering::SeqCst);
                InstanceResponse::Bool(true)
            }
            InstanceRequest::LockQueue { .. } => InstanceResponse::LockState(LockState {
                waiting_exclusive: fake.waiting.load(Ordering::SeqCst) as u32,
                ..LockState::default()
            }),
            InstanceRequest::Unlock { .. } => {
                *fake.released.lock().unwrap() = true;
                fake.changed.notify_all();
                InstanceResponse::Done
            }
            InstanceRequest::CacheGet { .. } => InstanceResponse::Value(Some(b"v".to_vec())),
            _ => InstanceResponse::Done,
        };
        (reply, None)
    })
}

#[test]
fn lock_waits_never_take_every_connection() {
    const ROLE: &str = "pooled";
    if is_child(ROLE) {
        return instance_side();
    }
    let mut cmd = child("lock_waits_never_take_every_connection", ROLE);
    cmd.env(env::APP, "web").env(env::INSTANCE, "1");
    let (ours, _theirs) = channel_for(&mut cmd);
    let most = serve_channel(ours, Greeting::Welcome, answers(Arc::default()));
    run_ok(cmd);
    let most = most.load(Ordering::SeqCst) as usize;
    assert!(
        most <= MAX_CONNECTIONS && most > MAX_LOCK_WAITS as usize,
        "{most} connections open at once"
    );
}

fn waiting() -> u32 {
    ally::locker("l").state().unwrap().waiting_exclusive
}

fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    cond()
}

fn instance_side() {
    let first = thread::spawn(|| ally::locker("l").lock().map(std::mem::forget));
    assert!(eventually(|| waiting() == 1));
    // A thread blocked in lock() does not stall other threads' calls.
    for _ in 0..20 {
        assert_eq!(ally::cache("c").get("k").unwrap(), Some(b"v".to_vec()));
    }
    let more: Vec<_> = (1..WAITERS)
        .map(|_| thread::spawn(|| ally::locker("l").lock().map(std::mem::forget)))
        .collect();
    assert!(eventually(|| waiting() == MAX_LOCK_WAITS));
    // The rest wait for a place in the pool, not on the wire, and
    // connections stay free for prompt requests.
    let readers: Vec<_> = (0..4)
        .map(|_| thread::spawn(|| ally::cache("c").get("k").unwrap()))
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), Some(b"v".to_vec()));
    }
    assert_eq!(waiting(), MAX_LOCK_WAITS);
    ally::locker("l").unlock().unwrap();
    first.join().unwrap().unwrap();
    for t in more {
        t.join().unwrap().unwrap();
    }
}
