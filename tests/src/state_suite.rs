//! One body of shared-state tests for both backends: run in-process it
//! checks simulate mode (`tests/state_simulate.rs`); run by the
//! `state-probe` service under a real master it checks the master (the
//! `state` end-to-end tests). Same calls, same expectations.
//!
//! Everything goes through the `ally` library. Each run works under names
//! of its own (a token unique to the process and the run), so it needs no
//! clean state and runs next to anything else. Functions return the first
//! expectation that does not hold, as a message, rather than panicking: the
//! probe prints it to the master's log.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ally::{ErrorCode, LockState};

/// Upper bound for anything that should happen soon, even on a busy
/// machine.
pub const SOON: Duration = Duration::from_secs(10);

/// Result of one check: the first violated expectation, said plainly.
pub type Outcome = Result<(), String>;

/// Runs every check; the first failure's message.
///
/// # Errors
///
/// The first expectation that does not hold.
pub fn run() -> Outcome {
    let t = token();
    cache_operations(&t)?;
    cache_ttl(&t)?;
    refusals(&t)?;
    atomic_operations(&t)?;
    many_adds(&format!("suite-{t}-sum"), 4, 250)?;
    exclusive_lock(&t)?;
    shared_lock(&t)?;
    guards_and_raw_unlocks(&t)?;
    Ok(())
}

/// A token no other run uses: pid, clock and a counter.
pub fn token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the
/// machine, so that two processes' events can be subtracted.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// Fails with `msg` unless `cond`.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(msg()) }
}

/// The value of `r`, or a message naming `what` and the error.
pub fn ok<T>(r: io::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: unexpected error: {e}"))
}

/// Checks that `r` failed with `kind` (and, if given, the failure `code`).
pub fn refused<T: std::fmt::Debug>(
    r: io::Result<T>,
    kind: io::ErrorKind,
    code: Option<ErrorCode>,
    what: &str,
) -> Outcome {
    let e = match r {
        Ok(v) => return Err(format!("{what}: expected an error, got Ok({v:?})")),
        Err(e) => e,
    };
    check(e.kind() == kind, || {
        format!("{what}: expected {kind:?}, got {:?}: {e}", e.kind())
    })?;
    if let Some(code) = code {
        let got = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<ally::Error>())
            .and_then(|i| match i {
                ally::Error::State { failure, .. } => Some(failure.code),
                _ => None,
            });
        check(got == Some(code), || {
            format!("{what}: expected code {code:?}, got {got:?}: {e}")
        })?;
    }
    Ok(())
}

/// Polls `cond` until it holds or `timeout` passes; whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return cond();
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Set, get, delete, list and flush, across two namespaces.
pub fn cache_operations(t: &str) -> Outcome {
    let c = ally::cache(&format!("suite-{t}-cache"));
    let other = ally::cache(&format!("suite-{t}-cache-other"));
    check(ok(c.get("a"), "get of a key never set")?.is_none(), || {
        "a key never set has a value".into()
    })?;
    ok(c.set("b", b"2"), "set b")?;
    ok(c.set("a", b"first"), "set a")?;
    ok(c.set("a", [1u8, 0, 255]), "set a again")?;
    ok(other.set("a", b"other"), "set a in another namespace")?;
    let a = ok(c.get("a"), "get a")?;
    check(a.as_deref() == Some(&[1, 0, 255][..]), || {
        format!("get a after replacing it: {a:?}")
    })?;
    check(ok(c.exists("b"), "exists b")?, || "b does not exist".into())?;
    let keys = ok(c.keys(), "keys")?;
    check(keys == ["a", "b"], || format!("keys: {keys:?}"))?;
    let n = ok(c.count(), "count")?;
    check(n == 2, || format!("count: {n}"))?;
    let items = ok(c.items(), "items")?;
    let want = vec![
        ("a".to_owned(), vec![1, 0, 255]),
        ("b".to_owned(), b"2".to_vec()),
    ];
    check(items == want, || format!("items: {items:?}"))?;
    check(ok(c.del("b"), "del b")?, || {
        "del of a live key said false".into()
    })?;
    check(!ok(c.del("b"), "del b again")?, || {
        "del of a deleted key said true".into()
    })?;
    check(!ok(c.exists("b"), "exists b after del")?, || {
        "b exists after del".into()
    })?;
    let flushed = ok(c.flush(), "flush")?;
    check(flushed == 1, || format!("flush removed {flushed}, not 1"))?;
    let n = ok(c.count(), "count after flush")?;
    check(n == 0, || format!("count after flush: {n}"))?;
    let kept = ok(other.get("a"), "get a in the other namespace")?;
    check(kept.as_deref() == Some(&b"other"[..]), || {
        format!("flush of one namespace touched another: {kept:?}")
    })?;
    // A value far above a control request's frame limit still fits an
    // instance's frames, both ways.
    let big = vec![7u8; 512 << 10];
    ok(c.set("big", &big), "set a 512 KiB value")?;
    let got = ok(c.get("big"), "get the 512 KiB value")?;
    check(got.as_deref() == Some(&big[..]), || {
        format!(
            "the 512 KiB value came back as {:?} bytes",
            got.map(|v| v.len())
        )
    })?;
    ok(c.flush(), "flush the big value")?;
    ok(other.flush(), "flush the other namespace").map(drop)
}

/// An entry with a time to live is there until it expires, then gone
/// everywhere; a plain set clears a time to live.
pub fn cache_ttl(t: &str) -> Outcome {
    let c = ally::cache(&format!("suite-{t}-ttl"));
    let ttl = Duration::from_millis(300);
    let set_at = Instant::now();
    ok(c.set_with_ttl("short", b"v", ttl), "set with a ttl")?;
    ok(
        c.set_with_ttl("long", b"v", Duration::from_secs(3600)),
        "set with 1h ttl",
    )?;
    ok(
        c.set_with_ttl("cleared", b"v", ttl),
        "set cleared with a ttl",
    )?;
    ok(c.set("cleared", b"w"), "set cleared without a ttl")?;
    let present = ok(c.exists("short"), "exists short")?;
    check(present || set_at.elapsed() >= ttl, || {
        format!(
            "an entry with a {ttl:?} ttl was gone after {:?}",
            set_at.elapsed()
        )
    })?;
    check(
        eventually(SOON, || c.get("short").is_ok_and(|v| v.is_none())),
        || format!("an entry with a {ttl:?} ttl still there after {SOON:?}"),
    )?;
    let gone_after = set_at.elapsed();
    check(gone_after >= ttl, || {
        format!("an entry with a {ttl:?} ttl expired after {gone_after:?}")
    })?;
    let keys = ok(c.keys(), "keys after expiry")?;
    check(keys == ["cleared", "long"], || {
        format!("keys after expiry: {keys:?}")
    })?;
    let n = ok(c.count(), "count after expiry")?;
    check(n == 2, || format!("count after expiry: {n}"))?;
    check(!ok(c.del("short"), "del expired")?, || {
        "del of an expired entry said true".into()
    })?;
    ok(c.flush(), "flush").map(drop)
}

/// Bad names, times to live, sizes and overflows are refused with the
/// documented kinds, and change nothing.
pub fn refusals(t: &str) -> Outcome {
    use io::ErrorKind::InvalidInput;
    let c = ally::cache(&format!("suite-{t}-refusals"));
    let bad = Some(ErrorCode::BadRequest);
    refused(c.set("", b"v"), InvalidInput, bad, "set of an empty key")?;
    let long = "k".repeat(1025);
    refused(
        c.set(&long, b"v"),
        InvalidInput,
        bad,
        "set of a 1025-byte key",
    )?;
    check(
        ok(c.get(&long), "get of a 1025-byte key")?.is_none(),
        || "a key too long has a value".into(),
    )?;
    refused(
        ally::cache("").set("k", b"v"),
        InvalidInput,
        bad,
        "set in namespace \"\"",
    )?;
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(400 * 86_400),
        Duration::MAX,
    ] {
        refused(
            c.set_with_ttl("k", b"v", ttl),
            InvalidInput,
            bad,
            &format!("set with ttl {ttl:?}"),
        )?;
    }
    refused(
        c.set("k", vec![0u8; 1 << 20]),
        InvalidInput,
        None,
        "set of a 1 MiB value (more than a frame)",
    )?;
    let n = ok(c.count(), "count after refused sets")?;
    check(n == 0, || format!("refused sets stored {n} entries"))?;

    let a = ally::atomic(&format!("suite-{t}-overflow"));
    ok(a.store(i64::MAX), "store i64::MAX")?;
    refused(
        a.add(1),
        InvalidInput,
        Some(ErrorCode::Overflow),
        "add past i64::MAX",
    )?;
    let v = ok(a.load(), "load after overflow")?;
    check(v == i64::MAX, || {
        format!("overflow changed the value to {v}")
    })?;
    ok(a.store(0), "store 0")?;

    let l = ally::locker(&format!("suite-{t}-not-held"));
    refused(l.unlock(), InvalidInput, bad, "unlock of a lock not held")?;
    refused(l.runlock(), InvalidInput, bad, "runlock of a lock not held")?;
    refused(
        ally::locker(&"l".repeat(1025)).try_lock(None),
        InvalidInput,
        bad,
        "lock with a 1025-byte name",
    )
}

/// add, load, store, swap, compare-and-swap.
pub fn atomic_operations(t: &str) -> Outcome {
    let a = ally::atomic(&format!("suite-{t}-atomic"));
    let v = ok(a.load(), "load of a new atomic")?;
    check(v == 0, || format!("a new atomic is {v}"))?;
    let v = ok(a.add(5), "add 5")?;
    check(v == 5, || format!("add 5 to 0 gave {v}"))?;
    let v = ok(a.add(-7), "add -7")?;
    check(v == -2, || format!("add -7 to 5 gave {v}"))?;
    ok(a.store(10), "store 10")?;
    let old = ok(a.swap(11), "swap 11")?;
    check(old == 10, || format!("swap returned {old}, not 10"))?;
    check(!ok(a.compare_and_swap(10, 12), "cas 10→12")?, || {
        "cas swapped on a mismatch".into()
    })?;
    check(ok(a.compare_and_swap(11, 12), "cas 11→12")?, || {
        "cas did not swap on a match".into()
    })?;
    let v = ok(a.load(), "load")?;
    check(v == 12, || format!("load after cas: {v}"))?;
    ok(a.store(0), "store 0")
}

/// `threads` threads each add 1 to atomic `name` `adds` times; the sum
/// must be exact. Starts the atomic at 0.
pub fn many_adds(name: &str, threads: usize, adds: usize) -> Outcome {
    let a = ally::atomic(name);
    ok(a.store(0), "store 0")?;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let name = name.to_owned();
            thread::spawn(move || -> Outcome {
                let a = ally::atomic(&name);
                for _ in 0..adds {
                    ok(a.add(1), "add 1")?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "an adding thread panicked".to_owned())??;
    }
    let sum = ok(a.load(), "load the sum")?;
    let want = (threads * adds) as i64;
    check(sum == want, || {
        format!("{threads} threads × {adds} adds summed to {sum}, not {want}: updates lost")
    })?;
    ok(a.store(0), "store 0")
}

/// An exclusive hold keeps other threads out; tries fail at once or after
/// their timeout; a waiter gets the lock when it is released; a thread
/// waiting in `lock()` stalls no one else.
pub fn exclusive_lock(t: &str) -> Outcome {
    let name = format!("suite-{t}-excl");
    let l = ally::locker(&name);
    let guard = ok(l.lock(), "lock")?;
    let s = ok(l.state(), "state while held")?;
    check(s.exclusive && s.shared == 0, || {
        format!("state while held: {s:?}")
    })?;
    let (tx, rx) = mpsc::channel::<Result<&str, String>>();
    let contender = {
        let name = name.clone();
        thread::spawn(move || {
            let l = ally::locker(&name);
            let tried = || -> Outcome {
                check(ok(l.try_lock(None), "try_lock")?.is_none(), || {
                    "try_lock of a held lock succeeded".into()
                })?;
                check(ok(l.try_rlock(None), "try_rlock")?.is_none(), || {
                    "try_rlock of an exclusively held lock succeeded".into()
                })?;
                let asked = Instant::now();
                let wait = Duration::from_millis(50);
                check(
                    ok(l.try_lock(Some(wait)), "timed try_lock")?.is_none(),
                    || "timed try_lock of a held lock succeeded".into(),
                )?;
                let waited = asked.elapsed();
                check(waited >= wait, || {
                    format!("try_lock with a {wait:?} timeout gave up after {waited:?}")
                })
            };
            if let Err(e) = tried() {
                let _ = tx.send(Err(e));
                return;
            }
            let _ = tx.send(Ok("waiting"));
            match l.lock() {
                Ok(g) => {
                    let _ = tx.send(Ok("granted"));
                    let _ = tx.send(g.unlock().map(|()| "released").map_err(|e| e.to_string()));
                }
                Err(e) => drop(tx.send(Err(format!("lock after the tries: {e}")))),
            }
        })
    };
    let first = rx
        .recv_timeout(SOON)
        .map_err(|e| format!("contender: {e}"))?;
    check(first? == "waiting", || "contender out of order".into())?;
    check(
        eventually(SOON, || l.state().is_ok_and(|s| s.waiting_exclusive == 1)),
        || "the contender's lock() never showed as waiting".into(),
    )?;
    // A thread blocked in lock() must not stall this one's calls.
    let c = ally::cache(&format!("suite-{t}-excl"));
    ok(
        c.set("k", b"v"),
        "set while another thread waits for a lock",
    )?;
    ok(c.flush(), "flush while another thread waits for a lock")?;
    check(rx.try_recv().is_err(), || {
        "the contender got the lock while it was held".into()
    })?;
    ok(guard.unlock(), "unlock")?;
    for want in ["granted", "released"] {
        let got = rx
            .recv_timeout(SOON)
            .map_err(|e| format!("contender after unlock, expecting {want}: {e}"))??;
        check(got == want, || format!("contender said {got}, not {want}"))?;
    }
    contender
        .join()
        .map_err(|_| "the contender panicked".to_owned())?;
    let s = ok(l.state(), "state after all")?;
    check(s == LockState::default(), || {
        format!("state after all: {s:?}")
    })
}

/// Shared holds add up and keep writers out; a queued writer holds back
/// later readers and goes first; readers queued behind a writer that gives
/// up get in.
pub fn shared_lock(t: &str) -> Outcome {
    let name = format!("suite-{t}-shared");
    let l = ally::locker(&name);
    let r1 = ok(l.rlock(), "rlock")?;
    let r2 = ok(l.try_rlock(None), "try_rlock")?.ok_or("a shared hold kept a reader out")?;
    let s = ok(l.state(), "state with two readers")?;
    check(s.shared == 2 && !s.exclusive, || {
        format!("two readers: {s:?}")
    })?;
    check(ok(l.try_lock(None), "try_lock")?.is_none(), || {
        "try_lock succeeded while read-held".into()
    })?;
    ok(r2.unlock(), "unlock of a read guard")?;

    // A writer queues behind r1, a later reader behind the writer; when r1
    // goes, the writer is served first.
    let (tx, rx) = mpsc::channel::<&str>();
    let writer = {
        let (name, tx) = (name.clone(), tx.clone());
        thread::spawn(move || {
            let g = ally::locker(&name).lock()?;
            let _ = tx.send("writer");
            g.unlock()
        })
    };
    check(
        eventually(SOON, || l.state().is_ok_and(|s| s.waiting_exclusive == 1)),
        || "the writer never showed as waiting".into(),
    )?;
    check(
        ok(l.try_rlock(None), "try_rlock with a writer queued")?.is_none(),
        || "a reader overtook a queued writer".into(),
    )?;
    let reader = {
        let name = name.clone();
        thread::spawn(move || {
            let g = ally::locker(&name).rlock()?;
            let _ = tx.send("reader");
            g.unlock()
        })
    };
    check(
        eventually(SOON, || l.state().is_ok_and(|s| s.waiting_shared == 1)),
        || "the reader behind the writer never showed as waiting".into(),
    )?;
    ok(r1.unlock(), "unlock r1")?;
    for t in [writer, reader] {
        let r = t.join().map_err(|_| "a lock thread panicked".to_owned())?;
        ok(r, "lock, then unlock, in a thread")?;
    }
    let order: Vec<&str> = rx.try_iter().collect();
    check(order == ["writer", "reader"], || {
        format!("served in the order {order:?}, not first come first served")
    })?;

    // A writer that gives up lets in the reader queued behind it, beside
    // the reader holding the lock.
    let r1 = ok(l.rlock(), "rlock")?;
    let patience = Duration::from_secs(1);
    let writer = {
        let name = name.clone();
        thread::spawn(move || {
            ally::locker(&name)
                .try_lock(Some(patience))
                .map(|g| g.is_some())
        })
    };
    check(
        eventually(SOON, || l.state().is_ok_and(|s| s.waiting_exclusive == 1)),
        || "the timed writer never showed as waiting".into(),
    )?;
    let reader = {
        let name = name.clone();
        thread::spawn(move || {
            ally::locker(&name)
                .rlock()
                .and_then(ally::ReadGuard::unlock)
        })
    };
    check(
        eventually(patience, || l.state().is_ok_and(|s| s.waiting_shared == 1)),
        || format!("the reader did not queue behind the writer within its {patience:?}"),
    )?;
    let took = writer
        .join()
        .map_err(|_| "the writer panicked".to_owned())?;
    check(!ok(took, "the writer's timed try_lock")?, || {
        "the writer got a read-held lock".into()
    })?;
    let read = reader
        .join()
        .map_err(|_| "the reader panicked".to_owned())?;
    ok(read, "the reader queued behind the writer that gave up")?;
    ok(r1.unlock(), "unlock r1")?;
    let s = ok(l.state(), "state after all")?;
    check(s == LockState::default(), || {
        format!("state after all: {s:?}")
    })
}

/// Guards release on drop; raw unlocks release forgotten holds and refuse
/// holds that are not there.
pub fn guards_and_raw_unlocks(t: &str) -> Outcome {
    let l = ally::locker(&format!("suite-{t}-guards"));
    {
        let _g = ok(l.lock(), "lock")?;
    }
    {
        let _r = ok(l.rlock(), "rlock")?;
        let s = ok(l.state(), "state with a read guard")?;
        check(s.shared == 1, || format!("read guard: {s:?}"))?;
    }
    let s = ok(l.state(), "state after the guards dropped")?;
    check(s == LockState::default(), || {
        format!("dropped guards left {s:?}")
    })?;
    std::mem::forget(ok(l.lock(), "lock to forget")?);
    check(ok(l.try_lock(None), "try_lock")?.is_none(), || {
        "a forgotten guard's hold is gone".into()
    })?;
    ok(l.unlock(), "raw unlock of a forgotten guard's hold")?;
    refused(
        l.unlock(),
        io::ErrorKind::InvalidInput,
        None,
        "second raw unlock",
    )?;
    std::mem::forget(ok(l.rlock(), "rlock to forget")?);
    std::mem::forget(ok(l.rlock(), "rlock to forget")?);
    ok(l.runlock(), "first raw runlock")?;
    ok(l.runlock(), "second raw runlock")?;
    refused(
        l.runlock(),
        io::ErrorKind::InvalidInput,
        None,
        "third raw runlock",
    )?;
    let g = ok(l.lock(), "lock")?;
    ok(l.unlock(), "raw unlock under a guard")?;
    refused(
        g.unlock(),
        io::ErrorKind::InvalidInput,
        None,
        "guard unlock after a raw unlock",
    )?;
    let s = ok(l.state(), "state after all")?;
    check(s == LockState::default(), || {
        format!("state after all: {s:?}")
    })
}
