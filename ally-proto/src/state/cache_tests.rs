//! Tests of [`Cache`](super::Cache).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{Cache, Limits};
use crate::ErrorCode;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cache() -> Cache {
    Cache::new(Limits::default())
}

fn small(max_entries: usize, max_bytes: usize) -> Cache {
    Cache::new(Limits {
        max_entries,
        max_bytes,
        ..Limits::default()
    })
}

/// Everything a caller can see of `ns`.
fn visible(c: &mut Cache, ns: &str, now: Instant) -> Vec<(String, Vec<u8>)> {
    c.items(ns, now).unwrap()
}

#[test]
fn set_get_replace_del() {
    let t = Instant::now();
    let mut c = cache();
    assert_eq!(c.get("n", "k", t), None);
    c.set("n", "k", b"one".to_vec(), None, t).unwrap();
    assert_eq!(c.get("n", "k", t), Some(b"one".to_vec()));
    assert!(c.exists("n", "k", t));
    assert!(!c.exists("other", "k", t));
    c.set("n", "k", b"three".to_vec(), None, t).unwrap();
    assert_eq!(c.get("n", "k", t), Some(b"three".to_vec()));
    assert_eq!((c.entries(), c.bytes()), (1, 1 + 1 + 5));
    assert!(c.del("n", "k", t));
    assert!(!c.del("n", "k", t));
    assert_eq!(c.get("n", "k", t), None);
    assert_eq!((c.entries(), c.bytes()), (0, 0));
    c.check_invariants();
}

#[test]
fn namespaces_are_separate() {
    let t = Instant::now();
    let mut c = cache();
    c.set("a", "k", vec![1], None, t).unwrap();
    c.set("b", "k", vec![2], None, t).unwrap();
    c.set("b", "j", vec![3], None, t).unwrap();
    assert_eq!(c.get("a", "k", t), Some(vec![1]));
    assert_eq!(c.count("a", t), 1);
    assert_eq!(c.count("b", t), 2);
    assert_eq!(c.keys("b", t).unwrap(), ["j", "k"]);
    assert_eq!(c.flush("b", t), 2);
    assert_eq!(c.count("b", t), 0);
    assert_eq!(c.get("a", "k", t), Some(vec![1]));
    assert_eq!(c.flush("b", t), 0);
    c.check_invariants();
}

#[test]
fn keys_and_items_are_sorted() {
    let t = Instant::now();
    let mut c = cache();
    for k in ["pear", "apple", "fig", "Zed"] {
        c.set("n", k, k.as_bytes().to_vec(), None, t).unwrap();
    }
    assert_eq!(c.keys("n", t).unwrap(), ["Zed", "apple", "fig", "pear"]);
    let items = c.items("n", t).unwrap();
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Zed", "apple", "fig", "pear"]);
    assert!(items.iter().all(|(k, v)| k.as_bytes() == v.as_slice()));
    assert!(c.keys("none", t).unwrap().is_empty());
    assert!(c.items("none", t).unwrap().is_empty());
}

#[test]
fn expiry_is_visible_at_once_to_every_call() {
    let t = Instant::now();
    let mut c = cache();
    c.set("n", "k", vec![1], Some(ms(100)), t).unwrap();
    c.set("n", "stay", vec![2], None, t).unwrap();
    let before = t + ms(99);
    assert_eq!(c.get("n", "k", before), Some(vec![1]));
    assert_eq!(c.count("n", before), 2);

    // Each call on its own copy, so no call sees the effect of another.
    let at = t + ms(100);
    assert_eq!(c.clone().get("n", "k", at), None);
    assert!(!c.clone().exists("n", "k", at));
    assert_eq!(c.clone().keys("n", at).unwrap(), ["stay"]);
    assert_eq!(c.clone().count("n", at), 1);
    assert_eq!(
        c.clone().items("n", at).unwrap(),
        [("stay".to_owned(), vec![2])]
    );
    assert!(!c.clone().del("n", "k", at));
    assert_eq!(c.clone().flush("n", at), 1);
    // Long after, the same.
    assert_eq!(c.clone().get("n", "k", t + ms(1_000_000)), None);
}

#[test]
fn touching_an_expired_entry_frees_it() {
    let t = Instant::now();
    let at = t + ms(10);
    type Touch = fn(&mut Cache, Instant);
    let touches: [Touch; 6] = [
        |c, at| assert_eq!(c.get("n", "k", at), None),
        |c, at| assert!(!c.exists("n", "k", at)),
        |c, at| assert!(!c.del("n", "k", at)),
        |c, at| assert!(c.keys("n", at).unwrap().is_empty()),
        |c, at| assert_eq!(c.count("n", at), 0),
        |c, at| assert!(c.items("n", at).unwrap().is_empty()),
    ];
    for touch in touches {
        let mut c = cache();
        c.set("n", "k", vec![0; 10], Some(ms(10)), t).unwrap();
        assert_eq!((c.entries(), c.bytes()), (1, 12));
        touch(&mut c, at);
        assert_eq!((c.entries(), c.bytes()), (0, 0));
        assert_eq!(c.next_expiry(), None);
        c.check_invariants();
    }
}

#[test]
fn overwrite_resets_or_removes_the_ttl() {
    let t = Instant::now();
    let mut c = cache();
    c.set("n", "k", vec![1], Some(ms(100)), t).unwrap();
    c.set("n", "k", vec![2], Some(ms(100)), t + ms(50)).unwrap();
    assert_eq!(c.get("n", "k", t + ms(120)), Some(vec![2]));
    assert_eq!(c.get("n", "k", t + ms(150)), None);

    c.set("n", "k", vec![3], Some(ms(100)), t).unwrap();
    c.set("n", "k", vec![4], None, t + ms(50)).unwrap();
    assert_eq!(c.next_expiry(), None);
    assert_eq!(c.get("n", "k", t + ms(1_000_000)), Some(vec![4]));

    c.set("n", "k", vec![5], None, t).unwrap();
    c.set("n", "k", vec![6], Some(ms(10)), t).unwrap();
    assert_eq!(c.next_expiry(), Some(t + ms(10)));
    assert_eq!(c.get("n", "k", t + ms(10)), None);
    c.check_invariants();
}

#[test]
fn an_old_deadline_never_frees_a_newer_value() {
    let t = Instant::now();
    let mut c = cache();
    c.set("n", "k", vec![1], Some(ms(10)), t).unwrap();
    c.set("n", "k", vec![2], Some(ms(1000)), t).unwrap();
    assert_eq!(c.sweep(t + ms(500), usize::MAX), 0);
    assert_eq!(c.get("n", "k", t + ms(500)), Some(vec![2]));

    // Deleted, then set again without a ttl: the old deadline is gone.
    c.set("n", "j", vec![1], Some(ms(10)), t).unwrap();
    assert!(c.del("n", "j", t));
    c.set("n", "j", vec![2], None, t).unwrap();
    // Flushed, then set again with a later ttl.
    c.set("m", "k", vec![1], Some(ms(10)), t).unwrap();
    c.flush("m", t);
    c.set("m", "k", vec![2], Some(ms(1000)), t).unwrap();
    // Expired and replaced after its deadline, before a sweep.
    c.set("o", "k", vec![1], Some(ms(10)), t).unwrap();
    c.set("o", "k", vec![2], None, t + ms(20)).unwrap();

    c.check_invariants();
    assert_eq!(c.sweep(t + ms(500), usize::MAX), 0);
    assert_eq!(c.get("n", "j", t + ms(500)), Some(vec![2]));
    assert_eq!(c.get("m", "k", t + ms(500)), Some(vec![2]));
    assert_eq!(c.get("o", "k", t + ms(500)), Some(vec![2]));
    c.check_invariants();
}

#[test]
fn sweep_frees_oldest_first_and_at_most_max() {
    let t = Instant::now();
    let mut c = cache();
    for i in 0..10u64 {
        // Set out of order: deadlines 10, 90, 20, 80, ...
        let ttl = if i % 2 == 0 { 10 + i * 5 } else { 100 - i * 5 };
        c.set("n", &format!("k{ttl}"), vec![0; 8], Some(ms(ttl)), t)
            .unwrap();
    }
    c.set("n", "forever", vec![], None, t).unwrap();
    assert_eq!(c.entries(), 11);
    assert_eq!(c.next_expiry(), Some(t + ms(10)));
    assert_eq!(c.sweep(t + ms(5), 100), 0, "nothing has expired yet");

    let end = t + ms(1000);
    assert_eq!(c.sweep(end, 3), 3);
    assert_eq!(c.entries(), 8);
    assert_eq!(c.bytes(), 1 + 7 + 7 * (1 + 3 + 8));
    assert_eq!(c.next_expiry(), Some(t + ms(40)));
    c.check_invariants();

    assert_eq!(c.sweep(end, 0), 0);
    assert_eq!(c.sweep(end, 100), 7);
    assert_eq!((c.entries(), c.bytes()), (1, 1 + 7));
    assert_eq!(c.next_expiry(), None);
    assert_eq!(c.keys("n", end).unwrap(), ["forever"]);
    c.check_invariants();
}

#[test]
fn sweep_stops_at_now() {
    let t = Instant::now();
    let mut c = cache();
    c.set("n", "a", vec![], Some(ms(10)), t).unwrap();
    c.set("n", "b", vec![], Some(ms(20)), t).unwrap();
    assert_eq!(c.sweep(t + ms(10), 10), 1, "expired at its deadline");
    assert_eq!(c.next_expiry(), Some(t + ms(20)));
    assert_eq!(c.get("n", "b", t + ms(19)), Some(vec![]));
}

#[test]
fn empty_namespaces_are_removed() {
    let t = Instant::now();
    let mut c = cache();
    for i in 0..100 {
        let ns = format!("ns{i}");
        c.set(&ns, "k", vec![], Some(ms(1)), t).unwrap();
        c.set(&ns, "j", vec![], None, t).unwrap();
        assert!(c.del(&ns, "j", t));
    }
    c.check_invariants();
    assert_eq!(c.sweep(t + ms(1), usize::MAX), 100);
    // check_invariants refuses an empty namespace, so none is kept.
    c.check_invariants();
    assert_eq!((c.entries(), c.bytes()), (0, 0));
}

#[test]
fn names_are_checked() {
    let t = Instant::now();
    let mut c = Cache::new(Limits {
        max_name_len: 4,
        ..Limits::default()
    });
    c.set("abcd", "wxyz", vec![], None, t).unwrap();
    for (ns, key) in [("", "k"), ("n", ""), ("abcde", "k"), ("n", "vwxyz")] {
        let e = c.set(ns, key, vec![1], None, t).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{ns:?}/{key:?}");
        // Reads of such names find nothing.
        assert_eq!(c.get(ns, key, t), None);
    }
    assert_eq!(c.entries(), 1);
}

#[test]
fn ttl_is_checked() {
    let t = Instant::now();
    let mut c = cache();
    let max = Limits::default().max_ttl;
    c.set("n", "k", vec![1], Some(ms(1)), t).unwrap();
    c.set("n", "k", vec![1], Some(max), t).unwrap();
    for ttl in [Duration::ZERO, max + ms(1)] {
        let e = c.set("n", "k", vec![2], Some(ttl), t).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("between 1ms and 365 days"), "{e}");
    }
    assert_eq!(c.get("n", "k", t), Some(vec![1]), "unchanged");
    assert_eq!(c.next_expiry(), Some(t + max));
}

#[test]
fn the_entry_limit_refuses_without_changing_anything() {
    let t = Instant::now();
    let mut c = small(3, usize::MAX);
    for k in ["a", "b", "c"] {
        c.set("n", k, vec![1], None, t).unwrap();
    }
    let before = visible(&mut c, "n", t);
    let e = c.set("n", "d", vec![1], None, t).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.message.contains("max_cache_entries"), "{e}");
    assert!(e.message.contains("3 of max_cache_entries 3"), "{e}");
    assert!(e.message.contains("delete or flush"), "{e}");
    let e = c.set("m", "a", vec![1], None, t).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(visible(&mut c, "n", t), before);
    assert_eq!(c.count("m", t), 0);
    assert_eq!((c.entries(), c.bytes()), (3, 9));
    // Replacing an entry needs no new one.
    c.set("n", "a", vec![2; 100], None, t).unwrap();
    c.check_invariants();
}

#[test]
fn the_byte_limit_refuses_without_changing_anything() {
    let t = Instant::now();
    let mut c = small(usize::MAX, 20);
    c.set("n", "a", vec![0; 8], None, t).unwrap(); // 10 bytes
    c.set("n", "b", vec![0; 8], None, t).unwrap(); // 20 bytes
    let e = c.set("n", "c", vec![], None, t).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.message.contains("20 of max_cache_bytes 20"), "{e}");
    // Growing a value past the limit is refused; the old value stays.
    let e = c.set("n", "a", vec![1; 9], None, t).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert_eq!(c.get("n", "a", t), Some(vec![0; 8]));
    // Shrinking and then growing within the limit is fine.
    c.set("n", "a", vec![1; 2], None, t).unwrap();
    c.set("n", "c", vec![1; 4], None, t).unwrap();
    assert_eq!(c.bytes(), 20);
    // An entry larger than the whole limit says so.
    let e = c.set("x", "y", vec![0; 19], None, t).unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded);
    assert!(e.message.contains("larger than max_cache_bytes"), "{e}");
    c.check_invariants();
}

#[test]
fn expired_entries_never_block_a_set_at_the_limit() {
    let t = Instant::now();
    let later = t + ms(10);
    // Entry limit: both full of expired entries, and one needing just some.
    let mut c = small(3, usize::MAX);
    for k in ["a", "b", "c"] {
        c.set("n", k, vec![], Some(ms(10)), t).unwrap();
    }
    for k in ["x", "y", "z"] {
        c.set("m", k, vec![], None, later).unwrap();
    }
    assert_eq!(c.keys("m", later).unwrap(), ["x", "y", "z"]);
    assert_eq!(c.entries(), 3);
    c.check_invariants();

    // Byte limit: the expired entries are in another namespace and have
    // later sequence numbers than a live one.
    let mut c = small(usize::MAX, 30);
    c.set("l", "k", vec![0; 8], None, t).unwrap();
    c.set("n", "a", vec![0; 8], Some(ms(10)), t).unwrap();
    c.set("n", "b", vec![0; 8], Some(ms(5)), t).unwrap();
    c.set("m", "k", vec![0; 18], None, later).unwrap();
    assert_eq!(c.bytes(), 30);
    assert_eq!(c.get("l", "k", later), Some(vec![0; 8]));
    c.check_invariants();

    // The key being set is itself expired and takes the room it needs.
    let mut c = small(1, 10);
    c.set("n", "k", vec![0; 8], Some(ms(10)), t).unwrap();
    c.set("n", "k", vec![1; 8], None, later).unwrap();
    assert_eq!(c.get("n", "k", later), Some(vec![1; 8]));
    c.check_invariants();
}

#[test]
fn expired_entries_are_freed_only_as_needed() {
    let t = Instant::now();
    let later = t + ms(100);
    let mut c = small(4, usize::MAX);
    for (k, ttl) in [("a", 10), ("b", 20), ("c", 30), ("d", 40)] {
        c.set("n", k, vec![], Some(ms(ttl)), t).unwrap();
    }
    c.set("m", "k", vec![], None, later).unwrap();
    assert_eq!(c.entries(), 4, "one expired entry freed, the earliest");
    assert_eq!(c.next_expiry(), Some(t + ms(20)));
}

/// What the model knows of an entry: its value and when it expires.
type Model = BTreeMap<(String, String), (Vec<u8>, Option<Instant>)>;

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8, u8, Option<u64>),
    Get(u8, u8),
    Del(u8, u8),
    Exists(u8, u8),
    Keys(u8),
    Count(u8),
    Items(u8),
    Flush(u8),
    Sweep(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let ns = 0..3u8;
    let key = 0..4u8;
    prop_oneof![
        4 => (ns.clone(), key.clone(), 0..12u8, proptest::option::of(1..50u64))
            .prop_map(|(n, k, len, ttl)| Op::Set(n, k, len, ttl)),
        2 => (ns.clone(), key.clone()).prop_map(|(n, k)| Op::Get(n, k)),
        1 => (ns.clone(), key.clone()).prop_map(|(n, k)| Op::Del(n, k)),
        1 => (ns.clone(), key).prop_map(|(n, k)| Op::Exists(n, k)),
        1 => ns.clone().prop_map(Op::Keys),
        1 => ns.clone().prop_map(Op::Count),
        1 => ns.clone().prop_map(Op::Items),
        1 => ns.prop_map(Op::Flush),
        1 => (0..4usize).prop_map(Op::Sweep),
        3 => (0..30u64).prop_map(Op::Advance),
    ]
}

fn live_in(model: &Model, ns: &str, now: Instant) -> Vec<(String, Vec<u8>)> {
    model
        .iter()
        .filter(|((n, _), (_, exp))| n == ns && exp.is_none_or(|e| now < e))
        .map(|((_, k), (v, _))| (k.clone(), v.clone()))
        .collect()
}

proptest! {
    #[test]
    fn cache_matches_a_model(ops in proptest::collection::vec(op(), 1..120)) {
        const MAX_ENTRIES: usize = 6;
        const MAX_BYTES: usize = 48;
        let start = Instant::now();
        let mut now = start;
        let mut c = small(MAX_ENTRIES, MAX_BYTES);
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Set(n, k, len, ttl) => {
                    let (ns, key) = (format!("n{n}"), format!("k{k}"));
                    let value = vec![n ^ k; len.into()];
                    // The model: live entries other than this key, plus it.
                    let others = model.iter().filter(|(id, (_, exp))| {
                        **id != (ns.clone(), key.clone()) && exp.is_none_or(|e| now < e)
                    });
                    let entries = others.clone().count() + 1;
                    let bytes: usize = others.map(|((n, k), (v, _))| n.len() + k.len() + v.len()).sum::<usize>()
                        + ns.len() + key.len() + value.len();
                    let fits = entries <= MAX_ENTRIES && bytes <= MAX_BYTES;
                    let before = c.clone().items(&ns, now).unwrap();
                    let r = c.set(&ns, &key, value.clone(), ttl.map(ms), now);
                    prop_assert_eq!(r.is_ok(), fits, "{:?}", r);
                    if fits {
                        model.insert((ns, key), (value, ttl.map(|t| now + ms(t))));
                    } else {
                        prop_assert_eq!(r.unwrap_err().code, ErrorCode::LimitExceeded);
                        prop_assert_eq!(c.items(&ns, now).unwrap(), before);
                    }
                }
                Op::Get(n, k) => {
                    let (ns, key) = (format!("n{n}"), format!("k{k}"));
                    let want = model.get(&(ns.clone(), key.clone()))
                        .filter(|(_, exp)| exp.is_none_or(|e| now < e))
                        .map(|(v, _)| v.clone());
                    prop_assert_eq!(c.get(&ns, &key, now), want);
                }
                Op::Del(n, k) => {
                    let (ns, key) = (format!("n{n}"), format!("k{k}"));
                    let want = model.remove(&(ns.clone(), key.clone()))
                        .is_some_and(|(_, exp)| exp.is_none_or(|e| now < e));
                    prop_assert_eq!(c.del(&ns, &key, now), want);
                }
                Op::Exists(n, k) => {
                    let (ns, key) = (format!("n{n}"), format!("k{k}"));
                    let want = model.get(&(ns.clone(), key.clone()))
                        .is_some_and(|(_, exp)| exp.is_none_or(|e| now < e));
                    prop_assert_eq!(c.exists(&ns, &key, now), want);
                }
                Op::Keys(n) => {
                    let ns = format!("n{n}");
                    let want: Vec<String> = live_in(&model, &ns, now).into_iter().map(|(k, _)| k).collect();
                    prop_assert_eq!(c.keys(&ns, now).unwrap(), want);
                }
                Op::Count(n) => {
                    let ns = format!("n{n}");
                    prop_assert_eq!(c.count(&ns, now), live_in(&model, &ns, now).len() as u64);
                }
                Op::Items(n) => {
                    let ns = format!("n{n}");
                    prop_assert_eq!(c.items(&ns, now).unwrap(), live_in(&model, &ns, now));
                }
                Op::Flush(n) => {
                    let ns = format!("n{n}");
                    let want = live_in(&model, &ns, now).len() as u64;
                    model.retain(|(m, _), _| *m != ns);
                    prop_assert_eq!(c.flush(&ns, now), want);
                }
                Op::Sweep(max) => {
                    let expired = model.values().filter(|(_, exp)| exp.is_some_and(|e| e <= now)).count();
                    let held = c.entries();
                    let freed = c.sweep(now, max);
                    prop_assert!(freed <= max && freed <= expired);
                    prop_assert_eq!(c.entries(), held - freed);
                }
                Op::Advance(d) => now += ms(d),
            }
            c.check_invariants();
            // Usage never counts more than the model still holds, live or not.
            prop_assert!(c.entries() <= model.len());
            prop_assert!(c.entries() <= MAX_ENTRIES && c.bytes() <= MAX_BYTES);
            if let Some(next) = c.next_expiry() {
                prop_assert!(next > start);
            }
        }
    }
}

#[test]
fn a_listing_larger_than_one_answer_is_refused_before_it_is_copied() {
    let t = Instant::now();
    let mut c = cache();
    let value = vec![7u8; 200 << 10];
    for k in 0..4 {
        c.set("big", &format!("k{k}"), value.clone(), None, t)
            .unwrap();
    }
    assert_eq!(c.items("big", t).map(|i| i.len()), Ok(4));
    c.set("big", "k4", value.clone(), None, t).unwrap();
    c.set("big", "k5", value, None, t).unwrap();
    let Err(err) = c.items("big", t).map(|i| i.len()) else {
        panic!("1.2 MiB of items were listed");
    };
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    assert!(err.message.contains("\"big\""), "{}", err.message);
    // The keys alone still fit.
    assert_eq!(c.keys("big", t).map(|k| k.len()), Ok(6));
}
