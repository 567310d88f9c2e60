//! Shared state in simulate mode: cache, atomics and locks, in-process,
//! with the master's semantics.
//!
//! Tests run in parallel on one process-wide store, so each uses names of
//! its own; the limit test fills the store and runs in a child process.

mod util;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use ally::{ErrorCode, LockState};
use util::{child, is_child, run_ok};

/// Upper bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

/// The [`ErrorCode`] inside an error from a state call.
fn code(e: &io::Error) -> Option<ErrorCode> {
    match e.get_ref()?.downcast_ref::<ally::Error>()? {
        ally::Error::State { failure, .. } => Some(failure.code),
        _ => None,
    }
}

/// Polls `cond` until it holds or [`SOON`] passes.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SOON;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(2));
    }
    cond()
}

#[test]
fn cache_set_get_del_and_listing() {
    let c = ally::cache("t-cache-ops");
    let other = ally::cache("t-cache-ops-other");
    assert_eq!(c.name(), "t-cache-ops");
    assert_eq!(c.get("a").unwrap(), None);
    assert!(!c.exists("a").unwrap());
    c.set("b", b"2").unwrap();
    c.set("a", "1").unwrap();
    c.set("a", vec![1u8, 0, 255]).unwrap(); // replaces
    other.set("a", b"x").unwrap();
    assert_eq!(c.get("a").unwrap(), Some(vec![1, 0, 255]));
    assert!(c.exists("b").unwrap());
    assert_eq!(c.keys().unwrap(), ["a", "b"]);
    assert_eq!(c.count().unwrap(), 2);
    assert_eq!(
        c.items().unwrap(),
        [
            ("a".to_owned(), vec![1, 0, 255]),
            ("b".to_owned(), b"2".to_vec())
        ]
    );
    assert!(c.del("b").unwrap());
    assert!(!c.del("b").unwrap());
    c.set("empty", b"").unwrap();
    assert_eq!(c.get("empty").unwrap(), Some(Vec::new()));
    assert_eq!(c.flush().unwrap(), 2);
    assert_eq!(c.count().unwrap(), 0);
    assert!(c.keys().unwrap().is_empty());
    assert_eq!(c.flush().unwrap(), 0);
    // Namespaces are apart.
    assert_eq!(other.get("a").unwrap(), Some(b"x".to_vec()));
}

#[test]
fn bad_names_are_refused_on_write_and_absent_on_read() {
    let c = ally::cache("t-cache-names");
    let e = c.set("", b"v").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(code(&e), Some(ErrorCode::BadRequest));
    assert!(e.to_string().contains("key must not be empty"), "{e}");
    let long = "k".repeat(1025);
    let e = c.set(&long, b"v").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    // The message names the key, cut short.
    assert!(e.to_string().contains("(1025 bytes)"), "{e}");
    assert!(e.to_string().len() < 400, "{e}");
    assert_eq!(c.get(&long).unwrap(), None);
    assert_eq!(ally::cache("").get("k").unwrap(), None);
    let e = ally::cache("").set("k", b"v").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert!(ally::atomic("").add(1).is_err());
    assert_eq!(ally::atomic("").load().unwrap(), 0);
    assert!(ally::locker("").lock().is_err());
}

#[test]
fn value_larger_than_a_frame_is_refused_as_under_a_master() {
    let e = ally::cache("t-cache-big")
        .set("k", vec![0u8; 1 << 20])
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<ally::Error>());
    assert!(matches!(inner, Some(ally::Error::TooLarge { .. })), "{e}");
    assert!(e.to_string().contains("frame limit"), "{e}");
    // Just under the frame limit fits.
    ally::cache("t-cache-big")
        .set("k", vec![0u8; (1 << 20) - 100])
        .unwrap();
    assert!(ally::cache("t-cache-big").del("k").unwrap());
}

#[test]
fn cache_entries_expire_at_their_ttl() {
    let c = ally::cache("t-cache-ttl");
    let ttl = Duration::from_millis(200);
    let set_at = Instant::now();
    c.set_with_ttl("short", b"v", ttl).unwrap();
    c.set_with_ttl("long", b"v", Duration::from_secs(3600))
        .unwrap();
    c.set_with_ttl("cleared", b"v", ttl).unwrap();
    c.set("cleared", b"w").unwrap(); // a plain set drops the ttl
    let present = c.exists("short").unwrap();
    assert!(present || set_at.elapsed() >= ttl, "gone before its ttl");
    assert!(eventually(|| !c.exists("short").unwrap()));
    assert!(set_at.elapsed() >= ttl);
    assert_eq!(c.get("short").unwrap(), None);
    assert_eq!(c.keys().unwrap(), ["cleared", "long"]);
    assert_eq!(c.count().unwrap(), 2);
    assert!(!c.del("short").unwrap());
}

#[test]
fn ttls_out_of_range_are_refused() {
    let c = ally::cache("t-cache-bad-ttl");
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(366 * 24 * 3600),
        Duration::MAX,
    ] {
        let e = c.set_with_ttl("k", b"v", ttl).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{ttl:?}: {e}");
        assert!(e.to_string().contains("ttl must be between"), "{e}");
    }
    // Below a millisecond rounds up to one.
    c.set_with_ttl("k", b"v", Duration::from_micros(10))
        .unwrap();
    assert!(eventually(|| c.count().unwrap() == 0));
}

#[test]
fn atomic_operations() {
    let a = ally::atomic("t-atomic-ops");
    assert_eq!(a.name(), "t-atomic-ops");
    assert_eq!(a.load().unwrap(), 0);
    assert_eq!(a.add(5).unwrap(), 5);
    assert_eq!(a.add(-7).unwrap(), -2);
    a.store(10).unwrap();
    assert_eq!(a.swap(11).unwrap(), 10);
    assert!(!a.compare_and_swap(10, 12).unwrap());
    assert!(a.compare_and_swap(11, 12).unwrap());
    assert_eq!(a.load().unwrap(), 12);
    a.store(i64::MAX).unwrap();
    let e = a.add(1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(code(&e), Some(ErrorCode::Overflow));
    assert_eq!(a.load().unwrap(), i64::MAX);
    a.store(0).unwrap();
    assert_eq!(a.load().unwrap(), 0);
}

#[test]
fn many_threads_adding_lose_no_update() {
    const THREADS: i64 = 8;
    const ADDS: i64 = 2000;
    let a = ally::atomic("t-atomic-sum");
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(|| {
                for _ in 0..ADDS {
                    ally::atomic("t-atomic-sum").add(1).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(a.load().unwrap(), THREADS * ADDS);
}

#[test]
fn exclusive_lock_excludes_other_threads_until_released() {
    let l = ally::locker("t-lock-excl");
    let guard = l.lock().unwrap();
    assert_eq!(
        l.state().unwrap(),
        LockState {
            exclusive: true,
            ..LockState::default()
        }
    );
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let l = ally::locker("t-lock-excl");
        assert!(l.try_lock(None).unwrap().is_none());
        assert!(l.try_rlock(None).unwrap().is_none());
        let started = Instant::now();
        assert!(
            l.try_lock(Some(Duration::from_millis(50)))
                .unwrap()
                .is_none()
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        tx.send("waiting").unwrap();
        let g = l.lock().unwrap();
        tx.send("granted").unwrap();
        g.unlock().unwrap();
    });
    assert_eq!(rx.recv().unwrap(), "waiting");
    assert!(eventually(|| l.state().unwrap().waiting_exclusive == 1));
    assert!(rx.try_recv().is_err(), "granted while held");
    drop(guard);
    assert_eq!(rx.recv_timeout(SOON).unwrap(), "granted");
    waiter.join().unwrap();
    assert_eq!(l.state().unwrap(), LockState::default());
}

#[test]
fn timed_wait_is_granted_when_released_in_time() {
    let l = ally::locker("t-lock-timed");
    let guard = l.lock().unwrap();
    let waiter = thread::spawn(|| {
        ally::locker("t-lock-timed")
            .try_lock(Some(SOON))
            .unwrap()
            .map(|g| g.unlock().unwrap())
            .is_some()
    });
    assert!(eventually(|| l.state().unwrap().waiting_exclusive == 1));
    drop(guard);
    assert!(waiter.join().unwrap());
}

#[test]
fn absurd_timeouts_wait_until_granted() {
    let l = ally::locker("t-lock-forever");
    let guard = l.lock().unwrap();
    let waiter = thread::spawn(|| {
        let g = ally::locker("t-lock-forever").try_lock(Some(Duration::MAX));
        g.unwrap().map(|g| g.unlock().unwrap()).is_some()
    });
    assert!(eventually(|| l.state().unwrap().waiting_exclusive == 1));
    drop(guard);
    assert!(waiter.join().unwrap());
}

#[test]
fn shared_holds_coexist_and_keep_writers_out() {
    let l = ally::locker("t-lock-shared");
    let r1 = l.rlock().unwrap();
    let r2 = l.try_rlock(None).unwrap().expect("shared while shared");
    assert_eq!(l.state().unwrap().shared, 2);
    assert!(l.try_lock(None).unwrap().is_none());
    r1.unlock().unwrap();
    assert!(
        l.try_lock(Some(Duration::from_millis(5)))
            .unwrap()
            .is_none()
    );
    drop(r2);
    let w = l.try_lock(None).unwrap().expect("free after both readers");
    w.unlock().unwrap();
}

#[test]
fn writer_is_not_starved_by_a_stream_of_readers() {
    const READERS: usize = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(READERS + 1));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
            thread::spawn(move || {
                let l = ally::locker("t-lock-starve");
                start.wait();
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let g = l.rlock().unwrap();
                    thread::sleep(Duration::from_millis(2));
                    drop(g);
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    start.wait();
    // Readers overlap: some reader holds the lock nearly all the time.
    let l = ally::locker("t-lock-starve");
    assert!(eventually(|| l.state().unwrap().shared > 0));
    let asked = Instant::now();
    let w = l.try_lock(Some(SOON)).unwrap();
    let waited = asked.elapsed();
    stop.store(true, Ordering::Relaxed);
    let w = w.unwrap_or_else(|| panic!("writer starved for {waited:?}"));
    w.unlock().unwrap();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // Behind a queued writer, readers wait for one reader's hold at most.
    assert!(waited < Duration::from_secs(2), "writer waited {waited:?}");
}

#[test]
fn withdrawn_writer_lets_the_readers_behind_it_in() {
    let l = ally::locker("t-lock-withdraw");
    let r1 = l.rlock().unwrap();
    let writer = thread::spawn(|| {
        let w = ally::locker("t-lock-withdraw").try_lock(Some(Duration::from_millis(300)));
        w.unwrap().is_some()
    });
    assert!(eventually(|| l.state().unwrap().waiting_exclusive == 1));
    // This reader queues behind the writer...
    let reader = thread::spawn(|| ally::locker("t-lock-withdraw").rlock().unwrap().unlock());
    assert!(eventually(|| l.state().unwrap().waiting_shared == 1));
    // ... and gets in when the writer gives up, while r1 still holds.
    assert!(!writer.join().unwrap());
    reader.join().unwrap().unwrap();
    assert_eq!(l.state().unwrap().shared, 1);
    r1.unlock().unwrap();
}

#[test]
fn guards_unlock_on_drop_and_raw_unlocks_need_a_hold() {
    let l = ally::locker("t-lock-guard");
    {
        let _g = l.lock().unwrap();
        assert!(l.state().unwrap().exclusive);
    }
    assert!(!l.state().unwrap().exclusive);
    {
        let _r = l.rlock().unwrap();
        assert_eq!(l.state().unwrap().shared, 1);
    }
    assert_eq!(l.state().unwrap().shared, 0);

    for e in [l.unlock().unwrap_err(), l.runlock().unwrap_err()] {
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(code(&e), Some(ErrorCode::BadRequest));
        assert!(e.to_string().contains("does not hold lock"), "{e}");
    }
    // A forgotten guard leaves the hold to a raw unlock.
    std::mem::forget(l.lock().unwrap());
    assert!(l.try_lock(None).unwrap().is_none());
    l.unlock().unwrap();
    assert!(l.unlock().is_err());
    std::mem::forget(l.rlock().unwrap());
    std::mem::forget(l.rlock().unwrap());
    l.runlock().unwrap();
    l.runlock().unwrap();
    assert!(l.runlock().is_err());
    // A guard released by hand reports errors: here, a hold already gone.
    let g = l.lock().unwrap();
    l.unlock().unwrap();
    assert!(g.unlock().is_err());
    assert_eq!(l.state().unwrap(), LockState::default());
}

#[test]
fn limits_give_errors_not_growth() {
    const ROLE: &str = "limits";
    if !is_child(ROLE) {
        run_ok(child("limits_give_errors_not_growth", ROLE));
        return;
    }
    // A fresh process: the store holds nothing else. Defaults apply.
    let quota = |e: io::Error| {
        assert_eq!(e.kind(), io::ErrorKind::QuotaExceeded, "{e}");
        assert_eq!(code(&e), Some(ErrorCode::LimitExceeded));
        e.to_string()
    };
    for i in 0..10_000 {
        ally::atomic(&format!("a{i}")).store(1).unwrap();
    }
    let msg = quota(ally::atomic("one-more").add(1).unwrap_err());
    assert!(msg.contains("max_atomics"), "{msg}");
    ally::atomic("a0").store(0).unwrap(); // an atomic at 0 takes no room
    ally::atomic("one-more").add(1).unwrap();

    let held: Vec<_> = (0..10_000)
        .map(|i| ally::locker(&format!("l{i}")).lock().unwrap())
        .collect();
    let msg = quota(ally::locker("one-more").try_lock(None).unwrap_err());
    assert!(msg.contains("max_locks"), "{msg}");
    drop(held);
    ally::locker("one-more").lock().unwrap().unlock().unwrap();

    let c = ally::cache("full");
    for i in 0..100_000 {
        c.set(&i.to_string(), b"").unwrap();
    }
    let msg = quota(c.set("one-more", b"").unwrap_err());
    assert!(msg.contains("max_cache_entries"), "{msg}");
    assert_eq!(c.get("one-more").unwrap(), None);
    assert_eq!(c.flush().unwrap(), 100_000);
    // Bytes: 64 MiB, in values that each fit a frame.
    let big = vec![7u8; 1000 * 1000];
    let mut stored = 0;
    let e = loop {
        match c.set(&stored.to_string(), &big) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(stored, 67); // 67 × ~1 MB ≤ 64 MiB < 68 × ~1 MB
    let msg = quota(e);
    assert!(msg.contains("max_cache_bytes"), "{msg}");
    assert_eq!(c.flush().unwrap(), 67);
}
