//! Keeping a measurement on one CPU.
//!
//! A request answered by another process is a round trip: the client
//! sleeps until the server has answered. When the two run on different
//! CPUs, each round trip also waits for the other CPU to wake up, and on a
//! small virtual machine that wait can be most of the time: `redis-benchmark
//! -c 1` ran at about 105k requests/s with both ends on one CPU and 12k
//! with them on two, on a 2-core virtual machine. Where
//! the scheduler puts the two ends then decides the figure, run by run.
//! With everything on one CPU, a one-client figure measures the work per
//! request instead, the same way for every store.

use std::io;

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// This thread moved to one CPU; moved back to the CPUs it had on drop.
///
/// Threads and processes started meanwhile inherit the one CPU and keep
/// it: start them while this lives, and let them end before it drops.
#[derive(Debug)]
pub struct OneCpu {
    saved: CpuSet,
    cpu: usize,
}

impl OneCpu {
    /// Moves this thread to the first CPU it may run on; `None` when it
    /// may run on only one already.
    ///
    /// # Errors
    ///
    /// `sched_getaffinity` or `sched_setaffinity` failed.
    pub fn pin() -> io::Result<Option<OneCpu>> {
        let saved = sched_getaffinity(None)?;
        if saved.count() <= 1 {
            return Ok(None);
        }
        let Some(cpu) = (0..CpuSet::MAX_CPU).find(|&c| saved.is_set(c)) else {
            return Ok(None);
        };
        let mut one = CpuSet::new();
        one.set(cpu);
        sched_setaffinity(None, &one)?;
        Ok(Some(OneCpu { saved, cpu }))
    }

    /// The CPU.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        if let Err(e) = sched_setaffinity(None, &self.saved) {
            eprintln!("ally-bench: cannot give this thread back its CPUs: {e}");
        }
    }
}
