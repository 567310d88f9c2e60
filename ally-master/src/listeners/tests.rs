//! Unit tests of the listener table.

use super::*;

fn spec(network: Network, address: &str) -> ListenSpec {
    ListenSpec {
        network,
        address: address.into(),
        mode: None,
    }
}

/// What the event loop does for an IP or abstract address.
fn acquire(
    table: &mut Listeners,
    app: &str,
    id: u64,
    spec: &ListenSpec,
) -> Result<(OwnedFd, String), Failure> {
    let (key, mode) = Key::of(app, spec)?;
    if let Some(shared) = table.share(&key, id, mode) {
        return shared;
    }
    let bound = Bound::direct(&key, &FdStore::default())?;
    let copy = bound.fd.try_clone().unwrap();
    let local = bound.local.clone();
    table.insert(key, bound, mode, BTreeSet::from([id]));
    Ok((copy, local))
}

#[test]
fn same_key_gets_same_socket_until_nobody_holds_it() {
    let mut table = Listeners::default();
    let tcp = spec(Network::Tcp, "127.0.0.1:0");
    let (a, local_a) = acquire(&mut table, "web", 1, &tcp).unwrap();
    let (b, local_b) = acquire(&mut table, "web", 2, &tcp).unwrap();
    assert_eq!(local_a, local_b);
    let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
    assert_eq!(ino(&a), ino(&b));
    assert_eq!(table.held_by("web", 1), 1);
    // Another app asking for the same address gets its own socket.
    let (c, local_c) = acquire(&mut table, "api", 1, &tcp).unwrap();
    assert_ne!(ino(&a), ino(&c));
    assert_ne!(local_a, local_c);
    table.release_instance("web", 1);
    table.release("web", 2, &tcp).unwrap();
    assert_eq!(table.held_by("web", 2), 0);
    assert!(table.release("web", 2, &tcp).is_err());
    assert_eq!(table.entries.len(), 1);
}

#[test]
fn the_rule_keeps_unheld_sockets_only_while_the_app_awaits_an_instance() {
    for standing in [Standing::Awaiting, Standing::Serving, Standing::Down] {
        assert!(standing.keeps(true), "{standing:?} closed a held socket");
    }
    assert!(Standing::Awaiting.keeps(false));
    assert!(!Standing::Serving.keeps(false));
    assert!(!Standing::Down.keeps(false));
}

#[test]
fn a_socket_outlives_its_holder_until_the_app_no_longer_awaits_one() {
    let mut table = Listeners::default();
    let tcp = spec(Network::Tcp, "127.0.0.1:0");
    let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).unwrap().st_ino;
    let (first, local) = acquire(&mut table, "web", 1, &tcp).unwrap();
    let (other, _) = acquire(&mut table, "api", 1, &tcp).unwrap();
    // Instance 1 crashes: nobody holds the socket, the app awaits its
    // next instance, which gets the very same socket and port.
    table.release_instance("web", 1);
    assert_eq!(table.held_by("web", 1), 0);
    let asked = std::cell::RefCell::new(Vec::new());
    table.settle(|app| {
        asked.borrow_mut().push(app.to_owned());
        Standing::Awaiting
    });
    assert_eq!(asked.into_inner(), ["web"], "asked only for unheld sockets");
    let (second, again) = acquire(&mut table, "web", 2, &tcp).unwrap();
    assert_eq!((ino(&first), &local), (ino(&second), &again));
    // Held, it stays whatever the app's standing.
    table.settle(|_| Standing::Down);
    assert_eq!(table.held_by("web", 2), 1);
    // A new version serving without it: closed once nobody holds it.
    table.release_instance("web", 2);
    table.settle(|app| match app {
        "web" => Standing::Serving,
        _ => Standing::Down,
    });
    assert_eq!(
        table.keys().map(|k| k.app.as_str()).collect::<Vec<_>>(),
        ["api"]
    );
    let (third, _) = acquire(&mut table, "web", 3, &tcp).unwrap();
    assert_ne!(ino(&third), ino(&first), "a closed socket is bound anew");
    drop(other);
}

#[test]
fn unheld_sockets_of_an_app_that_is_down_are_closed() {
    let mut table = Listeners::default();
    let tcp = spec(Network::Tcp, "127.0.0.1:0");
    let (_, local) = acquire(&mut table, "web", 1, &tcp).unwrap();
    table.release_instance("web", 1);
    table.settle(|_| Standing::Awaiting);
    assert_eq!(table.entries.len(), 1);
    table.settle(|_| Standing::Down);
    assert!(table.entries.is_empty());
    let addr: SocketAddr = local.parse().unwrap();
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn unlisten_by_the_last_holder_closes_even_while_the_app_awaits_one() {
    let mut table = Listeners::default();
    let tcp = spec(Network::Tcp, "127.0.0.1:0");
    let kept = spec(Network::Tcp, "127.0.0.2:0");
    acquire(&mut table, "web", 1, &tcp).unwrap();
    acquire(&mut table, "web", 2, &tcp).unwrap();
    acquire(&mut table, "web", 1, &kept).unwrap();
    table.release_instance("web", 1);
    table.release("web", 2, &tcp).unwrap();
    let left: Vec<_> = table.keys().map(|k| k.addr.to_string()).collect();
    assert_eq!(
        left,
        ["127.0.0.2:0"],
        "only the socket unlistened is closed"
    );
}

#[test]
fn abstract_and_datagram_sockets_bind() {
    let mut table = Listeners::default();
    let name = format!("@ally-test-{}", std::process::id());
    let (_, local) = acquire(&mut table, "a", 1, &spec(Network::Unixgram, &name)).unwrap();
    assert_eq!(local, name);
    let (fd, _) = acquire(&mut table, "a", 1, &spec(Network::Udp, "127.0.0.1:0")).unwrap();
    assert_eq!(
        rustix::net::sockopt::socket_type(&fd).unwrap(),
        SocketType::DGRAM
    );
}

#[test]
fn bad_address_is_a_clear_error() {
    let mut table = Listeners::default();
    let err = acquire(&mut table, "a", 1, &spec(Network::Tcp, "localhost:80")).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("IP:PORT"), "{}", err.message);
}

#[test]
fn a_mode_above_0o777_is_refused() {
    let mut asked = spec(Network::Unix, "/run/x.sock");
    asked.mode = Some(0o1777);
    let err = Key::of("a", &asked).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("0o1777"), "{}", err.message);
    asked.mode = Some(0o777);
    assert_eq!(Key::of("a", &asked).unwrap().1, Some(0o777));
}
