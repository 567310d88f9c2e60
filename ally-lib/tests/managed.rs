//! Managed mode against a fake master: the test process plays the master
//! (it is the parent of the instance it spawns, as the real master is) and
//! checks the library's side of the protocol.

mod util;

use std::io::{self, BufRead, BufReader, IoSlice};
use std::mem::MaybeUninit;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ally_proto::frame::{encode, read_from};
use ally_proto::{
    ErrorCode, Failure, Hello, HelloReply, InstanceRequest, InstanceResponse, ListenSpec, Network,
    PROTOCOL_VERSION, Role, env,
};
use rustix::fs::{OFlags, fcntl_getfl};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use util::{TempDir, child, is_child, run_ok};

/// An instance child pointed at `socket`, with `master` as its master pid.
fn instance(test: &str, role: &str, socket: &Path, master: u32) -> Command {
    let mut cmd = child(test, role);
    cmd.env(env::SOCKET, socket)
        .env(env::MASTER_PID, master.to_string())
        .env(env::APP, "web")
        .env(env::INSTANCE, "7")
        .env(env::STOP_SIGNAL, "SIGUSR1");
    cmd
}

/// Writes one encoded frame, with `fd` attached as `SCM_RIGHTS`.
fn send(conn: &UnixStream, frame: &[u8], fd: Option<BorrowedFd<'_>>) {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    }
    let n = sendmsg(
        conn,
        &[IoSlice::new(frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .unwrap();
    assert_eq!(n, frame.len());
}

/// How the fake master greets.
#[derive(Clone, Copy)]
enum Greeting {
    Welcome,
    Refuse,
}

/// Serves instance connections on `listener`, one after the other, and
/// records every request.
fn fake_master(listener: UnixListener, greeting: Greeting) -> Arc<Mutex<Vec<InstanceRequest>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            serve_instance(&conn, greeting, &log);
        }
    });
    seen
}

fn serve_instance(conn: &UnixStream, greeting: Greeting, log: &Mutex<Vec<InstanceRequest>>) {
    let hello: Hello = read_from(conn).unwrap();
    assert_eq!(hello, Hello::new(Role::Instance));
    if let Greeting::Refuse = greeting {
        let failure = Failure::new(ErrorCode::NotPermitted, "pid is not an instance of mine");
        send(conn, &encode(&HelloReply::Refused(failure)).unwrap(), None);
        return;
    }
    let welcome = HelloReply::Welcome {
        version: PROTOCOL_VERSION,
        master_pid: std::process::id(),
    };
    send(conn, &encode(&welcome).unwrap(), None);
    while let Ok(req) = read_from::<_, InstanceRequest>(conn) {
        log.lock().unwrap().push(req.clone());
        let tcp = || {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            l
        };
        let reply = |resp: InstanceResponse| encode(&resp).unwrap();
        match req {
            InstanceRequest::Listen(ListenSpec {
                network, address, ..
            }) => {
                match (network, address.as_str()) {
                    (Network::Tcp, "127.0.0.1:1") => {
                        let f = Failure::new(ErrorCode::ListenFailed, "port 1 is not for tests");
                        send(conn, &reply(InstanceResponse::Error(f)), None);
                    }
                    (Network::Tcp, "127.0.0.1:2") => {
                        // Announces a descriptor and sends none.
                        let local = "127.0.0.1:2".to_owned();
                        send(
                            conn,
                            &reply(InstanceResponse::Listening { fds: 1, local }),
                            None,
                        );
                    }
                    _ => {
                        // For udp, a tcp listener: the library must notice.
                        let l = tcp();
                        let local = l.local_addr().unwrap().to_string();
                        let frame = reply(InstanceResponse::Listening { fds: 1, local });
                        send(conn, &frame, Some(l.as_fd()));
                    }
                }
            }
            InstanceRequest::Reload => {
                send(
                    conn,
                    &reply(InstanceResponse::ReloadStarted { instance: 8 }),
                    None,
                );
            }
            _ => send(conn, &reply(InstanceResponse::Done), None),
        }
    }
}

#[test]
fn instance_talks_to_its_master() {
    const ROLE: &str = "instance";
    if is_child(ROLE) {
        return instance_side();
    }
    let dir = TempDir::new("managed");
    let socket = dir.path().join("master.sock");
    let seen = fake_master(UnixListener::bind(&socket).unwrap(), Greeting::Welcome);
    run_ok(instance(
        "instance_talks_to_its_master",
        ROLE,
        &socket,
        std::process::id(),
    ));
    let seen = seen.lock().unwrap();
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
    // The connection was dropped after that; the next call reconnects.
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
    let dir = TempDir::new("refused");
    let socket = dir.path().join("master.sock");
    fake_master(UnixListener::bind(&socket).unwrap(), Greeting::Refuse);
    run_ok(instance(
        "refused_hello_is_an_error",
        ROLE,
        &socket,
        std::process::id(),
    ));
}

/// `ALLY_SOCKET` set but the parent is not `ALLY_MASTER_PID`: every call
/// fails, nothing is bound locally.
#[test]
fn wrong_parent_is_refused_not_simulated() {
    const ROLE: &str = "orphan";
    if is_child(ROLE) {
        let parent = std::os::unix::process::parent_id();
        let err = ally::listen_tcp("127.0.0.1:0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let want = format!(
            "ALLY_SOCKET is set but the parent process (pid {parent}) is not the master (pid 1); \
             unset ALLY_* to run standalone"
        );
        assert_eq!(err.to_string(), want);
        assert!(ally::ready().is_err());
        assert!(ally::instance().is_err());
        assert!(ally::stop_signal().is_err());
        return;
    }
    let dir = TempDir::new("orphan");
    run_ok(instance(
        "wrong_parent_is_refused_not_simulated",
        ROLE,
        &dir.path().join("none.sock"),
        1,
    ));
}

/// The socket in `ALLY_SOCKET` belongs to a process other than the master:
/// the library refuses to talk to it.
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
    run_ok(instance(
        "socket_of_another_process_is_not_trusted",
        ROLE,
        &socket,
        std::process::id(),
    ));
    let _ = owner.kill();
    let _ = owner.wait();
}
