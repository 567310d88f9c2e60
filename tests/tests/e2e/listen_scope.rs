//! The master binds for an instance only what that instance's user could
//! bind itself: the file-system work of a unix path runs as the app's user
//! and follows no symlink, a socket file is replaced only when nobody is
//! bound to it, the event loop never waits for it, and the master's own
//! sockets, other apps' addresses and privileged ports are refused.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ally_tests::bins::{Layout, bins};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::script::write_script;
use ally_tests::service::Service;
use ally_tests::users::{USER, is_root, test_user};

/// How long a probe may take to print how its requests went.
const VERDICT: Duration = Duration::from_secs(30);

/// How long `ally-ctl list` may take while a request is handled.
const PROMPT: Duration = Duration::from_secs(1);

/// The `listen-probe` binary, built with the others.
fn probe_bin() -> PathBuf {
    bins();
    let path = Layout::of_current_exe().profile_dir().join("listen-probe");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// App `name` running the probe with `requests`, stopped until started.
fn probe_app(dir: &TestDir, name: &str, requests: &[&str]) -> AppConfig {
    let service = Service::new(dir.path(), name, &probe_bin(), requests);
    AppConfig::new(name, service.path())
        .ready_timeout("20s")
        .line("restart = { enabled = false }")
}

/// The control socket the master of `dir` will have.
fn control_socket(dir: &TestDir) -> PathBuf {
    ally_proto::paths::control_socket(&dir.path().join("run"), &dir.path().join("ally.toml"))
}

/// Waits for instance 1 of `app` to say how its request for `network
/// address` went: the rest of its line, `ok ...` or `error ...`.
fn verdict(master: &Master, app: &str, network: &str, address: &str) -> String {
    let prefix = format!("[{app}#1] listen-probe: {network} {address} ");
    let line = master.wait_for_log(&prefix, VERDICT);
    line.split_once(&prefix)
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default()
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

#[test]
fn the_masters_control_socket_asked_as_unixgram_is_refused() {
    let dir = TestDir::new("scope_control");
    let control = control_socket(&dir);
    let address = control.to_string_lossy().into_owned();
    let request = format!("unixgram:{address}");
    let app = probe_app(&dir, "probe", &[&request]).line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let before = inode(master.socket());
    master.ctl_expect(&["start", "probe"], 0);
    let got = verdict(&master, "probe", "unixgram", &address);
    assert!(
        got.starts_with("error") && got.contains("control socket"),
        "the control socket was handed out: {got}\n{}",
        master.log_tail()
    );
    assert_eq!(
        inode(master.socket()),
        before,
        "the control socket was replaced"
    );
    master.ctl_expect(&["list"], 0);
}

#[test]
fn another_apps_live_stream_socket_asked_as_unixgram_is_refused() {
    let dir = TestDir::new("scope_other_app");
    let path = dir.path().join("owner.sock");
    let address = path.to_string_lossy().into_owned();
    let idle = write_script(dir.path(), "idle", "exec sleep 600\n");
    let owner = AppConfig::new("owner", &idle)
        .line(&format!("listen = [\"unix://{address}\"]"))
        .line("ready = \"immediate\"");
    let request = format!("unixgram:{address}");
    let probe = probe_app(&dir, "probe", &[&request]).line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[owner, probe]));
    let before = inode(&path);
    master.ctl_expect(&["start", "probe"], 0);
    let got = verdict(&master, "probe", "unixgram", &address);
    assert!(
        got.starts_with("error") && got.contains("held by app owner"),
        "another app's socket was handed out: {got}\n{}",
        master.log_tail()
    );
    assert_eq!(inode(&path), before, "the other app's socket was replaced");
    UnixStream::connect(&path).expect("the other app's socket still accepts");
}

#[test]
fn a_foreign_live_datagram_socket_asked_as_stream_is_refused() {
    let dir = TestDir::new("scope_foreign_dgram");
    let path = dir.path().join("log.sock");
    let foreign = UnixDatagram::bind(&path).expect("bind the foreign socket");
    let address = path.to_string_lossy().into_owned();
    let request = format!("unix:{address}");
    let app = probe_app(&dir, "probe", &[&request]);
    let before = inode(&path);
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let got = verdict(&master, "probe", "unix", &address);
    assert!(
        got.starts_with("error") && got.contains("in use"),
        "a live datagram socket was replaced: {got}\n{}",
        master.log_tail()
    );
    assert_eq!(inode(&path), before, "the foreign socket was replaced");
    let sender = UnixDatagram::unbound().unwrap();
    sender.send_to(b"still here", &path).expect("send to it");
    let mut buf = [0u8; 16];
    let n = foreign.recv(&mut buf).expect("it still receives");
    assert_eq!(&buf[..n], b"still here");
}

/// A stream listener with a backlog of 0 and one client already queued: the
/// next blocking connect to it waits until that client is accepted.
fn full_listener(path: &Path) -> (OwnedFd, UnixStream) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
    rustix::net::listen(&fd, 0).unwrap();
    let queued = UnixStream::connect(path).expect("the first client is queued");
    (fd, queued)
}

/// Runs `ally-ctl list` and returns how long it took; kills it and fails
/// the test if it takes longer than [`PROMPT`].
fn list_promptly(master: &Master, ctl: &Path) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(ctl)
        .arg("--socket")
        .arg(master.socket())
        .arg("list")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ally-ctl list");
    let mut status = None;
    wait_until(PROMPT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let elapsed = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "ally-ctl list did not answer within {PROMPT:?} while a listen was handled\n{}",
            master.log_tail()
        );
    }
    assert!(status.is_some_and(|s| s.success()), "ally-ctl list failed");
    elapsed
}

#[test]
fn a_foreign_listener_with_a_full_backlog_does_not_delay_the_master() {
    let dir = TestDir::new("scope_full_backlog");
    let path = dir.path().join("busy.sock");
    let (_listener, _queued) = full_listener(&path);
    let before = inode(&path);
    let address = path.to_string_lossy().into_owned();
    let request = format!("unix:{address}");
    let app = probe_app(&dir, "probe", &[&request]).line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let ctl = bins().ctl.clone();
    // `start` waits for the instance to be main, which it becomes after its
    // request is answered: ask from another thread, and list meanwhile.
    let start = {
        let socket = master.socket().to_owned();
        let ctl = ctl.clone();
        std::thread::spawn(move || {
            Command::new(ctl)
                .arg("--socket")
                .arg(socket)
                .args(["start", "probe"])
                .stdin(Stdio::null())
                .output()
        })
    };
    let prefix = format!("[probe#1] listen-probe: unix {address} ");
    let mut slowest = Duration::ZERO;
    let mut lists = 0;
    let answered = wait_until(VERDICT, || {
        slowest = slowest.max(list_promptly(&master, &ctl));
        lists += 1;
        master.log().contains(&prefix)
    });
    assert!(
        answered,
        "the request was never answered\n{}",
        master.log_tail()
    );
    // Once more after the answer, and the master still answers at once.
    slowest = slowest.max(list_promptly(&master, &ctl));
    eprintln!("{lists} listings while the request was handled, slowest {slowest:?}");
    let got = verdict(&master, "probe", "unix", &address);
    assert!(
        got.starts_with("error") && got.contains("queue full"),
        "the busy listener was not refused as in use: {got}\n{}",
        master.log_tail()
    );
    assert_eq!(
        inode(&path),
        before,
        "the busy listener's file was replaced"
    );
    let out = start
        .join()
        .expect("start thread")
        .expect("run ally-ctl start");
    assert!(out.status.success(), "start failed: {out:?}");
}

#[test]
fn a_symlinked_directory_in_the_path_is_not_followed() {
    let dir = TestDir::new("scope_symlink");
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let address = link.join("x.sock").to_string_lossy().into_owned();
    let request = format!("unix:{address}");
    let app = probe_app(&dir, "probe", &[&request]);
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let got = verdict(&master, "probe", "unix", &address);
    assert!(
        got.starts_with("error") && got.contains("symbolic link"),
        "the symlink was followed: {got}\n{}",
        master.log_tail()
    );
    assert!(
        !real.join("x.sock").exists(),
        "a socket was created through the symlink"
    );
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_mode_above_0o777_is_refused() {
    let dir = TestDir::new("scope_stale");
    let stale = dir.path().join("stale.sock");
    // Bound, then closed: the file stays, and nobody is bound to it.
    drop(UnixListener::bind(&stale).unwrap());
    let refused = UnixStream::connect(&stale).expect_err("nobody is bound to it");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let odd = dir.path().join("odd.sock");
    let stale_address = stale.to_string_lossy().into_owned();
    let odd_address = odd.to_string_lossy().into_owned();
    let requests = [
        format!("unix:{stale_address}?mode=640"),
        format!("unix:{odd_address}?mode=1777"),
    ];
    let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
    let app = probe_app(&dir, "probe", &requests);
    let mut master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let got = verdict(&master, "probe", "unix", &stale_address);
    assert!(
        got.starts_with("ok"),
        "the stale file was not replaced: {got}"
    );
    let meta = std::fs::symlink_metadata(&stale).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o640,
        "the mode asked for"
    );
    UnixStream::connect(&stale).expect("a new socket is bound there");
    let got = verdict(&master, "probe", "unix", &odd_address);
    assert!(
        got.starts_with("error") && got.contains("0o1777"),
        "a mode above 0o777 was accepted: {got}\n{}",
        master.log_tail()
    );
    assert!(!odd.exists(), "a socket was bound for the refused mode");
    master.terminate(Duration::from_secs(20));
    assert!(
        !stale.exists(),
        "the socket file is still there after the master exited"
    );
}

/// Runs the path-socket helper of `ally-master` as `uid`/`gid` to bind a
/// fresh unix stream socket to `path` with `mode`; returns its report.
fn helper_as(uid: u32, gid: u32, path: &Path, mode: &str) -> String {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    // The helper takes its socket at fd 3: the shell moves it there from
    // stdin.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"exec "$0" --path-socket-helper bind "$1" "$2" 3<&0 </dev/null"#)
        .arg(&bins().master)
        .arg(path)
        .arg(mode)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::from(socket))
        .output()
        .expect("run the helper");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_helper_binds_as_the_apps_user_only_where_that_user_may_write() {
    if !is_root() {
        eprintln!("skipped: running the helper as another user needs root");
        return;
    }
    let Some((uid, gid)) = test_user() else {
        return;
    };
    let dir = TestDir::new("scope_helper_user");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let root_only = dir.path().join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    std::fs::set_permissions(&root_only, PermissionsExt::from_mode(0o755)).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();

    let refused = root_only.join("x.sock");
    let report = helper_as(uid, gid, &refused, "660");
    assert!(
        report.starts_with("error") && report.contains("ermission denied"),
        "{USER} bound in a directory only root may write: {report}"
    );
    assert!(!refused.exists());

    let path = theirs.join("x.sock");
    let report = helper_as(uid, gid, &path, "660");
    assert!(report.starts_with("ok "), "{report}");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "created as {USER}");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    let words: Vec<&str> = report.split_whitespace().collect();
    assert_eq!(words.get(2), Some(&meta.ino().to_string().as_str()));
}

#[test]
fn a_user_app_may_listen_only_where_its_user_may_write() {
    if !is_root() {
        eprintln!("skipped: a user app needs a root master");
        return;
    }
    let Some((uid, gid)) = test_user() else {
        return;
    };
    let dir = TestDir::new("scope_user_path");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let root_only = dir.path().join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();
    let refused = root_only.join("x.sock").to_string_lossy().into_owned();
    let allowed = theirs.join("x.sock").to_string_lossy().into_owned();
    let requests = [format!("unix:{refused}"), format!("unix:{allowed}")];
    let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
    let app = probe_app(&dir, "probe", &requests)
        .line(&format!("user = \"{USER}\""))
        .line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    master.ctl_expect(&["start", "probe"], 0);
    let got = verdict(&master, "probe", "unix", &refused);
    assert!(
        got.starts_with("error") && got.contains("ermission denied"),
        "{USER} got a socket where only root may write: {got}\n{}",
        master.log_tail()
    );
    assert!(!Path::new(&refused).exists());
    let got = verdict(&master, "probe", "unix", &allowed);
    assert!(got.starts_with("ok"), "{got}\n{}", master.log_tail());
    let meta = std::fs::symlink_metadata(&allowed).unwrap();
    assert_eq!(meta.uid(), uid, "the socket file belongs to {USER}");
}

/// A port below 1024 nothing listens on, on 127.0.0.1.
fn free_privileged_port() -> u16 {
    (600..1000)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below 1024")
}

#[test]
fn a_privileged_port_needs_a_grant_for_a_user_app() {
    if !is_root() {
        eprintln!("skipped: a user app needs a root master");
        return;
    }
    let Some(_) = test_user() else {
        return;
    };
    let dir = TestDir::new("scope_privileged");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let port = free_privileged_port();
    let address = format!("127.0.0.1:{port}");
    let request = format!("tcp:{address}");
    let plain = probe_app(&dir, "plain", &[&request])
        .line(&format!("user = \"{USER}\""))
        .line("autostart = false");
    let granted = probe_app(&dir, "granted", &[&request])
        .line(&format!("user = \"{USER}\""))
        .line(&format!("privileged_ports = [{port}]"))
        .line("autostart = false");
    let master = Master::start_with(bins(), &dir, &config_toml(&[plain, granted]));
    master.ctl_expect(&["start", "plain"], 0);
    let got = verdict(&master, "plain", "tcp", &address);
    assert!(
        got.starts_with("error") && got.contains("privileged_ports"),
        "a privileged port without a grant: {got}\n{}",
        master.log_tail()
    );
    master.ctl_expect(&["stop", "plain"], 0);
    master.ctl_expect(&["start", "granted"], 0);
    let got = verdict(&master, "granted", "tcp", &address);
    assert!(got.starts_with("ok"), "{got}\n{}", master.log_tail());
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "nothing listens on {address}"
    );
}

#[test]
fn a_config_unix_socket_is_bound_as_the_apps_user_and_removed_at_exit() {
    if !is_root() {
        eprintln!("skipped: a user app needs a root master");
        return;
    }
    let Some((uid, gid)) = test_user() else {
        return;
    };
    let dir = TestDir::new("scope_config_user");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();
    let path = theirs.join("legacy.sock");
    let idle = write_script(dir.path(), "idle", "exec sleep 600\n");
    let app = AppConfig::new("legacy", &idle)
        .line(&format!("user = \"{USER}\""))
        .line(&format!(
            "listen = [\"unix://{}?mode=0660\"]",
            path.display()
        ))
        .line("ready = \"immediate\"");
    let mut master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let meta = std::fs::symlink_metadata(&path).expect("the socket file exists");
    assert!(meta.file_type().is_socket());
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "bound as {USER}");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    UnixStream::connect(&path).expect("it listens");
    master.terminate(Duration::from_secs(20));
    assert!(!path.exists(), "the socket file outlived the master");
}
