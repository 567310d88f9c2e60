//! Clients that send garbage, lie about sizes or say nothing cannot stall
//! or crash the master.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ally_proto::{Hello, HelloReply, Role, frame};
use ally_tests::control::closed_by;
use ally_tests::fixture::{APP, Demo};
use ally_tests::load::Load;
use ally_tests::proc::alive;

const T: Duration = Duration::from_secs(5);

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect to the control socket");
    s.set_write_timeout(Some(T)).unwrap();
    s
}

#[test]
fn hostile_control_clients_neither_stall_nor_crash_the_master() {
    let demo = Demo::start("hostile");
    let master = &demo.master;
    let socket = master.socket();

    // (a) Not our protocol at all: "GET " read as a length is > 1 MiB.
    let mut garbage = connect(socket);
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // (b) A length prefix of 4 GiB - 1.
    let mut huge = connect(socket);
    huge.write_all(&[0xff; 4]).unwrap();
    // (c) A valid hello, then a frame that decodes to nothing.
    let mut bad_request = connect(socket);
    frame::write_to(&bad_request, &Hello::new(Role::Control)).unwrap();
    bad_request.set_read_timeout(Some(T)).unwrap();
    let reply: HelloReply = frame::read_from(&bad_request).expect("hello reply");
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    bad_request
        .write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
        .unwrap();
    // (d) Silent clients, and one stuck halfway through a frame.
    let silent: Vec<UnixStream> = (0..8).map(|_| connect(socket)).collect();
    let mut half = connect(socket);
    half.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();

    for (name, s) in [
        ("garbage", &mut garbage),
        ("4 GiB length prefix", &mut huge),
        ("undecodable request", &mut bad_request),
    ] {
        assert!(
            closed_by(s, Instant::now() + T),
            "the master kept the {name} connection open\n{}",
            master.log_tail()
        );
    }

    // With the silent and half-sent connections still open, the master
    // answers, and a reload under load loses nothing.
    for _ in 0..3 {
        master.list_json();
    }
    let load = Load::start(demo.addr, 8, true);
    assert!(load.wait_for_ok(50, Duration::from_secs(20)));
    master.reload_ok(APP);
    master.reload_ok(APP);
    let before = load.ok();
    assert!(load.wait_for_ok(before + 50, Duration::from_secs(20)));
    let stats = load.stop();
    eprintln!("{stats}");
    assert_eq!(stats.failures(), 0, "{stats}\n{}", master.log_tail());
    assert!(
        alive(master.pid()),
        "the master died\n{}",
        master.log_tail()
    );
    assert_eq!(master.main_of(APP).map(|m| m.id), Some(demo.first.id + 2));
    drop((silent, half));
    master.list_json();
}
