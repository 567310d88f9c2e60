//! Tests of [`Store::handle`](super::Store::handle): each state request and
//! the response it gets.

use std::time::{Duration, Instant};

use super::{Handled, Limits, Owner, Store};
use crate::{
    ErrorCode, InstanceRequest as Req, InstanceResponse as Resp, ListenSpec, LockMode, LockState,
    Network, Report,
};

fn s(x: &str) -> String {
    x.to_owned()
}

/// Handles `req`, expecting a state request answered at once with nobody
/// else let in.
fn ask(store: &mut Store, owner: Owner, req: Req, now: Instant) -> Resp {
    let h = store.handle(owner, &req, now).expect("a state request");
    assert_eq!(h.queued, None, "{req:?}");
    assert_eq!(h.granted, vec![], "{req:?}");
    h.reply.expect("an answer")
}

fn lock(name: &str, mode: LockMode, timeout_ms: Option<u64>) -> Req {
    Req::Lock {
        name: s(name),
        mode,
        timeout_ms,
    }
}

#[test]
fn cache_requests() {
    let t = Instant::now();
    let mut st = Store::new(Limits::default());
    let set = |key: &str, value: &[u8], ttl_ms| Req::CacheSet {
        ns: s("n"),
        key: s(key),
        value: value.to_vec(),
        ttl_ms,
    };
    assert_eq!(ask(&mut st, 1, set("a", b"1", None), t), Resp::Done);
    assert_eq!(ask(&mut st, 2, set("b", b"2", Some(1000)), t), Resp::Done);
    let get = |key: &str| Req::CacheGet {
        ns: s("n"),
        key: s(key),
    };
    assert_eq!(
        ask(&mut st, 1, get("b"), t),
        Resp::Value(Some(b"2".to_vec()))
    );
    let later = t + Duration::from_millis(999);
    assert_eq!(
        ask(&mut st, 1, get("b"), later),
        Resp::Value(Some(b"2".to_vec()))
    );
    let expired = t + Duration::from_millis(1000);
    assert_eq!(
        ask(&mut st.clone(), 1, get("b"), expired),
        Resp::Value(None)
    );
    assert_eq!(
        ask(
            &mut st,
            1,
            Req::CacheExists {
                ns: s("n"),
                key: s("a")
            },
            t
        ),
        Resp::Bool(true)
    );
    assert_eq!(
        ask(&mut st, 1, Req::CacheKeys { ns: s("n") }, t),
        Resp::Keys(vec![s("a"), s("b")])
    );
    assert_eq!(
        ask(&mut st, 1, Req::CacheCount { ns: s("n") }, t),
        Resp::Count(2)
    );
    assert_eq!(
        ask(&mut st, 1, Req::CacheItems { ns: s("n") }, expired),
        Resp::Items(vec![(s("a"), b"1".to_vec())])
    );
    assert_eq!(
        ask(
            &mut st,
            1,
            Req::CacheDel {
                ns: s("n"),
                key: s("a")
            },
            t
        ),
        Resp::Bool(true)
    );
    assert_eq!(
        ask(
            &mut st,
            1,
            Req::CacheDel {
                ns: s("n"),
                key: s("a")
            },
            t
        ),
        Resp::Bool(false)
    );
    assert_eq!(ask(&mut st, 1, set("c", b"", None), t), Resp::Done);
    assert_eq!(
        ask(&mut st, 1, Req::CacheFlush { ns: s("n") }, t),
        Resp::Count(1)
    );
    assert_eq!(st.cache.entries(), 0);

    let Resp::Error(e) = ask(&mut st, 1, set("k", b"", Some(0)), t) else {
        panic!("ttl 0 accepted");
    };
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn atomic_requests() {
    let t = Instant::now();
    let mut st = Store::new(Limits::default());
    let name = || s("c");
    let add = |delta| Req::AtomicAdd {
        name: name(),
        delta,
    };
    assert_eq!(ask(&mut st, 1, add(2), t), Resp::Int(2));
    assert_eq!(ask(&mut st, 2, add(-3), t), Resp::Int(-1));
    assert_eq!(
        ask(&mut st, 1, Req::AtomicLoad { name: name() }, t),
        Resp::Int(-1)
    );
    assert_eq!(
        ask(
            &mut st,
            1,
            Req::AtomicStore {
                name: name(),
                value: 9
            },
            t
        ),
        Resp::Done
    );
    assert_eq!(
        ask(
            &mut st,
            1,
            Req::AtomicSwap {
                name: name(),
                value: 10
            },
            t
        ),
        Resp::Int(9)
    );
    let cas = |current, new| Req::AtomicCas {
        name: name(),
        current,
        new,
    };
    assert_eq!(ask(&mut st, 1, cas(9, 11), t), Resp::Bool(false));
    assert_eq!(ask(&mut st, 1, cas(10, i64::MAX), t), Resp::Bool(true));
    let Resp::Error(e) = ask(&mut st, 1, add(1), t) else {
        panic!("overflow not reported");
    };
    assert_eq!(e.code, ErrorCode::Overflow);
    assert_eq!(st.atomics.load("c"), i64::MAX);
}

#[test]
fn lock_requests() {
    let t = Instant::now();
    let mut st = Store::new(Limits::default());
    use LockMode::{Exclusive as X, Shared as S};

    assert_eq!(ask(&mut st, 1, lock("l", X, None), t), Resp::Bool(true));
    // A try on a busy lock answers false at once.
    assert_eq!(ask(&mut st, 2, lock("l", S, Some(0)), t), Resp::Bool(false));
    // A wait, with or without a timeout, is queued without an answer.
    let h = st.handle(2, &lock("l", S, Some(500)), t).unwrap();
    let Handled {
        reply: None,
        queued: Some(r1),
        granted,
    } = h
    else {
        panic!("not queued: {h:?}");
    };
    assert!(granted.is_empty());
    let h = st.handle(3, &lock("l", S, None), t).unwrap();
    let r2 = h.queued.expect("queued");
    assert_eq!(h.reply, None);
    assert_eq!(
        ask(&mut st, 9, Req::LockQueue { name: s("l") }, t),
        Resp::LockState(LockState {
            exclusive: true,
            shared: 0,
            waiting_exclusive: 0,
            waiting_shared: 2,
        })
    );
    // The unlock answers Done and lets both readers in.
    let h = st
        .handle(
            1,
            &Req::Unlock {
                name: s("l"),
                mode: X,
            },
            t,
        )
        .unwrap();
    assert_eq!(
        h,
        Handled {
            reply: Some(Resp::Done),
            queued: None,
            granted: vec![r1, r2],
        }
    );
    // Unlocking what is not held is an error.
    let Resp::Error(e) = ask(
        &mut st,
        1,
        Req::Unlock {
            name: s("l"),
            mode: X,
        },
        t,
    ) else {
        panic!("double unlock accepted");
    };
    assert_eq!(e.code, ErrorCode::BadRequest);
    let Resp::Error(e) = ask(&mut st, 1, lock("", X, None), t) else {
        panic!("empty lock name accepted");
    };
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn failures_become_error_responses() {
    let t = Instant::now();
    let mut st = Store::new(Limits {
        max_entries: 1,
        max_locks: 1,
        max_atomics: 1,
        ..Limits::default()
    });
    let set = |key: &str| Req::CacheSet {
        ns: s("n"),
        key: s(key),
        value: vec![],
        ttl_ms: None,
    };
    assert_eq!(ask(&mut st, 1, set("a"), t), Resp::Done);
    assert_eq!(
        ask(
            &mut st,
            1,
            Req::AtomicAdd {
                name: s("a"),
                delta: 1
            },
            t
        ),
        Resp::Int(1)
    );
    assert_eq!(
        ask(&mut st, 1, lock("a", LockMode::Shared, None), t),
        Resp::Bool(true)
    );
    for req in [
        set("b"),
        Req::AtomicAdd {
            name: s("b"),
            delta: 1,
        },
        lock("b", LockMode::Shared, Some(0)),
    ] {
        match ask(&mut st, 1, req.clone(), t) {
            Resp::Error(e) => assert_eq!(e.code, ErrorCode::LimitExceeded, "{req:?}"),
            other => panic!("{req:?}: {other:?}"),
        }
    }
}

#[test]
fn other_requests_are_not_state_requests() {
    let t = Instant::now();
    let mut st = Store::new(Limits::default());
    let spec = ListenSpec {
        network: Network::Tcp,
        address: s("127.0.0.1:0"),
        mode: None,
    };
    for req in [
        Req::Listen(spec.clone()),
        Req::Unlisten(spec),
        Req::Ready,
        Req::Report(Report::default()),
        Req::Reload,
        Req::Info,
    ] {
        assert_eq!(st.handle(1, &req, t), None, "{req:?}");
    }
}
