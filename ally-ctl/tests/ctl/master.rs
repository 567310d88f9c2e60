//! A stand-in for ally-master: a unix socket in a temporary runtime
//! directory that speaks the real protocol and answers from a script.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ally_proto::{ControlRequest, ControlResponse, Hello, HelloReply, frame};

/// How long the fake master waits for ally-ctl before giving up, so that a
/// broken test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// A directory removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory unique to this process and call.
    pub fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ally-ctl-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake master does after reading the request.
#[derive(Debug)]
pub enum Step {
    /// Send this response.
    Reply(ControlResponse),
    /// Send these bytes as they are.
    Raw(Vec<u8>),
    /// Say nothing more; wait until the client goes away.
    Hang,
    /// Wait until the test sends on the channel (or drops its end).
    Wait(Receiver<()>),
    /// Close the connection at once, as a master that exits.
    Close,
}

/// A fake master serving one control session on `<dir>/fake.sock`.
#[derive(Debug)]
pub struct FakeMaster {
    dir: TempDir,
    socket: PathBuf,
    thread: Option<JoinHandle<Option<ControlRequest>>>,
}

impl FakeMaster {
    /// Welcomes the client, reads its request, then plays `script`.
    pub fn start(script: Vec<Step>) -> FakeMaster {
        Self::with_hello(
            HelloReply::Welcome {
                version: ally_proto::PROTOCOL_VERSION,
                master_pid: std::process::id(),
            },
            script,
        )
    }

    /// Answers the hello with `hello`; plays `script` after the request if
    /// that is a welcome.
    pub fn with_hello(hello: HelloReply, script: Vec<Step>) -> FakeMaster {
        let dir = TempDir::new();
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let thread = std::thread::spawn(move || serve(&listener, &hello, script));
        FakeMaster {
            dir,
            socket,
            thread: Some(thread),
        }
    }

    /// The runtime directory holding the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The request ally-ctl sent, once it has hung up.
    pub fn request(mut self) -> Option<ControlRequest> {
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Serves one session: connections that close before their hello (a
/// discovery probe) are skipped.
fn serve(listener: &UnixListener, hello: &HelloReply, script: Vec<Step>) -> Option<ControlRequest> {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut stream = loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < PATIENCE, "ally-ctl never connected");
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => panic!("accept: {e}"),
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        match frame::read_from::<_, Hello>(&stream) {
            Ok(got) => {
                assert_eq!(got, Hello::new(ally_proto::Role::Control));
                break stream;
            }
            Err(ally_proto::Error::Closed) => continue,
            Err(e) => panic!("reading hello: {e}"),
        }
    };
    frame::write_to(&stream, hello).unwrap();
    if matches!(hello, HelloReply::Refused(_)) {
        return None;
    }
    let request = frame::read_from::<_, ControlRequest>(&stream).unwrap();
    for step in script {
        match step {
            Step::Reply(response) => frame::write_to(&stream, &response).unwrap(),
            Step::Raw(bytes) => stream.write_all(&bytes).unwrap(),
            Step::Hang => break,
            Step::Wait(go) => {
                let _ = go.recv_timeout(PATIENCE);
            }
            Step::Close => return Some(request),
        }
    }
    drain(&mut stream);
    Some(request)
}

/// Reads until the client closes its end. A read is retried when a
/// signal interrupts it: with a read timeout set, the kernel reports
/// `EINTR` even for an ignored `SIGCHLD` from a child another test spawned.
fn drain(stream: &mut UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
