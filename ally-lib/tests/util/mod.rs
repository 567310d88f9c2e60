//! Helpers for tests that need a process of their own: the test binary
//! runs itself again, with one test selected and a marker in the
//! environment that tells that test it is the child.

#![allow(dead_code)]

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use ally_proto::frame::{encode, read_from, write_to};
use ally_proto::{
    ErrorCode, Failure, Hello, HelloReply, InstanceRequest, InstanceResponse, PROTOCOL_VERSION,
    Role,
};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};

/// Names the child role; set only in children.
pub const ROLE: &str = "ALLY_LIB_TEST_ROLE";

/// Whether this process is the child playing `role`.
pub fn is_child(role: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|r| r == role)
}

/// A command running test `test` of this test binary as `role`, with every
/// `ALLY_*` variable of the parent removed.
pub fn child(test: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    for var in ally_proto::env::ALL {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` and returns its output, panicking with both streams if it
/// failed or did not run exactly one test (a misspelt test name would run
/// none and pass).
pub fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child {cmd:?} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ally-lib-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Answers one request of a fake master: the response, and a descriptor
/// to attach to it.
pub type Handler =
    std::sync::Arc<dyn Fn(&InstanceRequest) -> (InstanceResponse, Option<OwnedFd>) + Send + Sync>;

/// How the fake master greets on the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greeting {
    Welcome,
    Refuse,
}

/// Gives `cmd` the child's end of a new channel, inherited at its own
/// descriptor number (`ALLY_CHANNEL_FD`), with this process as its master;
/// returns the master's end and the child's (to drop once `cmd` runs).
pub fn channel_for(cmd: &mut Command) -> (UnixStream, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty()).expect("clear FD_CLOEXEC");
    cmd.env(ally_proto::env::CHANNEL_FD, theirs.as_raw_fd().to_string())
        .env(ally_proto::env::MASTER_PID, std::process::id().to_string());
    (ours, theirs)
}

/// Serves `channel` as the master would, in a thread: the hello, then
/// requests through `handler`, each `Connect` with a new connection served
/// the same way in a thread of its own. Returns how many connections were
/// open at most at once (the channel not counted).
pub fn serve_channel(channel: UnixStream, greeting: Greeting, handler: Handler) -> Arc<AtomicU32> {
    let most = Arc::new(AtomicU32::new(0));
    let live = Arc::new(AtomicU32::new(0));
    let counts = (Arc::clone(&most), live);
    thread::spawn(move || {
        let hello: Hello = read_from(&channel).expect("hello");
        assert_eq!(hello, Hello::new(Role::Instance));
        if greeting == Greeting::Refuse {
            let failure = Failure::new(ErrorCode::NotPermitted, "not an instance of mine");
            write_to(&channel, &HelloReply::Refused(failure)).expect("refuse");
            // Held open: the channel's end of file would stop the child.
            let _ = std::io::copy(&mut &channel, &mut std::io::sink());
            return;
        }
        let welcome = HelloReply::Welcome {
            version: PROTOCOL_VERSION,
            master_pid: std::process::id(),
        };
        write_to(&channel, &welcome).expect("welcome");
        serve_requests(&channel, &handler, &counts);
    });
    most
}

fn serve_requests(conn: &UnixStream, handler: &Handler, counts: &(Arc<AtomicU32>, Arc<AtomicU32>)) {
    while let Ok(req) = read_from::<_, InstanceRequest>(conn) {
        let (reply, fd) = if req == InstanceRequest::Connect {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            let (handler, counts) = (
                Arc::clone(handler),
                (Arc::clone(&counts.0), Arc::clone(&counts.1)),
            );
            thread::spawn(move || {
                let now = counts.1.fetch_add(1, Ordering::SeqCst) + 1;
                counts.0.fetch_max(now, Ordering::SeqCst);
                serve_requests(&ours, &handler, &counts);
                counts.1.fetch_sub(1, Ordering::SeqCst);
            });
            (
                InstanceResponse::Connected { fds: 1 },
                Some(OwnedFd::from(theirs)),
            )
        } else {
            handler(&req)
        };
        if send(
            conn,
            &encode(&reply).expect("encode"),
            fd.as_ref().map(AsFd::as_fd),
        )
        .is_err()
        {
            return;
        }
    }
}

/// Writes one encoded frame, with `fd` attached as `SCM_RIGHTS`.
pub fn send(conn: &UnixStream, frame: &[u8], fd: Option<BorrowedFd<'_>>) -> rustix::io::Result<()> {
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
    )?;
    assert_eq!(n, frame.len());
    Ok(())
}
