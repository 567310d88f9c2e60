//! The few calls that need `unsafe`.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child started by `cmd` a session leader (`setsid(2)`) before it
/// executes, so it has its own process group: signals for the master's
/// terminal do not reach it, and the master can signal its whole group.
pub fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it calls only
    // setsid(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
}
