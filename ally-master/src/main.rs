//! `ally-master --config ally.toml`: owns the listening sockets of the apps
//! in its config, starts their instances, and reloads them without
//! dropping a connection.

#![deny(unsafe_code)]

mod app;
mod apps;
mod budget;
mod config;
mod conn;
mod conns;
mod control_socket;
mod event_loop;
mod fd_store;
mod handover;
mod helpers;
mod instance;
mod limits;
mod lines;
mod listeners;
mod log;
mod logs;
mod notify;
mod path_socket;
mod pending_listens;
mod proc_stats;
mod run;
mod runtime;
mod scope;
mod sd_notify;
mod shared_state;
mod signals;
mod sink;
mod slots;
mod spawn;
mod sys;
mod tally;
mod users;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

/// ally-master: owns listening sockets and gives services zero-downtime
/// reloads.
#[derive(FromArgs, Debug)]
#[argh(
    example = "ally-master --config /etc/ally/web.toml\n\
               ally-master run --listen tcp://127.0.0.1:8080 -- ./server",
    note = "Signals: SIGTERM or SIGINT stop every app gracefully, then the master exits 0; \
            a second one kills the instances at once. SIGHUP reopens logs and rereads the \
            config. SIGUSR2 re-executes the binary from disk in place, with all of its state. \
            `ally-master run` runs one app from flags instead of a config file.",
    error_code(
        1,
        "the master could not run (control socket in use, unsafe runtime directory, \
         log file, I/O error)"
    ),
    error_code(2, "usage error"),
    error_code(3, "the config file is invalid")
)]
struct Args {
    /// path of the config file (or `run` and the app's flags)
    #[argh(option)]
    config: Option<PathBuf>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// path of the control socket, relative to the current directory
    /// (default: <runtime dir>/<config stem>.sock, or <app name>.sock for
    /// `run`)
    #[argh(option)]
    socket: Option<PathBuf>,
    /// check the config (and its includes) and exit: 0 if valid, 3 if not
    #[argh(switch)]
    check: bool,
    /// write a newline to this descriptor once every app is serving,
    /// stopped or failed (readiness for s6 and other supervisors)
    #[argh(option)]
    ready_fd: Option<i32>,
    /// instead of a config file: one app, from flags
    #[argh(subcommand)]
    mode: Option<Mode>,
}

/// What the master runs, besides a config file.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(subcommand)]
enum Mode {
    /// `ally-master run`.
    Run(run::RunArgs),
}

/// Where the master's config comes from.
#[derive(Debug)]
enum Source {
    /// `--config FILE`.
    File(PathBuf),
    /// `ally-master run`'s flags.
    Flags(Box<run::RunArgs>),
}

/// How the master ended, mapped one to one to exit codes.
#[derive(Debug)]
enum Failure {
    Runtime(String),
    Usage,
    Config(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Runtime(_) => 1,
            Failure::Usage => 2,
            Failure::Config(_) => 3,
        }
    }
}

fn main() -> ExitCode {
    // The launcher and the helper must run before anything else: the
    // descriptors they are given must stay open.
    let mut raw = std::env::args_os();
    match raw.nth(1) {
        Some(a) if a == spawn::LAUNCH_ARG => return spawn::launch(&raw.collect::<Vec<_>>()),
        Some(a) if a == path_socket::HELPER_ARG => {
            return path_socket::main(&raw.collect::<Vec<_>>());
        }
        _ => {}
    }
    if let Err(e) = sys::cloexec_inherited_fds() {
        eprintln!("ally-master: cannot list inherited file descriptors: {e}");
        return ExitCode::from(Failure::Runtime(String::new()).exit_code());
    }
    let argv: Vec<String> = std::env::args().collect();
    // What an upgrade appended (the probe's or the new image's options)
    // comes off the end first: after `run ... --` the parser would take it
    // for the app's command.
    let (original, tail) = handover::tail::split(&argv);
    let strs: Vec<&str> = argv[..original].iter().map(String::as_str).collect();
    let mut args = match Args::from_args(&strs[..1], &strs[1..]) {
        Ok(args) => args,
        Err(early) => {
            if early.status.is_ok() {
                println!("{}", early.output);
                return ExitCode::SUCCESS;
            }
            eprintln!("{}", early.output);
            return ExitCode::from(Failure::Usage.exit_code());
        }
    };
    // An upgrade's probe, and the new image after it (its descriptors are
    // close-on-exec again now, as every inherited one): the rest of the
    // command line is the original one, kept only to be shown.
    match tail {
        handover::tail::Tail::Check(memfd) => return handover::resume::check(memfd),
        handover::tail::Tail::Resume(resume) => {
            let code = handover::resume::main(&argv, &resume);
            log::flush(std::time::Instant::now() + limits::SINK_EXIT_GRACE);
            return code;
        }
        handover::tail::Tail::None => {}
    }
    // Next, while this is the only thread: the sockets systemd handed back
    // from its fd store, owned before anything can take their numbers.
    let inherited = fd_store::Inherited::from_env();
    if args.version {
        println!("{}", version::lines());
        return ExitCode::SUCCESS;
    }
    let source = match (args.config.take(), args.mode.take()) {
        (Some(path), None) => Source::File(path),
        (None, Some(Mode::Run(flags))) => Source::Flags(Box::new(flags)),
        (Some(_), Some(_)) => {
            eprintln!("ally-master: give --config FILE or `run`, not both (see --help)");
            return ExitCode::from(Failure::Usage.exit_code());
        }
        (None, None) => {
            eprintln!("ally-master: --config FILE (or `run ... -- CMD`) is required (see --help)");
            return ExitCode::from(Failure::Usage.exit_code());
        }
    };
    let code = match run(args, argv, source, inherited) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Runtime(m) | Failure::Config(m) => log!("{m}"),
                Failure::Usage => {}
            }
            ExitCode::from(failure.exit_code())
        }
    };
    // The last lines, unless stderr's reader is stuck: then exit anyway.
    log::flush(std::time::Instant::now() + limits::SINK_EXIT_GRACE);
    code
}

/// Runs the master of `args`, parsed from `argv` (kept to be the command
/// line of its upgrades), with the sockets systemd handed back.
fn run(
    args: Args,
    argv: Vec<String>,
    source: Source,
    inherited: fd_store::Inherited,
) -> Result<(), Failure> {
    let (config, socket_name, from_file) = match &source {
        Source::File(path) => {
            let config = config::load(path).map_err(|e| Failure::Config(e.to_string()))?;
            let name = config.path.clone();
            (config, name, true)
        }
        Source::Flags(flags) => {
            let (config, name) = flags.config().map_err(Failure::Config)?;
            (config, name, false)
        }
    };
    if args.check {
        let names: Vec<&str> = config.apps.iter().map(|a| a.name.as_str()).collect();
        println!(
            "{}: valid, {} app(s): {}",
            config.path.display(),
            names.len(),
            names.join(", ")
        );
        return Ok(());
    }
    let socket = runtime::socket_path(
        args.socket.as_deref().or(config.master.socket.as_deref()),
        &socket_name,
    )
    .map_err(|e| Failure::Runtime(e.to_string()))?;
    // Handlers first: a SIGTERM that arrives while we bind is not lost.
    let signals = signals::Signals::install()
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    let control_group = config
        .master
        .group
        .as_deref()
        .map(users::group_id)
        .transpose()
        .map_err(|e| Failure::Config(format!("[master] group: {e}")))?;
    let control =
        runtime::bind(&socket, control_group).map_err(|e| Failure::Runtime(e.to_string()))?;
    let exe = event_loop::Exe::of_this_process(argv)
        .map_err(|e| Failure::Runtime(format!("cannot open the running binary: {e}")))?;
    let launch = instance::Launch {
        socket,
        fd_limit: sys::raise_fd_limit(),
    };
    if let Some(raw) = args.ready_fd.filter(|&raw| inherited.contains(raw)) {
        return Err(Failure::Runtime(format!(
            "--ready-fd {raw} is one of the sockets passed in LISTEN_FDS; give another descriptor"
        )));
    }
    let ready_fd = args
        .ready_fd
        .map(sys::adopt_fd)
        .transpose()
        .map_err(|e| Failure::Runtime(format!("--ready-fd: {e}")))?;
    let socket = launch.socket.clone();
    let started = event_loop::Master::new(config, launch, control, signals, exe, inherited);
    let mut master = match started {
        Ok(master) => master,
        Err(failed) => {
            // Bound by this master above; nobody serves it now.
            let _ = std::fs::remove_file(&socket);
            return match failed {
                event_loop::StartError::Failed(message) => Err(Failure::Runtime(message)),
                event_loop::StartError::Stopped => Ok(()),
            };
        }
    };
    if let Some(fd) = ready_fd {
        master.announce_on(fd);
    }
    if !from_file {
        master.without_config_file();
    }
    master.admit_group(control_group);
    master
        .run()
        .map_err(|e| Failure::Runtime(format!("event loop failed: {e}")))
}
