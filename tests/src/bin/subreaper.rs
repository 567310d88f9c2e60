//! `subreaper PROGRAM ARGS...` — runs `PROGRAM` as a child subreaper, so
//! the processes its descendants orphan are reparented here rather than to
//! init, and reports how each child it reaps ended, one line on stderr:
//! `subreaper: pid P exited with status S` or `subreaper: pid P was killed
//! by signal N`. Exits once no child is left, with status 0.
//!
//! Tests wrap `ally-master` in it to see the exit status of instances that
//! outlive a killed master.

use std::process::{Command, ExitCode};

use rustix::process::{WaitOptions, getpid, set_child_subreaper, wait};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: subreaper PROGRAM ARGS...");
        return ExitCode::from(2);
    };
    if let Err(e) = set_child_subreaper(Some(getpid())) {
        eprintln!("subreaper: PR_SET_CHILD_SUBREAPER: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = Command::new(program).args(rest).spawn() {
        eprintln!("subreaper: cannot run {program}: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        match wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let pid = pid.as_raw_nonzero();
                match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => eprintln!("subreaper: pid {pid} exited with status {code}"),
                    (_, Some(sig)) => eprintln!("subreaper: pid {pid} was killed by signal {sig}"),
                    _ => {}
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return ExitCode::SUCCESS,
        }
    }
}
