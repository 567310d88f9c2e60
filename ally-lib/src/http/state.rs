//! A connection's life as an enum with pure transitions; the loop in
//! `conn.rs` does the I/O each state asks for.
//!
//! The drain appears in one place only: when a response is written. An
//! idle connection is never closed because a drain started, only by its
//! idle timeout (and not even then if a request is arriving).

use super::request::Reject;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for (the rest of) a request head.
    Reading,
    /// A request head was read: read its body, call the handler, answer.
    Handling {
        /// The client asked to close after this request.
        client_close: bool,
    },
    /// Answer with this error, then close.
    Rejecting(Reject),
    /// The last response is written: shut down writing, discard what the
    /// client still sends until it closes.
    Closing,
    /// Drop the socket.
    Done,
}

/// What the I/O of a state came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// A complete head was read.
    Head {
        /// The client asked to close after this request.
        client_close: bool,
    },
    /// The head or body is refused with this answer.
    Invalid(Reject),
    /// The idle timeout passed while reading a head.
    Timeout {
        /// Part of a head had arrived.
        partial: bool,
        /// A byte (or end of stream) is waiting now: it arrived as the
        /// timer fired.
        readable: bool,
    },
    /// The response was written; `draining` is the drain's state at that
    /// moment.
    Written {
        /// The server was draining when the response was written.
        draining: bool,
    },
    /// The client closed, or reading or writing failed; or a graceful
    /// close ended.
    Gone,
}

/// The answer to a request that stalls halfway.
pub(super) const TIMED_OUT: Reject = Reject {
    status: 408,
    why: "the request did not arrive within the idle timeout",
};

impl State {
    /// The state after `event`.
    pub(super) fn next(self, event: Event) -> State {
        match (self, event) {
            (_, Event::Gone) | (State::Done, _) => State::Done,
            (State::Reading, Event::Head { client_close }) => State::Handling { client_close },
            (State::Reading | State::Handling { .. }, Event::Invalid(r)) => State::Rejecting(r),
            (State::Reading, Event::Timeout { partial: true, .. }) => State::Rejecting(TIMED_OUT),
            (State::Reading, Event::Timeout { readable: true, .. }) => State::Reading,
            (State::Reading, Event::Timeout { .. }) => State::Closing,
            (State::Handling { client_close }, Event::Written { draining }) => {
                if client_close || draining {
                    State::Closing
                } else {
                    State::Reading
                }
            }
            (State::Rejecting(_), Event::Written { .. }) => State::Closing,
            // Events a state cannot produce: end the connection.
            _ => State::Done,
        }
    }

    /// Whether the response written now says `Connection: close`: exactly
    /// when the connection closes after it.
    pub(super) fn closes_after_response(self, draining: bool) -> bool {
        self.next(Event::Written { draining }) == State::Closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Event = Event::Timeout {
        partial: false,
        readable: false,
    };

    #[test]
    fn keep_alive_serves_request_after_request() {
        let mut s = State::Reading;
        for _ in 0..3 {
            s = s.next(Event::Head {
                client_close: false,
            });
            assert!(!s.closes_after_response(false));
            s = s.next(Event::Written { draining: false });
            assert_eq!(s, State::Reading);
        }
    }

    #[test]
    fn the_drain_closes_only_after_a_response() {
        // Idle while draining: nothing closes it but its idle timeout.
        let arriving = Event::Timeout {
            partial: false,
            readable: true,
        };
        assert_eq!(State::Reading.next(arriving), State::Reading);
        // A connection accepted just before the stop, or idle when it came,
        // gets its next request answered, with `Connection: close`.
        let s = State::Reading.next(Event::Head {
            client_close: false,
        });
        assert!(s.closes_after_response(true));
        assert_eq!(s.next(Event::Written { draining: true }), State::Closing);
        assert_eq!(State::Closing.next(Event::Gone), State::Done);
    }

    #[test]
    fn idle_and_client_close() {
        assert_eq!(State::Reading.next(IDLE), State::Closing);
        let s = State::Reading.next(Event::Head { client_close: true });
        assert!(s.closes_after_response(false));
        let partial = Event::Timeout {
            partial: true,
            readable: false,
        };
        assert_eq!(State::Reading.next(partial), State::Rejecting(TIMED_OUT));
    }

    #[test]
    fn errors_are_answered_then_closed() {
        let bad = Reject {
            status: 400,
            why: "x",
        };
        let s = State::Reading.next(Event::Invalid(bad));
        assert_eq!(s, State::Rejecting(bad));
        assert!(s.closes_after_response(false));
        assert_eq!(s.next(Event::Written { draining: false }), State::Closing);
        for s in [State::Reading, State::Closing, s] {
            assert_eq!(s.next(Event::Gone), State::Done);
        }
    }
}
