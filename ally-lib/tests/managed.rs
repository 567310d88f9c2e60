//! Managed mode against a fake master: the test process plays the master
//! (it is the parent of the instance it spawns and made its channel, as
//! the real master is) and checks the library's side of the protocol.

mod util;

use std::io::{self, BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ally_proto::{ErrorCode, Failure, InstanceRequest, InstanceResponse, ListenSpec, Network, env};
use rustix::fs::{OFlags, fcntl_getfl};
use util::{Greeting, Handler, TempDir, channel_for, child, is_child, run_ok, serve_channel};

/// An instance child of app `web`, id 7, stopped by `SIGUSR1`.
fn instance(test: &str, role: &str) -> Command {
    let mut cmd = child(test, role);
    cmd.env(env::APP, "web")
        .env(env::INSTANCE, "7")
        .env(env::STOP_SIGNAL, "SIGUSR1");
    cmd
}

/// The fake master's answers, recording every request in `log`.
fn answers(log: Arc<Mutex<Vec<InstanceRequest>>>) -> Handler {
    Arc::new(move |req: &InstanceRequest| {
        log.lock().unwrap().push(req.clone());
        match req {
            InstanceRequest::Listen(ListenSpec {
                network, address, ..
            }) => match (network, address.as_str()) {
                (Network::Tcp, "127.0.0.1:1") => {
                    let f = Failure::new(ErrorCode::ListenFailed, "port 1 is not for tests");
                    (InstanceResponse::Error(f), None)
                }
                // Announces a descriptor and sends none.
                (Network::Tcp, "127.0.0.1:2") => (
                    InstanceResponse::Listening {
                        fds: 1,
                        local: "127.0.0.1:2".to_owned(),
                    },
                    None,
                ),
                _ => {
                    // For udp, a tcp listener: the library must notice.
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    l.set_nonblocking(true).unwrap();
                    let local = l.local_addr().unwrap().to_string();
                    (
                        InstanceResponse::Listening { fds: 1, local },
                        Some(OwnedFd::from(l)),
                    )
                }
            },
            InstanceRequest::Reload => (InstanceResponse::ReloadStarted { instance: 8 }, None),
            _ => (InstanceResponse::Done, None),
        }
    })
}

/// Runs `cmd` as an instance of a fake master that answers with
/// [`answers`] after greeting with `greeting`; returns the requests seen.
fn run_instance(mut cmd: Command, greeting: Greeting) -> Vec<InstanceRequest> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (ours, theirs) = channel_for(&mut cmd);
    serve_channel(ours, greeting, answers(Arc::clone(&seen)));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let out = child_output(&mut child);
    let seen = seen.lock().unwrap().clone();
    assert!(out.0, "child failed: {}\n{seen:?}", out.1);
    seen
}

/// Whether the child ran one test and passed, and its output.
fn child_output(child: &mut std::process::Child) -> (bool, String) {
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout);
    let _ = io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    let status = child.wait().unwrap();
    let ok = status.success() && stdout.contains("test result: ok. 1 passed");
    (
        ok,
        format!("{status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
    )
}

#[test]
fn instance_talks_to_its_master() {
    const ROLE: &str = "instance";
    if is_child(ROLE) {
        return instance_side();
    }
    let seen = run_instance(
        instance("instance_talks_to_its_master", ROLE),
        Greeting::Welcome,
    );
    assert!(seen.contains(&InstanceRequest::Ready), "{seen:?}");
    // Relative unix paths travel absolute and normalized.
    let cwd = std::env::current_dir().unwrap();
    let want = cwd.join("x.sock").to_str().unwrap().to_owned();
    assert!(
        seen.iter().any(|r| matches!(r,
            InstanceRequest::Unlisten(s) if s.network == Network::Unix && s.address == want)),
        "{seen:?}"
    );
}

fn instance_side() {
    let me = ally::instance().unwrap();
    assert!(me.managed);
    assert_eq!((me.app.as_str(), me.id), ("web", 7));

    let listener = ally::listen_tcp("127.0.0.1:0").unwrap();
    assert!(fcntl_getfl(&listener).unwrap().contains(OFlags::NONBLOCK));
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    TcpStream::connect(addr).unwrap();

    ally::ready().unwrap();
    ally::report(ally::Report {
        tasks: Some(1),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ally::reload().unwrap(), 8);

    let err = ally::listen_udp("127.0.0.1:0").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("not udp 127.0.0.1:0"), "{err}");

    let err = ally::listen_tcp("127.0.0.1:1").unwrap_err();
    assert!(err.to_string().contains("port 1 is not for tests"), "{err}");

    let err = ally::listen_tcp("127.0.0.1:2").unwrap_err();
    assert!(
        matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<ally::Error>()),
            Some(ally::Error::MissingFds {
                expected: 1,
                got: 0
            })
        ),
        "{err}"
    );
    // The connection was dropped after that; the next call asks for another.
    ally::unlisten(Network::Unix, "x.sock").unwrap();

    // ALLY_STOP_SIGNAL names the stop signal.
    let stop = ally::stop_signal().unwrap();
    assert!(!stop.is_set());
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1)
        .unwrap();
    assert!(stop.wait_timeout(Duration::from_secs(10)));
}

#[test]
fn refused_hello_is_an_error() {
    const ROLE: &str = "refused";
    if is_child(ROLE) {
        let err = ally::listen_tcp("127.0.0.1:0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("refused this process"), "{err}");
        assert!(err.to_string().contains("not an instance of mine"), "{err}");
        return;
    }
    run_instance(
        instance("refused_hello_is_an_error", ROLE),
        Greeting::Refuse,
    );
}

/// `ALLY_CHANNEL_FD` set but the parent is not `ALLY_MASTER_PID`: every
/// call fails, nothing is bound locally.
#[test]
fn wrong_parent_is_refused_not_simulated() {
    const ROLE: &str = "orphan";
    if is_child(ROLE) {
        let parent = std::os::unix::process::parent_id();
        let err = ally::listen_tcp("127.0.0.1:0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let want = format!(
            "ALLY_CHANNEL_FD is set but the parent process (pid {parent}) is not the master \
             (pid 1)"
        );
        assert!(err.to_string().starts_with(&want), "{err}");
        assert!(ally::ready().is_err());
        assert!(ally::instance().is_err());
        assert!(ally::stop_signal().is_err());
        return;
    }
    let mut cmd = instance("wrong_parent_is_refused_not_simulated", ROLE);
    let (_ours, _theirs) = channel_for(&mut cmd);
    cmd.env(env::MASTER_PID, "1");
    run_ok(cmd);
}

/// The descriptor in `ALLY_CHANNEL_FD` is a connection to a process other
/// than the master: the library refuses to talk over it.
#[test]
fn socket_of_another_process_is_not_trusted() {
    const ROLE: &str = "stranger";
    const OWNER: &str = "socket-owner";
    const PATH_VAR: &str = "ALLY_LIB_TEST_SOCKET";
    if is_child(OWNER) {
        let path = std::env::var_os(PATH_VAR).unwrap();
        let listener = UnixListener::bind(path).unwrap();
        println!("listening");
        // Hold the connection until the instance gives up.
        if let Ok((conn, _)) = listener.accept() {
            let _ = io::copy(&mut &conn, &mut io::sink());
        }
        return;
    }
    if is_child(ROLE) {
        let err = ally::listen_tcp("127.0.0.1:0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("not the master"), "{err}");
        assert!(err.to_string().contains("ALLY_CHANNEL_FD"), "{err}");
        return;
    }
    let dir = TempDir::new("stranger");
    let socket = dir.path().join("master.sock");
    let mut owner = child("socket_of_another_process_is_not_trusted", OWNER)
        .env(PATH_VAR, &socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.ends_with("listening"))));
    let stranger = UnixStream::connect(&socket).unwrap();
    rustix::io::fcntl_setfd(&stranger, rustix::io::FdFlags::empty()).unwrap();
    let mut cmd = instance("socket_of_another_process_is_not_trusted", ROLE);
    cmd.env(env::CHANNEL_FD, stranger.as_raw_fd().to_string())
        .env(env::MASTER_PID, std::process::id().to_string());
    run_ok(cmd);
    let _ = owner.kill();
    let _ = owner.wait();
}
