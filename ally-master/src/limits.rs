//! Every limit the master enforces, named, with why it has the value it has.

use std::time::Duration;

/// Most connections accepted from the control socket open at once. Past
/// it a new one is refused and closed at once (the socket is still
/// accepted from), so a flood can exhaust neither the master's file
/// descriptors nor its patience.
pub const MAX_CONNECTIONS: usize = 4096;

/// Most control-socket connections one uid may hold, root and the master's
/// own uid aside: its next one is refused and closed at once. Ample for an
/// operator's scripts and `logs -f` terminals; sixteen such uids would be
/// needed to take every slot outside the reserve.
pub const CONTROL_SHARE_PER_UID: usize = 256;

/// Control-socket slots that only root and the master's own uid may take:
/// every other uid together holds at most `MAX_CONNECTIONS` minus this, so
/// the operator's `ally-ctl` always gets in, whatever the others hold.
pub const PRIVILEGED_RESERVE: usize = 64;

/// Most connections accepted (or refused) from the control socket per loop
/// turn; the rest wait in the listen backlog for the next turn, so a
/// connect flood cannot starve the clients already connected.
pub const ACCEPTS_PER_TURN: usize = 64;

/// Default time a client has to finish a frame once its first byte has
/// arrived (`[master] frame_timeout`); past it the connection is closed, so
/// a half-sent frame holds neither memory nor a slot for long.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes the connections from the control socket may hold buffered
/// together (requests read but not yet handled: mostly unfinished frames).
/// Once spent, a connection holding part of a frame is read no further
/// (its frame times out), while one holding nothing may still read
/// [`READ_WHEN_SPENT`]: so the master holds at most this plus
/// `MAX_CONNECTIONS × READ_WHEN_SPENT` (20 MiB in all), and a short request
/// such as `ally-ctl list` is still served.
pub const MAX_BUFFERED_INPUT: usize = 16 << 20;

/// Bytes a connection holding nothing may read while the input budget is
/// spent: more than a hello and any usual control request.
pub const READ_WHEN_SPENT: usize = 1 << 10;

/// How often refused connections and unfinished frames are summed up in
/// the log: the first of a burst is logged in full, the rest counted into
/// one line per interval, so a flood cannot fill the log.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Most connections one instance may have open to the master: its
/// channel and the ones it asked for (the library keeps at most 16). Past
/// this, asking for another is refused. With [`OUTPUT_HIGH_WATER`] and the
/// 1 MiB frame limit, an instance holds at most about 80 MiB of the
/// master's buffers, however it behaves.
pub const MAX_INSTANCE_CONNECTIONS: usize = 20;

/// Most descriptors taken from systemd's `LISTEN_FDS` at start (sockets
/// handed back from the fd store); a larger count is taken as a malformed
/// environment and nothing is adopted. Above the most the master parks:
/// [`MAX_LISTENERS_PER_APP`] for each of many apps fits.
pub const MAX_LISTEN_FDS: usize = 65_536;

/// How often a master starting tries again to bind a `listen` address in
/// use (see `event_loop/startup.rs`): an orphaned instance of a master
/// that died may hold it while it drains.
pub const BIND_RETRY_EVERY: Duration = Duration::from_millis(100);

/// How long past the app's `stop_timeout` a master starting keeps trying
/// to bind a `listen` address in use before it gives up (exit 1).
pub const BIND_RETRY_GRACE: Duration = Duration::from_secs(2);

/// Most listeners one app may hold (bound, or being bound) through its
/// instances' `Listen` requests, counting those kept open while no
/// instance holds them (see [`crate::listeners::Standing`]). Past this a
/// new address is refused, so no app can spend the master's file
/// descriptors, which every app needs.
pub const MAX_LISTENERS_PER_APP: usize = 256;

/// Longest text an instance may report in each of `version`, `commit` and
/// `text`; longer ones are cut, so that a `list` of every app always fits
/// in one frame.
pub const MAX_REPORT_TEXT: usize = 1024;

/// How long accepting pauses after it failed for lack of resources
/// (too many open files): long enough not to spin, short enough that the
/// next client barely notices.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a new connection may take to send its hello before it is
/// closed: a client that connects and says nothing does not hold a slot.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes queued for one client that does not read its replies. Past
/// this the connection is closed rather than buffering without bound.
pub const MAX_PENDING_OUTPUT: usize = 8 << 20;

/// Most bytes of answers queued, not yet read, for connections from the
/// control socket together. Past it, a connection that gets a further
/// answer while one is already queued is closed as one that does not read
/// its replies (each may still have one answer waiting): a thousand
/// clients that never read cannot grow the master by a thousand answers.
pub const MAX_QUEUED_OUTPUT: usize = 64 << 20;

/// Past this many bytes queued on an instance's connection, the master
/// handles no more of its requests (and reads none) until it reads its
/// answers: an instance that pipelines requests without reading holds at
/// most this much plus one answer of the master's memory per connection.
pub const OUTPUT_HIGH_WATER: usize = 2 << 20;

/// Bytes read from a socket or pipe per `read` call (connections read
/// into one buffer of this size, shared, and keep only what they got).
pub const READ_CHUNK: usize = 64 << 10;

/// Most reads from one connection per wake-up, for fairness between
/// clients.
pub const READS_PER_WAKE: usize = 4;

/// Most requests handled from one connection per loop turn; the rest wait
/// for the next turn, and no more is read from that connection until they
/// are handled. Pipelined requests are cheap to send and each may cost the
/// master a `/proc` read, so without this one client could keep every
/// other waiting for seconds.
pub const REQUESTS_PER_TURN: usize = 64;

/// Listen backlog for stream sockets the master binds; the kernel caps it
/// at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Lines of an instance's stderr kept for failure reports.
pub const STDERR_TAIL_LINES: usize = 20;

/// Longest line kept in the stderr tail or forwarded as one log line; the
/// rest of a longer line is cut, marked with `…`.
pub const MAX_LOG_LINE: usize = 4096;

/// How long a connection being closed after a refusal may take to read it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Most expired cache entries freed per loop turn, so a mass expiry is
/// spread over turns instead of stalling other clients.
pub const EXPIRY_SWEEP_BATCH: usize = 1024;

/// Cache expiries wake the master at most this often: entries that expire
/// close together are freed in one wake-up. They are invisible to readers
/// from the exact moment they expire either way.
pub const EXPIRY_WAKE_GRANULARITY: std::time::Duration = std::time::Duration::from_millis(100);

/// Lines of each app's output kept in memory (with [`RECENT_LOG_BYTES`]),
/// which `ally-ctl logs` answers from; the oldest go first.
pub const RECENT_LOG_LINES: usize = 1000;

/// Largest notify datagram read; systemd's own limit is the same order.
/// Longer ones are cut.
pub const MAX_NOTIFY_DATAGRAM: usize = 4096;

/// How long the file-system work for a unix socket path (done by a helper
/// running as the app's user) may take. Past it the helper is killed and
/// the listen fails; the event loop never waits for it.
pub const PATH_SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// Most unix-path listens waiting for their helper at once, over all apps.
/// Past it a listen for a new path is refused until one finishes, so a
/// flood of requests cannot fork the master without bound.
pub const MAX_PENDING_LISTENS: usize = 64;

/// Longest report read from a helper; the rest is ignored.
pub const MAX_HELPER_REPORT: usize = 4096;

/// How long an exiting master waits, in all, for the helpers removing its
/// socket files, so the files are gone when it has exited.
pub const HELPER_EXIT_WAIT: Duration = Duration::from_secs(1);

/// How often the exiting master checks whether those helpers are done.
pub const HELPER_EXIT_POLL: Duration = Duration::from_millis(5);

/// Most notify datagrams read from one instance's socket per loop turn.
/// The rest stay queued in the kernel and are read on the next turns (poll
/// is level-triggered); a sender that fills the queue waits. So a flood
/// costs the master at most this many reads a turn, and every other
/// client still gets its turn.
pub const NOTIFY_DATAGRAMS_PER_TURN: usize = 64;

/// Notify datagrams from processes other than the instance are dropped
/// and counted; one master log line per instance reports them at most
/// this often, with the count since the last one.
pub const NOTIFY_STRANGER_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Random names tried for an instance's notify socket before its start
/// fails: with 128 random bits a name is never in use by chance, so more
/// than one collision means the kernel's randomness is broken.
pub const NOTIFY_BIND_ATTEMPTS: usize = 4;

/// Most bytes read from one output pipe of an instance per loop turn
/// (one read). Poll is level-triggered: the rest is read on the next
/// turns, after every other pipe, connection and timer had its turn; an
/// app writing faster than that waits on its full pipe. 8 KiB of
/// one-byte lines is 4096 lines to log, a millisecond or two: a turn
/// stays short even with several apps flooding, and the control socket
/// answers within a few turns.
pub const OUTPUT_BYTES_PER_TURN: usize = 8 << 10;

/// Most bytes read from each output pipe of an instance once it has
/// exited: a pipe's default capacity, so its last words are kept (unless
/// it enlarged its pipe and filled it), while a helper it left behind that
/// goes on writing cannot hold the loop. Whatever is left is lost with
/// the pipe.
pub const OUTPUT_BYTES_AT_EXIT: usize = 64 << 10;

/// Most bytes queued for one log file's writer thread. A line that finds
/// the queue full is dropped and counted; a marker line with the count
/// follows once it has room (`ally: N lines of web#3 dropped: log sink
/// too slow`).
pub const LOG_SINK_BYTES: usize = 1 << 20;

/// Most bytes queued for the master's stderr (its own lines and those of
/// `log = "inherit"` apps). Past it lines are dropped, counted and marked
/// as for [`LOG_SINK_BYTES`], so a reader that stops reading (a paused
/// terminal, a full pipe) never blocks the master.
pub const STDERR_SINK_BYTES: usize = 256 << 10;

/// Stack of each sink's writer thread: it only copies bytes.
pub const SINK_THREAD_STACK: usize = 64 << 10;

/// How long the master, at exit, waits for its sinks to write what is
/// queued; a stuck reader cannot keep it from exiting.
pub const SINK_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Most bytes of the lines kept in memory per app for `ally-ctl logs`
/// (with [`RECENT_LOG_LINES`]): the oldest go first, and an answer always
/// fits in one frame.
pub const RECENT_LOG_BYTES: usize = 256 << 10;

/// Most bytes read back from the end of a log file when it is opened (at
/// start, `reread` or `reopen`), to fill the lines `ally-ctl logs` shows.
/// The loop reads no log file otherwise.
pub const LOG_SEED_BYTES: u64 = 64 << 10;

/// Most bytes of the state an in-place upgrade hands over (the memfd): the
/// shared state of every app is most of it. An upgrade whose state is
/// larger fails, naming the size, and the master serves on.
pub const MAX_HANDOVER_BYTES: usize = 1 << 30;

/// Most descriptors an in-place upgrade hands over: their numbers go on
/// the new image's command line, as one argument of at most 128 KiB
/// (Linux's `MAX_ARG_STRLEN`). Past it the upgrade fails and the master
/// serves on.
pub const MAX_HANDOVER_FDS: usize = 16_384;

/// How long the probe of a new binary (`--check-handover`) may take before
/// the upgrade fails.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of the probe's output kept for the upgrade's answer.
pub const MAX_PROBE_REPORT: usize = 4 << 10;

/// How long an upgrade waits for unix path sockets still being bound by
/// their helper (each fails at [`PATH_SOCKET_TIMEOUT`] anyway) before it
/// gives up.
pub const UPGRADE_QUIESCE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, just before the exec, the master waits for its log sinks to
/// write what is queued; lines still queued after it are lost.
pub const UPGRADE_FLUSH_GRACE: Duration = Duration::from_secs(2);
