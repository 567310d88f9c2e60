//! Simulate mode under socket activation: sockets passed by systemd's
//! `LISTEN_FDS` protocol (also spoken by `systemfd` and `ally-master`'s
//! socket mode) are used before anything is bound.
//!
//! When `LISTEN_PID` names this process, descriptors 3 to 3 +
//! `LISTEN_FDS` − 1 are adopted on the first listen (those that are
//! sockets), made close-on-exec, and kept in a pool with their names from
//! `LISTEN_FDNAMES` (colon-separated; ignored unless there is one per
//! descriptor). A listen with a name takes the first pooled socket of that
//! name (one bound to the requested address if several have the name), and
//! fails if no socket of that name fits the network. Otherwise, and when no
//! pooled socket has the name, it takes the first pooled socket of the
//! right type bound to the requested address (for port 0, any port on the
//! requested IP). Each socket is handed out at most once. The variables
//! stay in the environment; children ignore them, since `LISTEN_PID` names
//! this process. Do not mix with another `LISTEN_FDS` consumer in the same
//! process: both would own the descriptors.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use ally_proto::{ListenAddr, Network};

use crate::error::Error;
use crate::sys;
use crate::verify;

/// More passed descriptors than this is taken as a malformed environment.
const MAX_LISTEN_FDS: usize = 4096;

/// One passed descriptor: the socket until handed out, and its name.
#[derive(Debug)]
struct Slot {
    fd: Option<OwnedFd>,
    name: Option<String>,
}

/// Adopted sockets; `None` until first use.
static POOL: Mutex<Option<Vec<Slot>>> = Mutex::new(None);

/// The inherited socket for (`network`, `want`), or named `name`, if one
/// was passed.
///
/// # Errors
///
/// [`Error::InheritedMismatch`] when sockets named `name` were passed but
/// none fits `network`.
pub(crate) fn take(
    network: Network,
    want: &ListenAddr,
    name: Option<&str>,
) -> Result<Option<OwnedFd>, Error> {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pool = pool.get_or_insert_with(adopt_from_env);
    let at_addr = |slot: &Slot| {
        slot.fd
            .as_ref()
            .is_some_and(|fd| verify::matches(fd.as_fd(), network, want).is_ok())
    };
    let named: Vec<usize> = (0..pool.len())
        .filter(|&i| pool[i].fd.is_some() && name.is_some() && pool[i].name.as_deref() == name)
        .collect();
    let index = if let Some(name) = name.filter(|_| !named.is_empty()) {
        let mut why = None;
        let fits = |i: &&usize| {
            let fd = pool[**i].fd.as_ref().map(AsFd::as_fd);
            match fd.map(|fd| verify::fits(fd, network)) {
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    why.get_or_insert(e);
                    false
                }
                None => false,
            }
        };
        match named
            .iter()
            .find(|&&i| at_addr(&pool[i]))
            .or_else(|| named.iter().find(fits))
        {
            Some(&i) => Some(i),
            None => {
                return Err(Error::InheritedMismatch {
                    name: name.to_owned(),
                    network,
                    found: why.unwrap_or_default(),
                });
            }
        }
    } else {
        pool.iter().position(at_addr)
    };
    let Some(fd) = index.and_then(|i| pool[i].fd.take()) else {
        return Ok(None);
    };
    // Passed sockets are usually blocking; every socket this crate returns
    // is not. The process owns this socket now, so the change is its own.
    let _ = verify::ensure_nonblocking(fd.as_fd());
    Ok(Some(fd))
}

fn adopt_from_env() -> Vec<Slot> {
    let var = |name| std::env::var(name).ok();
    let for_us = var("LISTEN_PID")
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = var("LISTEN_FDS")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n <= MAX_LISTEN_FDS);
    let (true, Some(count)) = (for_us, count) else {
        return Vec::new();
    };
    let mut names = fd_names(var("LISTEN_FDNAMES").as_deref(), count).into_iter();
    sys::adopt_listen_fds(count)
        .into_iter()
        .map(|fd| Slot {
            fd,
            name: names.next().flatten(),
        })
        .collect()
}

/// The names in `LISTEN_FDNAMES` for `count` descriptors: none unless there
/// is exactly one per descriptor (as `sd_listen_fds_with_names` requires).
fn fd_names(var: Option<&str>, count: usize) -> Vec<Option<String>> {
    let names: Vec<&str> = var.map(|v| v.split(':').collect()).unwrap_or_default();
    if names.len() != count {
        return vec![None; count];
    }
    names.into_iter().map(|n| Some(n.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::fd_names;

    #[test]
    fn names_count_only_when_there_is_one_per_descriptor() {
        let some = |v: &[&str]| v.iter().map(|n| Some(n.to_string())).collect::<Vec<_>>();
        assert_eq!(fd_names(Some("http:admin"), 2), some(&["http", "admin"]));
        assert_eq!(fd_names(Some("http::x"), 3), some(&["http", "", "x"]));
        assert_eq!(fd_names(Some("http"), 2), vec![None, None]);
        assert_eq!(fd_names(None, 1), vec![None]);
        assert_eq!(fd_names(Some(""), 0), Vec::<Option<String>>::new());
    }
}
