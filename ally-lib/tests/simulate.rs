//! Simulate mode: no master in the environment, so `listen_*` bind here.

mod util;

use std::io;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{self, UnixDatagram, UnixStream};

use ally::{ListenOptions, Network};
use rustix::fs::{OFlags, fcntl_getfl};
use rustix::io::{FdFlags, fcntl_getfd};
use util::{TempDir, child, is_child, run_ok};

fn assert_nonblocking_cloexec(fd: impl AsFd) {
    let fd = fd.as_fd();
    assert!(fcntl_getfl(fd).unwrap().contains(OFlags::NONBLOCK));
    assert!(fcntl_getfd(fd).unwrap().contains(FdFlags::CLOEXEC));
}

#[test]
fn tcp_listener_is_nonblocking() {
    let listener = ally::listen_tcp("127.0.0.1:0").unwrap();
    assert_nonblocking_cloexec(&listener);
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    // The socket is non-blocking: std's accept says so at once (the
    // crate's own `accept` waits instead).
    let err = std::net::TcpListener::accept(&listener).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn udp_socket_is_nonblocking() {
    let socket = ally::listen_udp("127.0.0.1:0").unwrap();
    assert_nonblocking_cloexec(&socket);
    let err = socket.recv(&mut [0u8; 8]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn raw_fd_form_and_unlisten() {
    let fd = ally::listen_fd(Network::Tcp, "[::1]:0");
    // IPv6 may be disabled on the host; only check when it works.
    if let Ok(fd) = fd {
        assert_nonblocking_cloexec(&fd);
        let listener = std::net::TcpListener::from(fd);
        assert!(listener.local_addr().unwrap().is_ipv6());
    }
    ally::unlisten(Network::Tcp, "127.0.0.1:0").unwrap();
}

#[test]
fn bad_addresses_fail_before_binding() {
    for addr in ["localhost:80", "", ":http", "1.2.3.4"] {
        let err = ally::listen_tcp(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{addr}: {err}");
    }
    assert!(ally::unlisten(Network::Udp, "nope").is_err());
}

#[test]
fn tcp_port_in_use_is_addr_in_use() {
    let first = ally::listen_tcp("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap().to_string();
    let err = ally::listen_tcp(&addr).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn no_master_calls() {
    ally::ready().unwrap();
    ally::report(ally::Report::default()).unwrap();
    let err = ally::reload().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("without an ally master"), "{err}");
    let me = ally::instance().unwrap();
    assert!(!me.managed);
    assert_eq!(me.id, 0);
}

#[test]
fn unix_path_abstract_and_datagram() {
    let dir = TempDir::new("unix");
    let path = dir.path().join("a.sock");
    let listener = ally::listen_unix(&path).unwrap();
    assert_nonblocking_cloexec(&listener);
    assert_eq!(listener.local_addr().unwrap().as_pathname(), Some(&*path));
    UnixStream::connect(&path).unwrap();

    // Someone listens: refused. Left behind by a dead listener: replaced.
    let err = ally::listen_unix(&path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    drop(listener);
    assert!(path.exists());
    // Retried a while: a child another test spawns at this moment holds a
    // copy of every descriptor until its exec, so the dropped listener can
    // look alive for an instant.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let listener = loop {
        match ally::listen_unix(&path) {
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other.unwrap(),
        }
    };
    drop(listener);

    // A live socket of the other type is in use, not stale: it stays.
    let dgram_path = dir.path().join("d.sock");
    let dgram = UnixDatagram::bind(&dgram_path).unwrap();
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&dgram_path);
    let err = ally::listen_unix(&dgram_path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert_eq!(inode(&dgram_path), before);
    // And a stream listener with a full backlog is in use too, at once.
    let full_path = dir.path().join("full.sock");
    let full = net::UnixListener::bind(&full_path).unwrap();
    rustix::net::listen(&full, 0).unwrap();
    let _pending = UnixStream::connect(&full_path).unwrap();
    let started = std::time::Instant::now();
    let err = ally::listen_unix(&full_path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    drop((dgram, full));

    // A file that is not a socket is never removed.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "x").unwrap();
    assert!(ally::listen_unix(&file).is_err());
    assert!(file.exists());

    let moded = dir.path().join("m.sock");
    let _m = ListenOptions::new()
        .unix_mode(0o600)
        .listen_unix(&moded)
        .unwrap();
    let mode = std::fs::metadata(&moded).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let name = format!("ally-lib-test-{}", std::process::id());
    let abs = ally::listen_unix(format!("@{name}")).unwrap();
    assert_nonblocking_cloexec(&abs);
    assert_eq!(
        abs.local_addr().unwrap().as_abstract_name(),
        Some(name.as_bytes())
    );
    let to = net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    UnixStream::connect_addr(&to).unwrap();

    let gram_path = dir.path().join("g.sock");
    let gram = ally::listen_unixgram(&gram_path).unwrap();
    assert_nonblocking_cloexec(&gram);
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"hi", &gram_path)
        .unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(gram.recv(&mut buf).unwrap(), 2);
}

/// A relative unix path is made absolute against the current directory;
/// run in a child whose current directory is a temporary one.
#[test]
fn unix_relative_path_is_absolute() {
    const ROLE: &str = "relative";
    if is_child(ROLE) {
        let listener = ally::listen_unix("sub/../rel.sock").unwrap();
        let cwd = std::env::current_dir().unwrap();
        let local = listener.local_addr().unwrap();
        let got = local.as_pathname().unwrap();
        assert!(got.is_absolute(), "{got:?}");
        assert_eq!(got, cwd.join("sub/../rel.sock"));
        return;
    }
    let dir = TempDir::new("relative");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut cmd = child("unix_relative_path_is_absolute", ROLE);
    cmd.current_dir(dir.path());
    run_ok(cmd);
    assert!(dir.path().join("rel.sock").exists());
}

/// Socket activation: a listener passed as descriptor 3 with `LISTEN_PID`
/// and `LISTEN_FDS` is used instead of binding. A shell moves the socket
/// from stdin to descriptor 3 and execs the test binary with its own pid.
#[test]
fn listen_fds_socket_is_used_instead_of_binding() {
    const ROLE: &str = "activated";
    const ADDR_VAR: &str = "ALLY_LIB_TEST_ADDR";
    if is_child(ROLE) {
        let addr = std::env::var(ADDR_VAR).unwrap();
        // Binding would fail: descriptor 3 holds this address.
        let listener = ally::listen_tcp(&addr).unwrap();
        assert_eq!(listener.local_addr().unwrap().to_string(), addr);
        assert_nonblocking_cloexec(&listener);
        // The connection the parent made before the exec is queued on it.
        let stop = ally::StopSignal::new().unwrap();
        assert!(ally::drain::accept(&listener, &stop).unwrap().is_some());
        // Each passed socket is handed out once.
        let err = ally::listen_tcp(&addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _queued = std::net::TcpStream::connect(&addr).unwrap();
    let test = child("listen_fds_socket_is_used_instead_of_binding", ROLE);
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(test.get_program())
        .args(test.get_args())
        .envs(test.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env(ADDR_VAR, &addr)
        .stdin(std::os::fd::OwnedFd::from(listener));
    run_ok(cmd);
}

/// Socket activation by name: the socket passed as `http` in
/// `LISTEN_FDNAMES` is taken wherever it is bound, refused for another
/// network, and once taken the address is bound as without a name.
#[test]
fn listen_fdnames_socket_is_taken_by_name() {
    const ROLE: &str = "named";
    const ADDR_VAR: &str = "ALLY_LIB_TEST_ADDR";
    if is_child(ROLE) {
        let passed = std::env::var(ADDR_VAR).unwrap();
        let http = ListenOptions::new().systemd_name("http");
        // A UDP request for a TCP socket of that name: refused, and the
        // socket stays in the pool.
        let err = http.listen_udp("127.0.0.9:0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("`http`"), "{err}");
        // Another address: only the name can match the passed socket.
        let listener = http.listen_tcp("127.0.0.9:0").unwrap();
        assert_eq!(listener.local_addr().unwrap().to_string(), passed);
        assert_nonblocking_cloexec(&listener);
        let stop = ally::StopSignal::new().unwrap();
        assert!(ally::drain::accept(&listener, &stop).unwrap().is_some());
        // Taken: the same request binds its own address now.
        let bound = http.listen_tcp("127.0.0.9:0").unwrap();
        assert_eq!(bound.local_addr().unwrap().ip().to_string(), "127.0.0.9");
        // A name nobody passed falls back to the address.
        let other = ListenOptions::new()
            .systemd_name("admin")
            .listen_tcp("127.0.0.1:0")
            .unwrap();
        assert_ne!(other.local_addr().unwrap().to_string(), passed);
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _queued = std::net::TcpStream::connect(&addr).unwrap();
    let test = child("listen_fdnames_socket_is_taken_by_name", ROLE);
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(
            r#"exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http exec "$0" "$@""#,
        )
        .arg(test.get_program())
        .args(test.get_args())
        .envs(test.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env(ADDR_VAR, &addr)
        .stdin(std::os::fd::OwnedFd::from(listener));
    run_ok(cmd);
}
