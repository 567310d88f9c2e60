//! A sequence of shared-state operations from several owners against
//! `Store::handle`, with a fake clock, checked against a model: the cache
//! answers as a plain map of live entries would, atomics as a map of
//! integers, and the locker's holds, queues and tickets stay consistent.
//! Limits are tiny so that every limit is reached.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ally_proto::state::{Limits, Owner, Store, Ticket};
use ally_proto::{ErrorCode, InstanceRequest as Req, InstanceResponse as Resp, LockMode};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Names the operations use: the empty name and one too long for the
/// limit below are invalid.
const NAMES: [&str; 5] = ["a", "b", "cd", "", "toolong"];
const MAX_NAME_LEN: usize = 4;
const OWNERS: u64 = 3;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Name(u8);

impl Name {
    fn get(self) -> &'static str {
        NAMES[usize::from(self.0) % NAMES.len()]
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mode {
    Exclusive,
    Shared,
}

impl From<Mode> for LockMode {
    fn from(m: Mode) -> LockMode {
        match m {
            Mode::Exclusive => LockMode::Exclusive,
            Mode::Shared => LockMode::Shared,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Set { ns: Name, key: Name, len: u8, fill: u8, ttl_ms: Option<u16> },
    Get { ns: Name, key: Name },
    Del { ns: Name, key: Name },
    Exists { ns: Name, key: Name },
    Keys { ns: Name },
    Count { ns: Name },
    Items { ns: Name },
    Flush { ns: Name },
    Add { name: Name, delta: i64 },
    Load { name: Name },
    Store { name: Name, value: i64 },
    Swap { name: Name, value: i64 },
    Cas { name: Name, current: i64, new: i64 },
    Lock { name: Name, mode: Mode, try_only: bool },
    Unlock { name: Name, mode: Mode },
    LockQueue { name: Name },
    NotState,
    Advance { ms: u16 },
    Sweep { max: u8 },
    Withdraw { index: u8 },
    ReleaseOwner,
}

#[derive(Arbitrary, Debug)]
struct Step {
    owner: u8,
    op: Op,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_entries: u8,
    max_bytes: u8,
    max_atomics: u8,
    max_locks: u8,
    steps: Vec<Step>,
}

/// The model of the cache: live and expired entries with their deadlines.
#[derive(Default)]
struct CacheModel {
    entries: BTreeMap<(String, String), (Vec<u8>, Option<Instant>)>,
}

impl CacheModel {
    fn live(&self, now: Instant) -> impl Iterator<Item = (&(String, String), &Vec<u8>)> {
        self.entries
            .iter()
            .filter(move |(_, (_, at))| at.is_none_or(|at| now < at))
            .map(|(k, (v, _))| (k, v))
    }

    fn get(&self, ns: &str, key: &str, now: Instant) -> Option<Vec<u8>> {
        let (value, at) = self.entries.get(&(ns.to_owned(), key.to_owned()))?;
        at.is_none_or(|at| now < at).then(|| value.clone())
    }

    fn items(&self, ns: &str, now: Instant) -> Vec<(String, Vec<u8>)> {
        self.live(now)
            .filter(|((n, _), _)| n == ns)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The model of the locks: who holds what, and which requests wait.
#[derive(Default)]
struct LockModel {
    /// (lock, owner) → (exclusive, shared count).
    holds: BTreeMap<(String, Owner), (bool, u64)>,
    /// Queued tickets, in the order they were issued.
    waiting: BTreeMap<Ticket, (String, Owner, LockMode)>,
    /// Every ticket ever issued.
    issued: BTreeSet<Ticket>,
}

impl LockModel {
    fn hold(&mut self, name: &str, owner: Owner, mode: LockMode) {
        let h = self.holds.entry((name.to_owned(), owner)).or_default();
        match mode {
            LockMode::Exclusive => {
                assert!(!h.0, "{owner} granted {name:?} exclusively twice");
                h.0 = true;
            }
            LockMode::Shared => h.1 += 1,
        }
        self.check_lock(name);
    }

    fn grant(&mut self, tickets: &[Ticket]) {
        for t in tickets {
            let (name, owner, mode) = self
                .waiting
                .remove(t)
                .unwrap_or_else(|| panic!("ticket {t} granted but not waiting"));
            self.hold(&name, owner, mode);
        }
    }

    /// Exclusive excludes every other hold.
    fn check_lock(&self, name: &str) {
        let (mut excl, mut shared) = (0, 0);
        for ((n, _), (e, s)) in &self.holds {
            if n == name {
                excl += u64::from(*e);
                shared += s;
            }
        }
        assert!(excl <= 1 && (excl == 0 || shared == 0), "lock {name:?}: {excl} writers, {shared} readers");
    }

    fn holds(&self, name: &str, owner: Owner, mode: LockMode) -> bool {
        self.holds.get(&(name.to_owned(), owner)).is_some_and(|&(e, s)| match mode {
            LockMode::Exclusive => e,
            LockMode::Shared => s > 0,
        })
    }

    fn release(&mut self, name: &str, owner: Owner, mode: LockMode) {
        let key = (name.to_owned(), owner);
        let h = self.holds.get_mut(&key).unwrap();
        match mode {
            LockMode::Exclusive => h.0 = false,
            LockMode::Shared => h.1 -= 1,
        }
        if *h == (false, 0) {
            self.holds.remove(&key);
        }
    }
}

fn code(resp: &Resp) -> Option<ErrorCode> {
    match resp {
        Resp::Error(f) => Some(f.code),
        _ => None,
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN
}

fuzz_target!(|input: Input| {
    let limits = Limits {
        max_entries: usize::from(input.max_entries % 8),
        max_bytes: usize::from(input.max_bytes % 64),
        max_name_len: MAX_NAME_LEN,
        max_ttl: Duration::from_millis(5000),
        max_atomics: usize::from(input.max_atomics % 4),
        max_locks: usize::from(input.max_locks % 4),
    };
    let start = Instant::now();
    let mut now = start;
    let mut store = Store::new(limits);
    let mut cache = CacheModel::default();
    let mut atomics: BTreeMap<String, i64> = BTreeMap::new();
    let mut locks = LockModel::default();

    for (i, step) in input.steps.iter().take(128).enumerate() {
        let deep = i % 8 == 7;
        let owner = Owner::from(step.owner) % OWNERS;
        let req = match step.op {
            Op::Set { ns, key, len, fill, ttl_ms } => Req::CacheSet {
                ns: ns.get().into(),
                key: key.get().into(),
                value: vec![fill; usize::from(len % 24)],
                ttl_ms: ttl_ms.map(|t| u64::from(t % 6000)),
            },
            Op::Get { ns, key } => Req::CacheGet { ns: ns.get().into(), key: key.get().into() },
            Op::Del { ns, key } => Req::CacheDel { ns: ns.get().into(), key: key.get().into() },
            Op::Exists { ns, key } => Req::CacheExists { ns: ns.get().into(), key: key.get().into() },
            Op::Keys { ns } => Req::CacheKeys { ns: ns.get().into() },
            Op::Count { ns } => Req::CacheCount { ns: ns.get().into() },
            Op::Items { ns } => Req::CacheItems { ns: ns.get().into() },
            Op::Flush { ns } => Req::CacheFlush { ns: ns.get().into() },
            Op::Add { name, delta } => Req::AtomicAdd { name: name.get().into(), delta },
            Op::Load { name } => Req::AtomicLoad { name: name.get().into() },
            Op::Store { name, value } => Req::AtomicStore { name: name.get().into(), value },
            Op::Swap { name, value } => Req::AtomicSwap { name: name.get().into(), value },
            Op::Cas { name, current, new } => Req::AtomicCas { name: name.get().into(), current, new },
            Op::Lock { name, mode, try_only } => Req::Lock {
                name: name.get().into(),
                mode: mode.into(),
                timeout_ms: Some(if try_only { 0 } else { 1000 }),
            },
            Op::Unlock { name, mode } => Req::Unlock { name: name.get().into(), mode: mode.into() },
            Op::LockQueue { name } => Req::LockQueue { name: name.get().into() },
            Op::NotState => Req::Ready,
            Op::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms % 2000));
                check(&store, &cache, &atomics, &locks, limits, now, deep);
                continue;
            }
            Op::Sweep { max } => {
                store.cache.sweep(now, usize::from(max % 4));
                check(&store, &cache, &atomics, &locks, limits, now, deep);
                continue;
            }
            Op::Withdraw { index } => {
                let ticket = locks
                    .waiting
                    .keys()
                    .nth(usize::from(index) % (locks.waiting.len() + 1))
                    .copied()
                    // One past the waiting ones: a ticket granted or never issued.
                    .unwrap_or(u64::from(index));
                let granted = store.locker.withdraw(ticket);
                if locks.waiting.remove(&ticket).is_none() {
                    assert!(granted.is_empty(), "withdrawing a non-waiting ticket granted {granted:?}");
                }
                locks.grant(&granted);
                check(&store, &cache, &atomics, &locks, limits, now, deep);
                continue;
            }
            Op::ReleaseOwner => {
                let granted = store.locker.release_owner(owner);
                locks.holds.retain(|(_, o), _| *o != owner);
                locks.waiting.retain(|_, (_, o, _)| *o != owner);
                locks.grant(&granted);
                check(&store, &cache, &atomics, &locks, limits, now, deep);
                continue;
            }
        };

        let Some(handled) = store.handle(owner, &req, now) else {
            assert!(matches!(req, Req::Ready));
            continue;
        };
        if !matches!(req, Req::Lock { .. } | Req::Unlock { .. }) {
            assert!(handled.queued.is_none() && handled.granted.is_empty());
        }
        let reply = handled.reply.clone();
        match &req {
            Req::CacheSet { ns, key, value, ttl_ms } => {
                let reply = reply.unwrap();
                let names = name_ok(ns) && name_ok(key);
                let ttl = ttl_ms.map(Duration::from_millis);
                let ttl_ok = ttl.is_none_or(|t| t >= Duration::from_millis(1) && t <= limits.max_ttl);
                let size = ns.len() + key.len() + value.len();
                let k = (ns.clone(), key.clone());
                let live: Vec<_> = cache.live(now).filter(|(kk, _)| **kk != k).collect();
                let bytes: usize = live.iter().map(|((n, kk), v)| n.len() + kk.len() + v.len()).sum();
                let fits = live.len() < limits.max_entries && bytes + size <= limits.max_bytes;
                match (names && ttl_ok, fits) {
                    (false, _) => assert_eq!(code(&reply), Some(ErrorCode::BadRequest), "{req:?}"),
                    (true, false) => assert_eq!(code(&reply), Some(ErrorCode::LimitExceeded), "{req:?}: {reply:?}"),
                    (true, true) => {
                        assert_eq!(reply, Resp::Done, "{req:?}");
                        cache.entries.insert(k, (value.clone(), ttl.map(|t| now + t)));
                    }
                }
            }
            Req::CacheGet { ns, key } => {
                assert_eq!(reply, Some(Resp::Value(cache.get(ns, key, now))));
            }
            Req::CacheExists { ns, key } => {
                assert_eq!(reply, Some(Resp::Bool(cache.get(ns, key, now).is_some())));
            }
            Req::CacheDel { ns, key } => {
                let was = cache.get(ns, key, now).is_some();
                cache.entries.remove(&(ns.clone(), key.clone()));
                assert_eq!(reply, Some(Resp::Bool(was)));
            }
            Req::CacheKeys { ns } => {
                let keys = cache.items(ns, now).into_iter().map(|(k, _)| k).collect();
                assert_eq!(reply, Some(Resp::Keys(keys)));
            }
            Req::CacheCount { ns } => {
                assert_eq!(reply, Some(Resp::Count(cache.items(ns, now).len() as u64)));
            }
            Req::CacheItems { ns } => {
                assert_eq!(reply, Some(Resp::Items(cache.items(ns, now))));
            }
            Req::CacheFlush { ns } => {
                let live = cache.items(ns, now).len() as u64;
                cache.entries.retain(|(n, _), _| n != ns);
                assert_eq!(reply, Some(Resp::Count(live)));
            }
            Req::AtomicLoad { name } => {
                assert_eq!(reply, Some(Resp::Int(atomics.get(name).copied().unwrap_or(0))));
            }
            Req::AtomicAdd { name, .. }
            | Req::AtomicStore { name, .. }
            | Req::AtomicSwap { name, .. }
            | Req::AtomicCas { name, .. } => {
                let reply = reply.unwrap();
                let old = atomics.get(name).copied().unwrap_or(0);
                let (new, expected) = match req {
                    Req::AtomicAdd { delta, .. } => match old.checked_add(delta) {
                        Some(new) => (new, Resp::Int(new)),
                        None => (old, Resp::Error(ally_proto::Failure::new(ErrorCode::Overflow, ""))),
                    },
                    Req::AtomicStore { value, .. } => (value, Resp::Done),
                    Req::AtomicSwap { value, .. } => (value, Resp::Int(old)),
                    Req::AtomicCas { current, new, .. } if current == old => (new, Resp::Bool(true)),
                    Req::AtomicCas { .. } => (old, Resp::Bool(false)),
                    _ => unreachable!(),
                };
                let room = atomics.contains_key(name.as_str()) || new == 0 || atomics.len() < limits.max_atomics;
                if !name_ok(name) {
                    assert_eq!(code(&reply), Some(ErrorCode::BadRequest), "{req:?}");
                } else if code(&expected) == Some(ErrorCode::Overflow) {
                    assert_eq!(code(&reply), Some(ErrorCode::Overflow), "{req:?}");
                } else if new != old && !room {
                    assert_eq!(code(&reply), Some(ErrorCode::LimitExceeded), "{req:?}: {reply:?}");
                } else {
                    assert_eq!(reply, expected, "{req:?}");
                    if new == 0 {
                        atomics.remove(name.as_str());
                    } else {
                        atomics.insert(name.clone(), new);
                    }
                }
            }
            Req::Lock { name, mode, timeout_ms } => {
                let in_use = locks.holds.keys().map(|(n, _)| n.clone())
                    .chain(locks.waiting.values().map(|(n, _, _)| n.clone()))
                    .collect::<BTreeSet<_>>();
                assert!(handled.granted.is_empty());
                if !name_ok(name) {
                    assert_eq!(reply.as_ref().and_then(code), Some(ErrorCode::BadRequest));
                } else if !in_use.contains(name) && in_use.len() >= limits.max_locks {
                    assert_eq!(reply.as_ref().and_then(code), Some(ErrorCode::LimitExceeded), "{reply:?}");
                } else {
                    match (&reply, handled.queued) {
                        (Some(Resp::Bool(true)), None) => locks.hold(name, owner, *mode),
                        (Some(Resp::Bool(false)), None) => assert_eq!(*timeout_ms, Some(0)),
                        (None, Some(ticket)) => {
                            assert_ne!(*timeout_ms, Some(0), "a try queued");
                            assert!(locks.issued.insert(ticket), "ticket {ticket} issued twice");
                            locks.waiting.insert(ticket, (name.clone(), owner, *mode));
                        }
                        other => panic!("{req:?} answered {other:?}"),
                    }
                    // A free lock nobody waits for is granted at once.
                    if !in_use.contains(name) {
                        assert_eq!(reply, Some(Resp::Bool(true)), "{req:?} on a free lock");
                    }
                }
            }
            Req::Unlock { name, mode } => {
                if locks.holds(name, owner, *mode) {
                    assert_eq!(reply, Some(Resp::Done), "{req:?}");
                    locks.release(name, owner, *mode);
                    locks.grant(&handled.granted);
                } else {
                    assert_eq!(reply.as_ref().and_then(code), Some(ErrorCode::BadRequest), "{req:?}");
                    assert!(handled.granted.is_empty());
                }
            }
            Req::LockQueue { .. } => assert!(matches!(reply, Some(Resp::LockState(_)))),
            _ => unreachable!(),
        }
        check(&store, &cache, &atomics, &locks, limits, now, deep);
    }
    check_cache(&store, &cache, now);
});

/// Checks what the public API shows against the models, on a copy of the
/// store so that lazy expiry is not forced on the real one.
fn check(
    store: &Store,
    cache: &CacheModel,
    atomics: &BTreeMap<String, i64>,
    locks: &LockModel,
    limits: Limits,
    now: Instant,
    deep: bool,
) {
    assert!(store.cache.entries() <= limits.max_entries);
    assert!(store.cache.bytes() <= limits.max_bytes);
    assert!(store.cache.entries() >= cache.live(now).count());
    if let Some(next) = store.cache.next_expiry() {
        assert!(cache.entries.values().any(|(_, at)| *at == Some(next)));
    }
    if deep {
        check_cache(store, cache, now);
    }

    assert!(store.atomics.in_use() <= limits.max_atomics);
    assert_eq!(store.atomics.in_use(), atomics.len());
    for name in NAMES {
        assert_eq!(store.atomics.load(name), atomics.get(name).copied().unwrap_or(0));
    }

    assert!(store.locker.in_use() <= limits.max_locks);
    let mut in_use = 0;
    for name in NAMES {
        let state = store.locker.state(name);
        assert!(!(state.exclusive && state.shared > 0), "{name:?}: {state:?}");
        let waiting = state.waiting_exclusive + state.waiting_shared;
        if waiting > 0 {
            assert!(state.exclusive || state.shared > 0, "{name:?} is free but has waiters: {state:?}");
        }
        let held: Vec<_> = locks.holds.iter().filter(|((n, _), _)| n == name).collect();
        assert_eq!(state.exclusive, held.iter().any(|(_, (e, _))| *e), "{name:?}");
        assert_eq!(u64::from(state.shared), held.iter().map(|(_, (_, s))| s).sum::<u64>(), "{name:?}");
        let queued = |mode| locks.waiting.values().filter(|(n, _, m)| n == name && *m == mode).count();
        assert_eq!(state.waiting_exclusive as usize, queued(LockMode::Exclusive));
        assert_eq!(state.waiting_shared as usize, queued(LockMode::Shared));
        in_use += usize::from(state != Default::default());
    }
    assert_eq!(store.locker.in_use(), in_use);
    for (&ticket, (_, owner, _)) in &locks.waiting {
        assert_eq!(store.locker.owner_of(ticket), Some(*owner));
    }
    for &ticket in &locks.issued {
        if !locks.waiting.contains_key(&ticket) {
            assert_eq!(store.locker.owner_of(ticket), None);
        }
    }
}

/// Reads every namespace of a copy of the store (so that lazy expiry is
/// not forced on the real one) and compares with the model.
fn check_cache(store: &Store, cache: &CacheModel, now: Instant) {
    let mut copy = store.clone();
    for ns in NAMES {
        let items = copy.cache.items(ns, now);
        assert_eq!(items, cache.items(ns, now), "namespace {ns:?}");
        let keys = copy.cache.keys(ns, now);
        assert_eq!(copy.cache.count(ns, now), keys.len() as u64);
        assert!(keys.iter().eq(items.iter().map(|(k, _)| k)));
        for (k, v) in &items {
            assert!(copy.cache.exists(ns, k, now));
            assert_eq!(copy.cache.get(ns, k, now).as_ref(), Some(v));
        }
    }
    // Once everything expired is swept, only live entries are held.
    copy.cache.sweep(now, usize::MAX);
    assert_eq!(copy.cache.entries(), cache.live(now).count());
    assert!(copy.cache.next_expiry().is_none_or(|at| at > now));
}
