//! [`Stop`]: the stop signal as a future.

use std::future::{Future, IntoFuture};
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;

use ::tokio::io::Interest;
use ::tokio::net::UnixStream;

use crate::stop::{StopSignal, stop_signal};

/// "This process was asked to stop", to `.await`. Clones share the state;
/// any number of tasks may wait.
///
/// Built on the process-wide [`stop_signal`](crate::stop_signal): the
/// runtime's reactor watches a duplicate of its descriptor, which becomes
/// readable once stopping and stays so. No thread is spent waiting.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let signal = ally::StopSignal::new()?; // tests: one only `trigger` sets
/// let stop = ally::tokio::Stop::with_signal(signal.clone())?;
/// assert!(!stop.is_stopped());
/// signal.trigger();
/// stop.stopped().await;
/// stop.clone().await; // `Stop` is also a future itself
/// assert!(stop.is_stopped());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    signal: StopSignal,
    /// A duplicate of the signal's descriptor (close-on-exec; one end of a
    /// socket pair), registered with the reactor of the runtime `Stop` was
    /// made in. Never read from.
    fd: UnixStream,
}

impl Stop {
    /// The process's stop signal, as [`stop_signal`](crate::stop_signal)
    /// gives it (which installs the handlers on first use: call this early,
    /// before [`ready`](crate::ready)).
    ///
    /// # Errors
    ///
    /// Those of [`stop_signal`](crate::stop_signal); and, as for
    /// [`with_signal`](Self::with_signal), a call outside a tokio runtime.
    pub fn new() -> io::Result<Stop> {
        Stop::with_signal(stop_signal()?)
    }

    /// A `Stop` on `signal`: the process's, or one of
    /// [`StopSignal::new`] (set by its [`trigger`](StopSignal::trigger)).
    ///
    /// # Errors
    ///
    /// Called outside a tokio runtime (its reactor must watch the
    /// descriptor: make the `Stop` in the runtime that awaits it), or the
    /// descriptor cannot be duplicated or registered.
    pub fn with_signal(signal: StopSignal) -> io::Result<Stop> {
        if ::tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "ally::tokio::Stop must be made inside a tokio runtime \
                 (in an async fn under #[tokio::main], or in Runtime::block_on)",
            ));
        }
        let fd = std::os::unix::net::UnixStream::from(signal.as_fd().try_clone_to_owned()?);
        // The blocking waiters poll, never read: the flag changes nothing
        // for them.
        fd.set_nonblocking(true)?;
        let fd = UnixStream::from_std(fd)?;
        Ok(Stop {
            inner: Arc::new(Inner { signal, fd }),
        })
    }

    /// Whether stopping was asked for.
    pub fn is_stopped(&self) -> bool {
        self.inner.signal.is_set()
    }

    /// Returns once stopping is asked for (at once if it was already).
    pub async fn stopped(&self) {
        while !self.is_stopped() {
            match self.inner.fd.readable().await {
                // The flag is set before the byte is written: readable
                // and unset is a spurious wake-up, whose readiness is
                // cleared (a `WouldBlock` from `try_io` does that). Once set
                // the readiness is kept, for every other waiter.
                Ok(()) => {
                    if !self.is_stopped() {
                        let _ = self.inner.fd.try_io(Interest::READABLE, || {
                            Err::<(), _>(io::ErrorKind::WouldBlock.into())
                        });
                    }
                }
                // The reactor is gone (its runtime shut down): nothing can
                // be awaited any more; never resolve rather than spin.
                Err(_) => std::future::pending::<()>().await,
            }
        }
    }

    /// [`stopped`](Self::stopped) as a `'static` future, for APIs that take
    /// one: `with_graceful_shutdown(stop.wait())`.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let stop = self.clone();
        async move { stop.stopped().await }
    }

    /// The underlying [`StopSignal`], for blocking code.
    pub fn signal(&self) -> &StopSignal {
        &self.inner.signal
    }
}

impl IntoFuture for Stop {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.stopped().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn outside_a_runtime_is_an_error() {
        let e = Stop::with_signal(StopSignal::new().unwrap()).unwrap_err();
        assert!(e.to_string().contains("inside a tokio runtime"), "{e}");
    }

    #[::tokio::test]
    async fn every_waiter_wakes_and_stays_woken() {
        let signal = StopSignal::new().unwrap();
        let stop = Stop::with_signal(signal.clone()).unwrap();
        let waiters: Vec<_> = (0..4).map(|_| ::tokio::spawn(stop.wait())).collect();
        let early = ::tokio::time::timeout(Duration::from_millis(20), stop.stopped()).await;
        assert!(early.is_err(), "woke before the trigger");
        signal.trigger();
        for w in waiters {
            w.await.unwrap();
        }
        stop.stopped().await;
        stop.clone().await;
        assert!(stop.is_stopped());
    }
}
