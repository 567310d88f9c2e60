//! What is in flight on a connection when the master upgrades in place:
//! a frame half sent before the exec and finished after is answered, and
//! answers queued for a peer that does not read are delivered after, on a
//! control connection and on an instance's.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use ally_proto::{ControlRequest, ControlResponse, Hello, HelloReply, Role, frame};
use ally_tests::harness::AppConfig;
use ally_tests::upgrading::setup::{Setup, WAIT};
use ally_tests::upgrading::{Variant, variant};

/// `List` requests a control client pipelines and does not read before
/// the upgrade: more than its socket's buffers hold.
const PIPELINED: usize = 4000;

/// A control connection past its hello.
fn control(setup: &Setup) -> UnixStream {
    let mut stream = UnixStream::connect(setup.master.socket()).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    frame::write_to(&stream, &Hello::new(Role::Control)).expect("hello");
    match frame::read_from::<_, HelloReply>(&mut stream).expect("hello reply") {
        HelloReply::Welcome { .. } => stream,
        HelloReply::Refused(f) => panic!("refused: {f}"),
    }
}

/// Reads one answer, which must be a listing; its size in bytes.
fn listing(stream: &mut UnixStream, what: &str) -> usize {
    match frame::read_from::<_, ControlResponse>(&mut *stream) {
        Ok(answer @ ControlResponse::Apps(_)) => frame::encode(&answer).map_or(0, |f| f.len()),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn a_half_sent_frame_and_unread_answers_cross_an_upgrade() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/split_frames.py");
    let setup = Setup::start("upgrade_frames", |dir| {
        vec![
            AppConfig::new("split", &fixture)
                .line(&format!(
                    "env = {{ GO_FILE = \"{}\" }}",
                    dir.path().join("go").display()
                ))
                .ready_timeout("20s"),
        ]
    });
    setup
        .master
        .wait_for_log("[split#1] split_frames: connected", WAIT);

    // A control client: half of a `List` frame, and another connection
    // with many answers queued that it does not read.
    // The new binary first: a copy that takes seconds on a loaded
    // machine must not eat into the frame timeouts below.
    let expected = setup.install(&variant(Variant::Other));
    let mut half = control(&setup);
    let list = frame::encode(&ControlRequest::List).unwrap();
    half.write_all(&list[..3]).unwrap();
    let mut unread = control(&setup);
    let pipelined: Vec<u8> = list
        .iter()
        .copied()
        .cycle()
        .take(list.len() * PIPELINED)
        .collect();
    // Written by a thread: the master stops reading it once its answers
    // pile up, so the write may block until they are read.
    let writer = {
        let mut w = unread.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&pipelined))
    };
    // Until answers fill the client's socket: the rest of them, and of
    // the requests, are still with the master.
    let mut in_socket = 0;
    assert!(
        ally_tests::proc::wait_until(WAIT, || {
            in_socket = rustix::io::ioctl_fionread(&unread).unwrap_or(0);
            in_socket >= 4 << 10
        }),
        "the unread answers never filled the socket"
    );

    // The instance, the same (its frame must be finished within the
    // master's frame timeout, 10 s, which the upgrade does not reset).
    let go = setup.dir.path().join("go");
    std::fs::write(&go, "half").unwrap();
    setup
        .master
        .wait_for_log("[split#1] split_frames: sent half a frame", WAIT);

    setup.upgrade_installed(&expected);

    half.write_all(&list[3..]).unwrap();
    listing(&mut half, "the half-sent frame");
    let mut answered = 0;
    for n in 0..PIPELINED {
        answered += listing(&mut unread, &format!("pipelined answer {n}"));
    }
    assert!(
        answered > in_socket as usize,
        "every answer was in the socket already ({answered} bytes)"
    );
    writer
        .join()
        .unwrap()
        .expect("the pipelined requests were written");
    unread
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut more = [0u8; 1];
    assert!(
        unread.read(&mut more).is_err(),
        "more answers than requests"
    );

    // The instance's turn: it finishes its frame and reads its answers.
    std::fs::write(&go, "go").unwrap();
    setup
        .master
        .wait_for_log("[split#1] split_frames: the split frame was answered", WAIT);
    setup
        .master
        .wait_for_log("[split#1] split_frames: 12 queued answers delivered", WAIT);
    assert!(
        !setup.master.log().contains("FAILED"),
        "{}",
        setup.master.log_tail()
    );
    eprintln!(
        "{in_socket} of {answered} bytes of answers were in the client's socket at the upgrade"
    );
}
