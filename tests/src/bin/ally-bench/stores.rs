//! The stores the throughput loops run against: ally itself, and the
//! in-process floor of a `std::sync::Mutex` around a `HashMap`.

use std::collections::HashMap;
use std::hint::black_box;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::throughput::{CLIENTS, COUNTER, Client, KEY, NS, Op, Store, VALUE, lock_name};

/// ally's shared state: the master's under a master, the in-process store
/// in simulate mode. The same code measures both.
#[derive(Debug)]
pub struct Ally;

impl Store for Ally {
    fn prepare(&self) -> io::Result<()> {
        ally::cache(NS).set(KEY, VALUE)
    }

    fn client(&self, op: Op, client: usize) -> Client<'_> {
        match op {
            Op::Get => {
                let cache = ally::cache(NS);
                Box::new(move || check_value(cache.get(KEY)?.as_deref()))
            }
            Op::Set => {
                let cache = ally::cache(NS);
                Box::new(move || cache.set(KEY, VALUE))
            }
            Op::Add => {
                let counter = ally::atomic(COUNTER);
                Box::new(move || counter.add(1).map(drop))
            }
            Op::Lock => {
                let locker = ally::locker(&lock_name(client));
                // `unlock` is what dropping the guard does, errors shown.
                Box::new(move || locker.lock()?.unlock())
            }
        }
    }
}

/// The floor: the same operations on plain mutexes in this process, no
/// copying between processes, no system calls when uncontended.
#[derive(Debug)]
pub struct Floor {
    cache: Mutex<HashMap<String, Vec<u8>>>,
    atomics: Mutex<HashMap<String, i64>>,
    /// One per client.
    locks: Vec<Mutex<()>>,
}

impl Floor {
    /// Empty maps, and a lock for each client.
    pub fn new() -> Floor {
        let clients = CLIENTS.into_iter().max().unwrap_or(1);
        Floor {
            cache: Mutex::new(HashMap::new()),
            atomics: Mutex::new(HashMap::new()),
            locks: (0..clients).map(|_| Mutex::new(())).collect(),
        }
    }
}

/// Locks `m`; a panicking client already failed the run, so a poisoned
/// mutex is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store for Floor {
    fn prepare(&self) -> io::Result<()> {
        lock(&self.cache).insert(KEY.to_owned(), VALUE.to_vec());
        Ok(())
    }

    fn client(&self, op: Op, client: usize) -> Client<'_> {
        match op {
            // The value is copied out, as a get must hand the caller its
            // own copy.
            Op::Get => Box::new(|| {
                let value = lock(&self.cache).get(KEY).cloned();
                check_value(black_box(value).as_deref())
            }),
            // Key and value are copied in, as a store must own them.
            Op::Set => Box::new(|| {
                let old = lock(&self.cache).insert(KEY.to_owned(), VALUE.to_vec());
                drop(black_box(old));
                Ok(())
            }),
            Op::Add => Box::new(|| {
                let mut atomics = lock(&self.atomics);
                let value = match atomics.get_mut(COUNTER) {
                    Some(v) => {
                        *v += 1;
                        *v
                    }
                    None => *atomics.entry(COUNTER.to_owned()).or_insert(1),
                };
                black_box(value);
                Ok(())
            }),
            Op::Lock => {
                let mutex = &self.locks[client];
                Box::new(move || {
                    drop(black_box(lock(mutex)));
                    Ok(())
                })
            }
        }
    }
}

/// Checks that a get found the value set before.
fn check_value(value: Option<&[u8]>) -> io::Result<()> {
    if value == Some(&VALUE[..]) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "get {KEY:?} found {value:?}, not the value set before"
        )))
    }
}
