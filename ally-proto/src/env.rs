//! Environment variables the master sets for each instance it starts.
//!
//! Their presence is what tells the library it runs under a master; the
//! library never falls back to simulate mode when they are set but wrong.

/// Decimal number of the descriptor that holds the instance's own channel
/// to the master: one end of a unix stream socket pair the master made for
/// this instance alone. Numbered past the `LISTEN_FDS` range (3 and up).
pub const CHANNEL_FD: &str = "ALLY_CHANNEL_FD";
/// Decimal pid of the master; must equal the instance's parent pid when the
/// library first uses the channel, and the pid that made the channel.
pub const MASTER_PID: &str = "ALLY_MASTER_PID";
/// Name of the app the instance belongs to.
pub const APP: &str = "ALLY_APP";
/// Decimal id of the instance within its app, counting from 1.
pub const INSTANCE: &str = "ALLY_INSTANCE";
/// Name of the signal the master sends to ask the instance to drain
/// (for example `SIGTERM`).
pub const STOP_SIGNAL: &str = "ALLY_STOP_SIGNAL";
/// How long, in milliseconds, the library waits for the master to answer a
/// request before it gives up on that request (the app's `request_timeout`).
pub const REQUEST_TIMEOUT_MS: &str = "ALLY_REQUEST_TIMEOUT_MS";
/// Descriptors (`OUT,ERR`) of read ends of the instance's own stdout and
/// stderr pipes, which the library holds (without reading them) so that
/// the master's death leaves its output a reader; set for every instance
/// (a program that does not link ally holds them without knowing).
pub const OUTPUT_FDS: &str = "ALLY_OUTPUT_FDS";
/// Names every variable above, for clearing them from a child's environment.
pub const ALL: [&str; 7] = [
    CHANNEL_FD,
    OUTPUT_FDS,
    MASTER_PID,
    APP,
    INSTANCE,
    STOP_SIGNAL,
    REQUEST_TIMEOUT_MS,
];
