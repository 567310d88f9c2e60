//! Listeners belong to the master: a reload hands the new instance the very
//! same kernel socket, and a socket the new main instance does not hold is
//! closed once no live instance holds it (`kept_sockets` has the rest of
//! the rule).

use std::time::Duration;

use ally_tests::fixture::{APP, Demo, free_port, listening_addr};
use ally_tests::load::get_once;
use ally_tests::proc::{listen_inodes, socket_inodes, wait_gone, wait_until};

const T: Duration = Duration::from_secs(10);

#[test]
fn reloaded_instance_gets_the_same_listening_socket_on_port_0() {
    let demo = Demo::start("same_socket");
    let master = &demo.master;
    let port = demo.addr.port();
    let inodes = listen_inodes(port);
    assert_eq!(
        inodes.len(),
        1,
        "one listening socket on {port}: {inodes:?}"
    );
    let inode = inodes[0];
    assert!(
        socket_inodes(demo.first.pid).contains(&inode),
        "the first instance does not hold the listening socket {inode}"
    );
    assert!(
        socket_inodes(master.pid()).contains(&inode),
        "the master does not hold the listening socket {inode}"
    );

    master.reload_ok(APP);
    let main = master.wait_main(APP, Some(demo.first.id + 1), T);
    assert_eq!(
        listening_addr(master, main.id),
        demo.addr,
        "the reloaded instance asked for 127.0.0.1:0 and must get the same port"
    );
    assert_eq!(
        listen_inodes(port),
        [inode],
        "still exactly the same socket"
    );
    assert!(
        socket_inodes(main.pid).contains(&inode),
        "the new instance does not hold the listening socket {inode}"
    );
    assert!(wait_gone(demo.first.pid, T), "{}", master.log_tail());
    assert_eq!(listen_inodes(port), [inode]);
    assert_eq!(get_once(demo.addr, T), Ok(main.id));
}

#[test]
fn listener_a_new_version_does_not_ask_for_is_closed_once_the_old_exits() {
    let demo = Demo::start("listener_closed");
    let master = &demo.master;
    let old_port = demo.addr.port();
    let new_port = free_port();
    let new_addr = format!("127.0.0.1:{new_port}");
    demo.set_flags(&["--addr", &new_addr]);
    master.reload_ok(APP);
    let main = master.wait_main(APP, Some(demo.first.id + 1), T);
    let addr = listening_addr(master, main.id);
    assert_eq!(addr.port(), new_port);
    assert_eq!(get_once(addr, T), Ok(main.id));

    assert!(wait_gone(demo.first.pid, T), "{}", master.log_tail());
    assert!(
        wait_until(T, || listen_inodes(old_port).is_empty()),
        "port {old_port} is still listening after its last instance exited: {:?}\n{}",
        listen_inodes(old_port),
        master.log_tail()
    );
    let err = std::net::TcpStream::connect(demo.addr).expect_err("the old port must refuse");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(listen_inodes(new_port).len(), 1);
}
