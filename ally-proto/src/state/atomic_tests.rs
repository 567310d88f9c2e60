//! Tests of [`Atomics`](super::Atomics).

use super::{Atomics, Limits};
use crate::ErrorCode;

fn atomics() -> Atomics {
    Atomics::new(Limits::default())
}

#[test]
fn never_set_is_zero_and_load_creates_nothing() {
    let a = atomics();
    assert_eq!(a.load("x"), 0);
    assert_eq!(a.in_use(), 0);
}

#[test]
fn add_load_store_swap_cas() {
    let mut a = atomics();
    assert_eq!(a.add("x", 5), Ok(5));
    assert_eq!(a.add("x", -7), Ok(-2));
    assert_eq!(a.load("x"), -2);
    a.store("x", 40).unwrap();
    assert_eq!(a.load("x"), 40);
    assert_eq!(a.swap("x", 41), Ok(40));
    assert_eq!(a.swap("y", 1), Ok(0));
    assert_eq!(a.cas("x", 40, 50), Ok(false));
    assert_eq!(a.load("x"), 41);
    assert_eq!(a.cas("x", 41, 50), Ok(true));
    assert_eq!(a.load("x"), 50);
    assert_eq!(a.cas("never", 0, 3), Ok(true));
    assert_eq!(a.load("never"), 3);
    assert_eq!(a.load("y"), 1);
}

#[test]
fn overflow_either_way_leaves_the_value() {
    let mut a = atomics();
    a.store("hi", i64::MAX - 1).unwrap();
    assert_eq!(a.add("hi", 1), Ok(i64::MAX));
    let e = a.add("hi", 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::Overflow);
    assert!(e.message.contains("above i64::MAX"), "{e}");
    assert!(e.message.contains("unchanged"), "{e}");
    assert_eq!(a.load("hi"), i64::MAX);
    assert_eq!(a.add("hi", i64::MIN), Ok(-1));

    a.store("lo", i64::MIN + 1).unwrap();
    assert_eq!(a.add("lo", -1), Ok(i64::MIN));
    let e = a.add("lo", -1).unwrap_err();
    assert_eq!(e.code, ErrorCode::Overflow);
    assert!(e.message.contains("below i64::MIN"), "{e}");
    assert_eq!(a.load("lo"), i64::MIN);
    let e = a.add("lo", i64::MIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::Overflow);
    assert_eq!(a.load("lo"), i64::MIN);
    assert_eq!(a.add("lo", i64::MAX), Ok(-1));
}

#[test]
fn names_are_checked() {
    let mut a = Atomics::new(Limits {
        max_name_len: 3,
        ..Limits::default()
    });
    for name in ["", "abcd"] {
        for r in [
            a.add(name, 1).map(drop),
            a.store(name, 1),
            a.swap(name, 1).map(drop),
            a.cas(name, 0, 1).map(drop),
        ] {
            assert_eq!(r.unwrap_err().code, ErrorCode::BadRequest, "{name:?}");
        }
        assert_eq!(a.load(name), 0, "a name never stored reads 0");
    }
    assert_eq!(a.in_use(), 0);
    assert_eq!(a.add("abc", 1), Ok(1));
}

#[test]
fn the_limit_counts_atomics_other_than_zero() {
    let mut a = Atomics::new(Limits {
        max_atomics: 2,
        ..Limits::default()
    });
    a.store("a", 1).unwrap();
    a.add("b", 2).unwrap();
    for r in [
        a.add("c", 1).map(drop),
        a.store("c", 1),
        a.swap("c", 1).map(drop),
        a.cas("c", 0, 1).map(drop),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("2 of max_atomics 2"), "{e}");
    }
    assert_eq!(a.load("c"), 0);
    // Names already in use, and writes of 0, still work at the limit.
    assert_eq!(a.add("a", 1), Ok(2));
    assert_eq!(a.swap("b", 3), Ok(2));
    assert_eq!(a.add("c", 0), Ok(0));
    a.store("c", 0).unwrap();
    assert_eq!(a.cas("c", 5, 1), Ok(false));
    // Bringing one back to 0 frees its room.
    assert_eq!(a.add("a", -2), Ok(0));
    assert_eq!(a.in_use(), 1);
    assert_eq!(a.add("c", 7), Ok(7));
    assert_eq!(a.in_use(), 2);
}
