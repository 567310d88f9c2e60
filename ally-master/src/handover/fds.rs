//! The descriptor table of a handover: the old image lists every
//! descriptor it hands over ([`Export`]), the new one takes each back by
//! its index exactly once ([`Import`]).
//!
//! Descriptor numbers appear only here and on the command line of the
//! exec: this is the exec boundary.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::HandoverError;
use super::snapshot::Fd;
use crate::limits::MAX_HANDOVER_FDS;

/// The descriptors an image hands over, in index order, borrowed from
/// the master until the exec (which cannot change meanwhile).
#[derive(Debug, Default)]
pub struct Export<'a> {
    fds: Vec<BorrowedFd<'a>>,
}

impl<'a> Export<'a> {
    /// Lists `fd`; returns its index.
    pub fn add(&mut self, fd: BorrowedFd<'a>) -> Fd {
        self.fds.push(fd);
        u32::try_from(self.fds.len() - 1).unwrap_or(u32::MAX)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// The descriptors, in index order.
    pub fn fds(&self) -> &[BorrowedFd<'a>] {
        &self.fds
    }

    /// # Errors
    ///
    /// Past [`MAX_HANDOVER_FDS`] (the command line holds them all).
    pub fn check_bound(&self) -> Result<(), HandoverError> {
        if self.fds.len() > MAX_HANDOVER_FDS {
            return Err(HandoverError::TooMany(self.fds.len()));
        }
        // A master started with stdio closed may hold a socket at 0-2,
        // which the new image would take for its stdio.
        if let Some(low) = self.fds.iter().map(AsRawFd::as_raw_fd).find(|&fd| fd <= 2) {
            return Err(HandoverError::Restore(format!(
                "descriptor {low} is in the stdio range; start the master with stdin, stdout \
                 and stderr open"
            )));
        }
        Ok(())
    }
}

/// The descriptors an image took over, each to be claimed once.
#[derive(Debug)]
pub struct Import {
    /// Each descriptor and whether it was claimed.
    fds: Vec<Option<(OwnedFd, bool)>>,
}

impl Import {
    /// The table of `fds`, in index order.
    pub fn new(fds: Vec<OwnedFd>) -> Import {
        Import {
            fds: fds.into_iter().map(|fd| Some((fd, false))).collect(),
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// A close-on-exec duplicate of descriptor `index`, which is marked
    /// claimed. The originals stay open until the table is dropped: a
    /// restore that fails half-way closes only duplicates, and the way
    /// back to the old binary still has every original.
    ///
    /// # Errors
    ///
    /// If there is no such index, it was claimed already, or it cannot be
    /// duplicated.
    pub fn take(&mut self, index: Fd) -> Result<OwnedFd, HandoverError> {
        let slot = self
            .fds
            .get_mut(index as usize)
            .ok_or(HandoverError::BadFd(index))?;
        let (fd, claimed) = slot.as_mut().ok_or(HandoverError::BadFd(index))?;
        if *claimed {
            return Err(HandoverError::BadFd(index));
        }
        *claimed = true;
        rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 3).map_err(|e| {
            HandoverError::Io(format!("dup of handed-over descriptor {index}"), e.into())
        })
    }

    /// The descriptors themselves, in index order (for the way back).
    pub fn originals(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.fds.iter().flatten().map(|(fd, _)| fd.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_descriptors_than_the_bound_are_refused_naming_the_figure() {
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let mut fds = Export::default();
        for _ in 0..MAX_HANDOVER_FDS {
            fds.add(file.as_fd());
        }
        assert!(fds.check_bound().is_ok());
        fds.add(file.as_fd());
        let e = fds.check_bound().unwrap_err();
        assert!(matches!(e, HandoverError::TooMany(n) if n == MAX_HANDOVER_FDS + 1));
        assert!(e.to_string().contains("16384 allowed"), "{e}");
    }
}
