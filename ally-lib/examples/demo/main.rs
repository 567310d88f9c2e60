//! The demo service: an HTTP/1.1 server (std and `ally` only, a thread per
//! connection) that loses no request across reloads.
//!
//! ```text
//! demo [--addr ADDR] [--idle-timeout-ms N] [--delay-ms N]
//!      [--exit-at-start] [--never-ready] [--ignore-stop]
//! ```
//!
//! Every `GET` (or `HEAD`) is answered `200` with the body
//! `instance {id} pid {pid}\n` and an `X-Ally-Instance` header. Run it
//! under `ally-master`, or alone (`cargo run -p ally --example demo`), where
//! Ctrl-C drains and exits (a second Ctrl-C exits at once). Once ready it
//! reports its version; alone under systemd (`Type=notify`) it says
//! `READY=1`, `STATUS=version V` and, when stopped, `STOPPING=1`.
//!
//! Options:
//! - `--addr ADDR`: listen address (default `127.0.0.1:8080`);
//! - `--idle-timeout-ms N`: close keep-alive connections idle this long
//!   (default 5000);
//! - `--delay-ms N`: sleep before answering each request (default 0);
//! - `--exit-at-start`: exit with status 3 at once (a broken new version);
//! - `--never-ready`: listen but never call `ally::ready`;
//! - `--ignore-stop`: keep serving after the stop signal.
//!
//! Logs to stderr, one line each: `demo: instance N pid P listening on ADDR`,
//! `demo: instance N pid P is start K of its app (previous: ...)` (a count
//! and a note kept in the master's shared state, under a lock),
//! `demo: instance N pid P stopping: draining K connections`, and
//! `demo: instance N pid P exiting: ...`.
//!
//! Exit status: 0 after a drain (complete or cut by the drain deadline),
//! 1 on a runtime error, 2 on a usage error, 3 with `--exit-at-start`.

mod http;

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use ally::StopSignal;
use ally::http::{Options, Server};

/// Longest wait for connections to finish once stopping.
const DRAIN_DEADLINE: Duration = Duration::from_secs(25);

/// Exit status for `--exit-at-start`.
const EXIT_AT_START: u8 = 3;

/// Exit status for a bad command line.
const USAGE: u8 = 2;

const HELP: &str = "usage: demo [--addr ADDR] [--idle-timeout-ms N] [--delay-ms N] \
                    [--exit-at-start] [--never-ready] [--ignore-stop]";

#[derive(Debug)]
struct Args {
    addr: String,
    idle_timeout: Duration,
    delay: Duration,
    exit_at_start: bool,
    never_ready: bool,
    ignore_stop: bool,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("demo: {msg}\n{HELP}");
            return ExitCode::from(USAGE);
        }
    };
    if args.exit_at_start {
        eprintln!("demo: exiting at start with status {EXIT_AT_START} (--exit-at-start)");
        return ExitCode::from(EXIT_AT_START);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: pid {}: {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".to_owned(),
        idle_timeout: Duration::from_millis(5000),
        delay: Duration::ZERO,
        exit_at_start: false,
        never_ready: false,
        ignore_stop: false,
    };
    let millis = |flag: &str, v: Option<String>| -> Result<Duration, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{flag}: `{v}` is not a number of milliseconds"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => args.addr = it.next().ok_or("--addr needs a value")?,
            "--idle-timeout-ms" => args.idle_timeout = millis(&arg, it.next())?,
            "--delay-ms" => args.delay = millis(&arg, it.next())?,
            "--exit-at-start" => args.exit_at_start = true,
            "--never-ready" => args.never_ready = true,
            "--ignore-stop" => args.ignore_stop = true,
            "-h" | "--help" => return Err("help".to_owned()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.idle_timeout.is_zero() {
        return Err("--idle-timeout-ms must be more than 0".to_owned());
    }
    Ok(args)
}

fn run(args: &Args) -> std::io::Result<()> {
    // First, so the stop signal never finds the process without a handler.
    let stop = ally::stop_signal()?;
    let listener = ally::listen_tcp(&args.addr)?;
    let me = ally::instance()?;
    let pid = std::process::id();
    let who = format!("instance {} pid {pid}", me.id);
    eprintln!("demo: {who} listening on {}", listener.local_addr()?);
    // Shared state outlives instances: count the app's starts under a lock,
    // and leave a note for the next instance.
    let (starts, previous) = {
        let _guard = ally::locker("demo-starts").lock()?;
        let previous = ally::cache("demo").get("last-start")?;
        ally::cache("demo").set("last-start", who.as_bytes())?;
        (ally::atomic("demo-starts").add(1)?, previous)
    };
    let previous = previous.map_or_else(
        || "none".into(),
        |p| String::from_utf8_lossy(&p).into_owned(),
    );
    eprintln!("demo: {who} is start {starts} of its app (previous: {previous})");
    if args.never_ready {
        eprintln!("demo: {who} never calling ready (--never-ready)");
    } else {
        ally::ready()?;
        // `ally-ctl list` shows it; systemd alone, `systemctl status`.
        ally::report(ally::Report {
            version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Default::default()
        })?;
    }
    let accept_until = if args.ignore_stop {
        let stop = stop.clone();
        let who = who.clone();
        thread::spawn(move || {
            stop.wait();
            eprintln!("demo: {who} ignoring the stop signal (--ignore-stop)");
        });
        // Set by nothing: accept forever.
        StopSignal::new()?
    } else {
        stop
    };
    let routes = http::Routes {
        instance: me.id,
        pid,
        delay: args.delay,
    };
    let options = Options::new()
        .idle_timeout(args.idle_timeout)
        .drain_deadline(DRAIN_DEADLINE);
    let server = Server::new(options, move |req| routes.answer(req))?;
    let accepted = server.accept_until(&listener, &accept_until);
    // The master keeps the socket open for the new instance; in simulate
    // mode this is where new connections start being refused.
    drop(listener);
    if let Err(e) = &accepted {
        eprintln!("demo: {who} {e}");
    }
    eprintln!(
        "demo: {who} stopping: draining {} connections",
        server.active()
    );
    let drained = server.drain();
    if drained.is_complete() {
        eprintln!("demo: {who} exiting: all connections closed");
    } else {
        eprintln!(
            "demo: {who} exiting: drain deadline of {} s passed with {} connections open",
            DRAIN_DEADLINE.as_secs(),
            drained.left
        );
    }
    Ok(accepted?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse() {
        let a = parse(&["--addr", ":0", "--delay-ms", "7", "--ignore-stop"]).unwrap();
        assert_eq!(a.addr, ":0");
        assert_eq!(a.delay, Duration::from_millis(7));
        assert_eq!(a.idle_timeout, Duration::from_millis(5000));
        assert!(a.ignore_stop && !a.never_ready && !a.exit_at_start);
        assert!(parse(&["--addr"]).is_err());
        assert!(parse(&["--delay-ms", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
