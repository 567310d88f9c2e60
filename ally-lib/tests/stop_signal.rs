//! The process-wide stop signal, with real signals. A test binary of its
//! own: the handlers it installs stay for the life of the process.

use std::thread;
use std::time::Duration;

use rustix::process::{Signal, getpid, kill_process};

#[test]
fn sigterm_stops_accepting_and_a_second_one_does_not_kill() {
    let listener = ally::listen_tcp("127.0.0.1:0").unwrap();
    let stop = ally::stop_signal().unwrap();
    // Idempotent: the same state behind every handle.
    let again = ally::stop_signal().unwrap();
    assert!(!stop.is_set() && !again.is_set());

    let raiser = thread::spawn(|| {
        thread::sleep(Duration::from_millis(50));
        kill_process(getpid(), Signal::TERM).unwrap();
    });
    assert!(ally::drain::accept(&listener, &stop).unwrap().is_none());
    raiser.join().unwrap();
    assert!(again.is_set());
    assert!(again.wait_timeout(Duration::ZERO));

    // The handler stays: another SIGTERM is not fatal in simulate mode.
    kill_process(getpid(), Signal::TERM).unwrap();
    thread::sleep(Duration::from_millis(50));
    assert!(stop.is_set());
}
