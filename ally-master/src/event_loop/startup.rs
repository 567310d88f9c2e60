//! Binding an app's `listen` sockets when the master starts, while an
//! orphan of a master that died may still hold the address.
//!
//! Instances outlive a master killed outright only to drain (their
//! channel's end of file, or their stop signal as death signal), but a
//! master started again meanwhile — from a shell, by a container
//! runtime, by systemd without a store — finds each address they still
//! listen on in use: even with `SO_REUSEADDR`, Linux refuses to bind a
//! TCP address another socket listens on. Failing at once would leave the
//! master down for good once the orphans are gone, so an address in use
//! is tried again every [`BIND_RETRY_EVERY`] for as long as an orphan of
//! the app may drain (its `stop_timeout`, plus [`BIND_RETRY_GRACE`]),
//! with one log line saying why; then the start fails as before.
//! SIGTERM or SIGINT meanwhile ends the wait at once, and the master exits
//! 0 without starting anything; other signals wait for the loop.
//! Sockets the library asks for need none of this: an instance refused
//! one exits, and the app's restart back-off tries again.

use std::time::Instant;

use ally_proto::ListenSpec;

use crate::config::AppConfig;
use crate::fd_store::FdStore;
use crate::helpers::Owner;
use crate::limits::{BIND_RETRY_EVERY, BIND_RETRY_GRACE};
use crate::listeners::{Bound, is_in_use};
use crate::log;
use crate::signals::Signals;

/// Why the master could not start serving.
#[derive(Debug)]
pub enum StartError {
    /// A log file or a `listen` socket could not be had: the message says
    /// which and why.
    Failed(String),
    /// SIGTERM or SIGINT arrived while an address in use was tried again.
    Stopped,
}

/// Binds `spec`, a `listen` entry of `app`, trying again while its
/// address is in use, for at most the app's `stop_timeout` and
/// [`BIND_RETRY_GRACE`].
///
/// # Errors
///
/// The bind's failure: at once if it is not "in use", else the last one;
/// [`StartError::Stopped`] if the master is told to stop meanwhile.
pub fn bind_config_socket(
    app: &AppConfig,
    spec: &ListenSpec,
    owner: Option<Owner>,
    store: &FdStore,
    signals: &Signals,
) -> Result<Bound, StartError> {
    let deadline = Instant::now() + app.stop_timeout + BIND_RETRY_GRACE;
    let mut logged = false;
    loop {
        match Bound::new(&app.name, spec, owner, store) {
            Err(failure) if is_in_use(&failure) && Instant::now() < deadline => {
                if !logged {
                    logged = true;
                    log!(
                        "{}: {}; an instance of a master that died may still be draining \
                         there: trying again for up to {:?}",
                        app.name,
                        failure.message,
                        app.stop_timeout + BIND_RETRY_GRACE
                    );
                }
                if signals.wait_for_terminate(BIND_RETRY_EVERY) {
                    log!(
                        "{}: stopped by a signal while waiting for {}; exiting",
                        app.name,
                        failure.message
                    );
                    return Err(StartError::Stopped);
                }
            }
            Ok(bound) => {
                if logged {
                    log!(
                        "{}: {} {} is free again; bound it",
                        app.name,
                        spec.network,
                        bound.local
                    );
                }
                return Ok(bound);
            }
            Err(failure) => return Err(StartError::Failed(failure.message)),
        }
    }
}
