//! Environment variables the master sets for each instance it starts.
//!
//! Their presence is what tells the library it runs under a master; the
//! library never falls back to simulate mode when they are set but wrong.

/// Path of the master's control socket.
pub const SOCKET: &str = "ALLY_SOCKET";
/// Decimal pid of the master; must equal the instance's parent pid.
pub const MASTER_PID: &str = "ALLY_MASTER_PID";
/// Name of the app the instance belongs to.
pub const APP: &str = "ALLY_APP";
/// Decimal id of the instance within its app, counting from 1.
pub const INSTANCE: &str = "ALLY_INSTANCE";
/// Name of the signal the master sends to ask the instance to drain
/// (for example `SIGTERM`).
pub const STOP_SIGNAL: &str = "ALLY_STOP_SIGNAL";
/// Names every variable above, for clearing them from a child's environment.
pub const ALL: [&str; 5] = [SOCKET, MASTER_PID, APP, INSTANCE, STOP_SIGNAL];
