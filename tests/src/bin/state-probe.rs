//! `state-probe` — a service that checks the master's shared state from
//! inside an instance, for the `state` end-to-end tests.
//!
//! It prints one `state-probe: ...` line to stderr (the master's log) saying
//! what it found, then reports ready and waits for its stop signal; when a
//! check fails it prints `state-probe: FAILED: <why>` and exits 1 at once,
//! never ready.
//!
//! ```text
//! state-probe                      the whole suite (ally_tests::state_suite)
//! state-probe --write TOKEN        store values for a successor to read
//! state-probe --expect TOKEN       read them (run after --write and a reload)
//! state-probe --ttl                an entry expires at its ttl, not before
//! state-probe --hold-lock NAME     take lock NAME, ignore the stop signal
//! state-probe --wait-lock NAME     ready, then wait for lock NAME; print when
//!                                  queued and when granted (CLOCK_MONOTONIC ns)
//! state-probe --adds THREADS N     THREADS threads × N adds sum exactly
//! state-probe --limit              the 4th cache entry is refused (run with
//!                                  max_cache_entries = 3)
//! state-probe --hostile            refused requests in a loop until stopped
//! state-probe --hold-through-stall NAME
//!                                  take lock NAME, see a request time out
//!                                  (the test stops the master), then check
//!                                  the lock is still held and release it
//! state-probe --fork               fork; the child's use of the library is
//!                                  refused, the parent's goes on
//! state-probe --rounds TOKEN GO ADDR
//!                                  hold a lock, then use the cache, an
//!                                  atomic, another lock and `Listen ADDR` in
//!                                  rounds until stopped, printing `round N
//!                                  ok` (`... after MARK` once file GO holds
//!                                  MARK)
//! ```

use std::io;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use ally::ErrorCode;
use ally_tests::state_suite::{
    Outcome, SOON, check, eventually, many_adds, monotonic_ns, ok, refused, token,
};

/// The value `--write` stores and `--expect` reads.
const WRITTEN: &[u8] = b"written by the predecessor";
/// The counter value `--write` leaves.
const COUNTED: i64 = 42;
/// Time to live of the entry `--write` stores to expire.
const WRITTEN_TTL: Duration = Duration::from_millis(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        [] => ally_tests::state_suite::run().map(|()| "ok".to_owned()),
        ["--write", t] => write(t),
        ["--expect", t] => expect(t),
        ["--ttl"] => ttl(),
        ["--hold-lock", name] => return hold_lock(name),
        ["--wait-lock", name] => return wait_lock(name),
        ["--adds", threads, n] => match (threads.parse(), n.parse()) {
            (Ok(threads), Ok(n)) => adds(threads, n),
            _ => return usage(),
        },
        ["--limit"] => limit(),
        ["--hostile"] => return hostile(),
        ["--hold-through-stall", name] => hold_through_stall(name),
        ["--fork"] => fork(),
        ["--print-loop"] => return print_loop(),
        ["--rounds", t, go, addr] => return rounds(t, go, addr),
        _ => return usage(),
    };
    match outcome {
        Ok(what) => {
            eprintln!("state-probe: {what}");
            serve()
        }
        Err(why) => fail(&why),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: state-probe [--write T | --expect T | --ttl | --hold-lock NAME |");
    eprintln!("       --wait-lock NAME | --adds THREADS N | --limit | --hostile]");
    ExitCode::from(2)
}

fn fail(why: &str) -> ExitCode {
    eprintln!("state-probe: FAILED: {why}");
    ExitCode::FAILURE
}

/// Ready, then wait for the stop signal and exit 0.
fn serve() -> ExitCode {
    let stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => return fail(&format!("stop signal: {e}")),
    };
    if let Err(e) = ally::ready() {
        return fail(&format!("ready: {e}"));
    }
    stop.wait();
    ExitCode::SUCCESS
}

fn write(t: &str) -> Result<String, String> {
    let c = ally::cache(&format!("persist-{t}"));
    ok(c.set("kept", WRITTEN), "set kept")?;
    ok(
        c.set_with_ttl("expiring", WRITTEN, WRITTEN_TTL),
        "set expiring",
    )?;
    let a = ally::atomic(&format!("persist-{t}"));
    ok(a.store(0), "store 0")?;
    for _ in 0..COUNTED {
        ok(a.add(1), "add 1")?;
    }
    Ok("wrote".to_owned())
}

fn expect(t: &str) -> Result<String, String> {
    let c = ally::cache(&format!("persist-{t}"));
    let kept = ok(c.get("kept"), "get kept")?;
    check(kept.as_deref() == Some(WRITTEN), || {
        format!("the predecessor's value is {kept:?}")
    })?;
    check(
        eventually(SOON, || c.exists("expiring").is_ok_and(|e| !e)),
        || format!("the predecessor's entry with a {WRITTEN_TTL:?} ttl never expired"),
    )?;
    let keys = ok(c.keys(), "keys")?;
    check(keys == ["kept"], || format!("keys: {keys:?}"))?;
    let a = ally::atomic(&format!("persist-{t}"));
    let v = ok(a.load(), "load the counter")?;
    check(v == COUNTED, || {
        format!("the predecessor's counter is {v}, not {COUNTED}")
    })?;
    let v = ok(a.add(1), "add to the counter")?;
    check(v == COUNTED + 1, || format!("add 1 gave {v}"))?;
    Ok("expect ok".to_owned())
}

fn ttl() -> Result<String, String> {
    let c = ally::cache(&format!("ttl-{}", token()));
    let ttl = Duration::from_millis(500);
    let set_at = std::time::Instant::now();
    ok(c.set_with_ttl("k", b"v", ttl), "set with a ttl")?;
    let there = ok(c.get("k"), "get")?.is_some();
    check(there || set_at.elapsed() >= ttl, || {
        format!("gone {:?} after a set with a {ttl:?} ttl", set_at.elapsed())
    })?;
    check(
        eventually(SOON, || c.get("k").is_ok_and(|v| v.is_none())),
        || format!("still there {SOON:?} after a set with a {ttl:?} ttl"),
    )?;
    let gone = set_at.elapsed();
    check(gone >= ttl, || {
        format!("expired after {gone:?}, before its {ttl:?} ttl")
    })?;
    let n = ok(c.count(), "count")?;
    check(n == 0, || format!("count after expiry: {n}"))?;
    Ok(format!("ttl ok, gone after {} ms", gone.as_millis()))
}

/// Takes the lock and keeps it until killed: the stop signal is caught and
/// ignored, so only SIGKILL ends this instance.
fn hold_lock(name: &str) -> ExitCode {
    let _stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => return fail(&format!("stop signal: {e}")),
    };
    match ally::locker(name).lock() {
        Ok(guard) => std::mem::forget(guard),
        Err(e) => return fail(&format!("lock {name}: {e}")),
    }
    eprintln!("state-probe: holding {name}");
    if let Err(e) = ally::ready() {
        return fail(&format!("ready: {e}"));
    }
    loop {
        thread::park();
    }
}

/// Takes lock `name`, then asks the master for something every few
/// milliseconds until one request times out (the test stops the master
/// for longer than `request_timeout`) and a later one is answered again;
/// then the lock must still be held, and its guard releases it.
fn hold_through_stall(name: &str) -> Result<String, String> {
    let guard = ok(ally::locker(name).lock(), "lock")?;
    eprintln!("state-probe: holding {name}");
    let probe = ally::cache("stall");
    let mut timed_out = 0;
    loop {
        match probe.get("k") {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => timed_out += 1,
            Err(e) => return Err(format!("cache get: {e}")),
            Ok(_) if timed_out > 0 => break,
            Ok(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    eprintln!("state-probe: {timed_out} request(s) timed out while the master was stopped");
    let state = ok(ally::locker(name).state(), "lock state")?;
    check(state.exclusive, || format!("{name} was lost: {state:?}"))?;
    ok(guard.unlock(), "unlock")?;
    Ok(format!("{name} was held through the stall and released"))
}

/// Ready, then prints lines on stdout and stderr without pause until the
/// stop signal, then a few more while "draining", and exits 0: an instance
/// whose output outlives its master (the attack review's EPIPE case).
fn print_loop() -> ExitCode {
    let stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => return fail(&format!("stop signal: {e}")),
    };
    if let Err(e) = ally::ready() {
        return fail(&format!("ready: {e}"));
    }
    let mut n = 0u64;
    while !stop.is_set() {
        n += 1;
        println!("state-probe: line {n}");
        eprintln!("state-probe: err line {n}");
    }
    for i in 0..100 {
        println!("state-probe: draining {i}");
        eprintln!("state-probe: draining {i}");
    }
    ExitCode::SUCCESS
}

/// Takes a lock and keeps it, listens on `addr` (TCP), then goes round the
/// library's calls until the stop signal, every one of which must work:
/// for the tests that upgrade the master meanwhile.
fn rounds(t: &str, go: &str, addr: &str) -> ExitCode {
    let stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => return fail(&format!("stop signal: {e}")),
    };
    let held = format!("held-{t}");
    let setup = (|| {
        ok(ally::cache(t).set("kept", WRITTEN), "set kept")?;
        ok(ally::atomic(t).store(0), "store 0")?;
        let guard = ok(ally::locker(&held).lock(), "lock")?;
        let listener = ok(ally::listen_tcp(addr), "listen")?;
        let addr = ok(listener.local_addr(), "local address")?;
        Ok::<_, String>((guard, listener, addr))
    })();
    let (guard, _listener, addr) = match setup {
        Ok(setup) => setup,
        Err(why) => return fail(&why),
    };
    if let Err(e) = ally::ready() {
        return fail(&format!("ready: {e}"));
    }
    eprintln!("state-probe: rounds holding {held}, listening on {addr}");
    let mut n = 0;
    while !stop.is_set() {
        n += 1;
        if let Err(why) = round(t, n, &held, addr) {
            return fail(&format!("round {n}: {why}"));
        }
        match std::fs::read_to_string(go) {
            Ok(mark) => eprintln!("state-probe: round {n} ok after {}", mark.trim()),
            Err(_) => eprintln!("state-probe: round {n} ok"),
        }
        thread::sleep(Duration::from_millis(20));
    }
    drop(guard);
    ExitCode::SUCCESS
}

/// Round `n` of [`rounds`]: the cache entry and the lock `held` are still
/// there, the atomic counts `n`, another lock is taken and given back, and
/// `Listen` on `addr` again gives the same, working socket.
fn round(t: &str, n: i64, held: &str, addr: std::net::SocketAddr) -> Outcome {
    let kept = ok(ally::cache(t).get("kept"), "get kept")?;
    check(kept.as_deref() == Some(WRITTEN), || {
        format!("kept is {kept:?}")
    })?;
    let v = ok(ally::atomic(t).add(1), "add 1")?;
    check(v == n, || format!("the counter is {v}, not {n}"))?;
    let state = ok(ally::locker(held).state(), "lock state")?;
    check(state.exclusive, || format!("{held} was lost: {state:?}"))?;
    let guard = ok(ally::locker(&format!("round-{t}")).lock(), "lock a round")?;
    ok(guard.unlock(), "unlock the round")?;
    let again = ok(ally::listen_tcp(&addr.to_string()), "listen again")?;
    let local = ok(again.local_addr(), "local address")?;
    check(local == addr, || {
        format!("listening on {local}, not {addr}")
    })?;
    let _client = ok(std::net::TcpStream::connect(addr), "connect")?;
    ok(again.accept(), "accept")?;
    Ok(())
}

/// Forks (after the library has its channel): the child's first call is
/// refused as a fork's, and the parent's calls go on.
fn fork() -> Result<String, String> {
    ok(ally::instance(), "instance")?;
    // SAFETY: the only other thread (the library's channel watcher) waits
    // in poll(2) holding no lock, so the child may allocate; it makes one
    // library call, which fails at its pid check, and leaves with _exit(2).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let refused = matches!(
            ally::atomic("forked").load().map_err(|e| e.kind()),
            Err(io::ErrorKind::PermissionDenied)
        );
        // SAFETY: exits the forked child at once, running no destructor of
        // the parent's state.
        unsafe { libc::_exit(if refused { 0 } else { 1 }) };
    }
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is writable.
    if unsafe { libc::waitpid(pid, &raw mut status, 0) } != pid {
        return Err(format!("waitpid: {}", io::Error::last_os_error()));
    }
    check(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        || format!("the forked child's library call was not refused as a fork's (status {status})"),
    )?;
    ok(ally::atomic("forked").add(1), "add in the parent")?;
    Ok("a forked child was refused and the parent went on".to_owned())
}

/// Ready first, then waits for the lock; a second thread reports when the
/// wait is queued at the master (and shows that a thread blocked in
/// `lock()` stalls no other).
fn wait_lock(name: &str) -> ExitCode {
    let stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => return fail(&format!("stop signal: {e}")),
    };
    if let Err(e) = ally::ready() {
        return fail(&format!("ready: {e}"));
    }
    let watched = name.to_owned();
    thread::spawn(move || {
        let l = ally::locker(&watched);
        if eventually(SOON, || l.state().is_ok_and(|s| s.waiting_exclusive >= 1)) {
            eprintln!("state-probe: queued for {watched}");
        } else {
            eprintln!("state-probe: FAILED: the wait for {watched} never showed as queued");
        }
    });
    let guard = match ally::locker(name).lock() {
        Ok(guard) => guard,
        Err(e) => return fail(&format!("lock {name}: {e}")),
    };
    let at = monotonic_ns();
    eprintln!("state-probe: granted {name} at {at}");
    stop.wait();
    drop(guard);
    ExitCode::SUCCESS
}

fn adds(threads: usize, n: usize) -> Result<String, String> {
    let name = format!("adds-{}", token());
    let started = std::time::Instant::now();
    many_adds(&name, threads, n)?;
    Ok(format!(
        "adds ok: {} in {} ms",
        threads * n,
        started.elapsed().as_millis()
    ))
}

/// Under `max_cache_entries = 3`: three entries fit, the fourth is refused
/// and stored nowhere, and replacing an entry still works.
fn limit() -> Result<String, String> {
    let c = ally::cache("limited");
    for key in ["a", "b", "c"] {
        ok(c.set(key, b"v"), &format!("set {key} within the limit"))?;
    }
    refused(
        c.set("d", b"v"),
        io::ErrorKind::QuotaExceeded,
        Some(ErrorCode::LimitExceeded),
        "set of a 4th entry under max_cache_entries = 3",
    )?;
    check(ok(c.get("d"), "get d")?.is_none(), || {
        "the refused entry was stored".into()
    })?;
    ok(c.set("a", b"replaced"), "replace an entry at the limit")?;
    check(ok(c.del("c"), "del c")?, || "del c said false".into())?;
    ok(c.set("d", b"v"), "set d after making room")?;
    Ok("limit ok".to_owned())
}

/// Sends requests a master must refuse, in rounds, until the stop signal:
/// huge keys and values, absurd times to live, an unlock storm of locks
/// never held, an absurd lock timeout. Every one must be refused and the
/// connection must keep working.
fn hostile() -> ExitCode {
    let stop = match ally::stop_signal() {
        Ok(stop) => stop,
        Err(e) => return fail(&format!("stop signal: {e}")),
    };
    if let Err(e) = ally::ready() {
        return fail(&format!("ready: {e}"));
    }
    let mut rounds = 0u64;
    while !stop.is_set() {
        if let Err(why) = hostile_round(rounds) {
            return fail(&format!("round {}: {why}", rounds + 1));
        }
        rounds += 1;
        if rounds == 1 {
            eprintln!("state-probe: hostile round 1 ok");
        }
    }
    eprintln!("state-probe: hostile stopped after {rounds} rounds, every request refused");
    ExitCode::SUCCESS
}

fn hostile_round(round: u64) -> Outcome {
    use io::ErrorKind::InvalidInput;
    let bad = Some(ErrorCode::BadRequest);
    let c = ally::cache("hostile");
    refused(
        c.set(&"k".repeat(1025), b"v"),
        InvalidInput,
        bad,
        "1025-byte key",
    )?;
    refused(
        c.set(&"k".repeat(900_000), b"v"),
        InvalidInput,
        bad,
        "900 kB key",
    )?;
    refused(
        c.set("k", vec![0u8; 2 << 20]),
        InvalidInput,
        None,
        "2 MiB value",
    )?;
    check(
        ok(c.get(&"k".repeat(900_000)), "get of a 900 kB key")?.is_none(),
        || "a 900 kB key has a value".into(),
    )?;
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(10 * 365 * 86_400),
        Duration::MAX,
    ] {
        refused(
            c.set_with_ttl("k", b"v", ttl),
            InvalidInput,
            bad,
            &format!("ttl {ttl:?}"),
        )?;
    }
    refused(
        ally::locker(&"l".repeat(2000)).try_lock(None),
        InvalidInput,
        bad,
        "2000-byte lock name",
    )?;
    let a = ally::atomic("hostile");
    ok(a.store(i64::MIN), "store i64::MIN")?;
    refused(
        a.add(-1),
        InvalidInput,
        Some(ErrorCode::Overflow),
        "add past i64::MIN",
    )?;
    ok(a.store(0), "store 0")?;
    // The unlock storm: locks never held, from several threads.
    let stormers: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || -> Outcome {
                for j in 0..100 {
                    let l = ally::locker(&format!("never-held-{round}-{i}-{j}"));
                    refused(l.unlock(), InvalidInput, bad, "unlock of a lock never held")?;
                    refused(
                        l.runlock(),
                        InvalidInput,
                        bad,
                        "runlock of a lock never held",
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for s in stormers {
        s.join()
            .map_err(|_| "a storm thread panicked".to_owned())??;
    }
    // A wait with an absurd timeout is queued, then granted normally.
    let l = ally::locker("hostile-forever");
    let held = ok(l.lock(), "lock")?;
    let waiter = thread::spawn(|| {
        ally::locker("hostile-forever")
            .try_lock(Some(Duration::MAX))
            .map(|g| g.map(ally::LockGuard::unlock))
    });
    check(
        eventually(SOON, || l.state().is_ok_and(|s| s.waiting_exclusive == 1)),
        || "a wait with timeout Duration::MAX never showed as queued".into(),
    )?;
    ok(held.unlock(), "unlock")?;
    let got = waiter
        .join()
        .map_err(|_| "the waiter panicked".to_owned())?;
    match ok(got, "try_lock with timeout Duration::MAX")? {
        Some(unlocked) => ok(unlocked, "unlock of the waiter's guard")?,
        None => return Err("a wait with timeout Duration::MAX gave up".into()),
    }
    // After all that, the connection still works.
    ok(c.set("k", b"fine"), "a plain set after the refusals")?;
    let v = ok(c.get("k"), "a plain get after the refusals")?;
    check(v.as_deref() == Some(&b"fine"[..]), || format!("get: {v:?}"))
}
