//! What an app may listen on, checked by the master before any file-system
//! work: never the master's own sockets, never an address another app
//! holds, never one path as both stream and datagram, and a privileged port
//! only for an app running as root or granted it by `privileged_ports`.

use std::path::Path;

use ally_proto::{ErrorCode, Failure, ListenAddr, Network};

use crate::config::AppConfig;
use crate::helpers::Owner;
use crate::listeners::Key;
use crate::users;

/// Where the kernel says which ports need privilege.
pub const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

/// The kernel's default for [`UNPRIVILEGED_PORT_START`], used when it
/// cannot be read.
pub const DEFAULT_UNPRIVILEGED_PORT_START: u16 = 1024;

/// Prefix of the abstract names of the master's notify sockets.
const NOTIFY_PREFIX: &[u8] = b"ally-notify/";

/// The user and group `app`'s instances run as; `None` for the master's.
///
/// # Errors
///
/// `NotPermitted` naming the user or group that cannot be used.
pub fn owner(app: &AppConfig) -> Result<Option<Owner>, Failure> {
    users::resolve(app.user.as_deref(), app.group.as_deref())
        .map(|who| {
            who.map(|who| Owner {
                uid: who.uid,
                gid: who.gid,
            })
        })
        .map_err(|e| Failure::new(ErrorCode::NotPermitted, format!("app {}: {e}", app.name)))
}

/// [`owner`], resolved only if one of `app`'s `listen` sockets is a unix
/// path (the only kind bound as the app's user), so a user that does not
/// exist yet fails only the starts of its app, as before.
///
/// # Errors
///
/// As [`owner`].
pub fn owner_for_config_sockets(app: &AppConfig) -> Result<Option<Owner>, Failure> {
    let has_path = app.listen.iter().any(|decl| {
        matches!(
            ListenAddr::parse(decl.spec.network, &decl.spec.address),
            Ok(ListenAddr::Path(_))
        )
    });
    if has_path { owner(app) } else { Ok(None) }
}

/// The first port that needs no privilege, from [`UNPRIVILEGED_PORT_START`].
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string(UNPRIVILEGED_PORT_START)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_UNPRIVILEGED_PORT_START)
}

/// Refuses the master's own sockets: its control socket, and the abstract
/// names of its notify sockets.
///
/// # Errors
///
/// `NotPermitted`, saying which socket it is.
pub fn not_the_masters(key: &Key, control: &Path) -> Result<(), Failure> {
    let what = match &key.addr {
        ListenAddr::Path(path) if path == control => "the master's control socket",
        ListenAddr::Abstract(name) if name.starts_with(NOTIFY_PREFIX) => {
            "reserved for the master's notify sockets (@ally-notify/...)"
        }
        _ => return Ok(()),
    };
    Err(Failure::new(
        ErrorCode::NotPermitted,
        format!(
            "{} {} is {what}; an app may not listen on it",
            key.network, key.addr
        ),
    ))
}

/// Refuses an address held by another app, and a unix address the same app
/// holds as the other network. `held` lists (app, network, address) of
/// every socket bound, being bound, or declared in a config.
///
/// # Errors
///
/// `NotPermitted`, naming the app that holds it and how.
pub fn not_held_elsewhere<'a>(
    key: &Key,
    held: impl IntoIterator<Item = (&'a str, Network, &'a ListenAddr)>,
) -> Result<(), Failure> {
    for (app, network, addr) in held {
        if !same_place(key.network, &key.addr, network, addr) {
            continue;
        }
        if app != key.app {
            return Err(Failure::new(
                ErrorCode::NotPermitted,
                format!(
                    "{} {} is held by app {app} (as {network}); an app may not listen on \
                     another app's address",
                    key.network, key.addr
                ),
            ));
        }
        if network != key.network {
            return Err(Failure::new(
                ErrorCode::NotPermitted,
                format!(
                    "{} {} is already bound by this app as {network}; a unix address is one \
                     socket: ask for it as {network}, or use another address",
                    key.network, key.addr
                ),
            ));
        }
    }
    Ok(())
}

/// Whether two addresses are the same place: one unix path or abstract
/// name (whatever the socket type), or one IP address and port of the same
/// protocol. Port 0 is a new port each time, so never the same.
fn same_place(a_net: Network, a: &ListenAddr, b_net: Network, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Path(x), ListenAddr::Path(y)) => x == y,
        (ListenAddr::Abstract(x), ListenAddr::Abstract(y)) => x == y,
        (ListenAddr::Inet(x), ListenAddr::Inet(y)) => a_net == b_net && x == y && x.port() != 0,
        _ => false,
    }
}

/// Refuses a port below `start` to an app whose instances run as `uid`
/// other than root, unless `granted` lists it.
///
/// # Errors
///
/// `NotPermitted`, saying how to grant it.
pub fn port_allowed(key: &Key, uid: u32, granted: &[u16], start: u16) -> Result<(), Failure> {
    let ListenAddr::Inet(addr) = &key.addr else {
        return Ok(());
    };
    let port = addr.port();
    if port == 0 || port >= start || uid == 0 || granted.contains(&port) {
        return Ok(());
    }
    Err(Failure::new(
        ErrorCode::NotPermitted,
        format!(
            "{} {}: port {port} is privileged (below {start}, net.ipv4.ip_unprivileged_port_start) \
             and app {} runs as uid {uid}; grant it with privileged_ports = [{port}] in its \
             [[app]] table",
            key.network, key.addr, key.app
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, network: Network, addr: &str) -> Key {
        Key {
            app: app.into(),
            network,
            addr: ListenAddr::parse(network, addr).unwrap(),
        }
    }

    #[test]
    fn the_masters_sockets_are_refused() {
        let control = Path::new("/run/ally/web.sock");
        for network in [Network::Unix, Network::Unixgram] {
            let err = not_the_masters(&key("a", network, "/run/ally/web.sock"), control);
            let err = err.unwrap_err();
            assert_eq!(err.code, ErrorCode::NotPermitted);
            assert!(err.message.contains("control socket"), "{}", err.message);
        }
        let notify = key("a", Network::Unixgram, "@ally-notify/1/b/2");
        assert!(not_the_masters(&notify, control).is_err());
        assert!(not_the_masters(&key("a", Network::Unix, "/run/ally/x.sock"), control).is_ok());
    }

    #[test]
    fn another_apps_address_and_the_other_network_are_refused() {
        let path = ListenAddr::parse(Network::Unix, "/run/x.sock").unwrap();
        let tcp = ListenAddr::parse(Network::Tcp, "127.0.0.1:8080").unwrap();
        let any = ListenAddr::parse(Network::Tcp, "127.0.0.1:0").unwrap();
        let held = [
            ("web", Network::Unix, &path),
            ("web", Network::Tcp, &tcp),
            ("web", Network::Tcp, &any),
        ];
        let refused = |k: Key| not_held_elsewhere(&k, held).unwrap_err().message;
        let m = refused(key("api", Network::Unixgram, "/run/x.sock"));
        assert!(m.contains("held by app web"), "{m}");
        let m = refused(key("api", Network::Tcp, "127.0.0.1:8080"));
        assert!(m.contains("held by app web"), "{m}");
        let m = refused(key("web", Network::Unixgram, "/run/x.sock"));
        assert!(m.contains("already bound by this app as unix"), "{m}");
        // The same key is shared, not refused; port 0, another protocol and
        // another address are other places.
        for fine in [
            key("web", Network::Unix, "/run/x.sock"),
            key("api", Network::Tcp, "127.0.0.1:0"),
            key("api", Network::Udp, "127.0.0.1:8080"),
            key("api", Network::Unix, "/run/y.sock"),
        ] {
            assert!(not_held_elsewhere(&fine, held).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn privileged_ports_need_root_or_a_grant() {
        let http = key("web", Network::Tcp, "0.0.0.0:80");
        let err = port_allowed(&http, 999, &[], 1024).unwrap_err();
        assert_eq!(err.code, ErrorCode::NotPermitted);
        assert!(
            err.message.contains("privileged_ports = [80]"),
            "{}",
            err.message
        );
        assert!(port_allowed(&http, 999, &[443, 80], 1024).is_ok());
        assert!(port_allowed(&http, 0, &[], 1024).is_ok());
        assert!(port_allowed(&http, 999, &[], 80).is_ok());
        let udp = key("web", Network::Udp, "[::]:53");
        assert!(port_allowed(&udp, 999, &[], 1024).is_err());
        assert!(port_allowed(&key("web", Network::Tcp, ":0"), 999, &[], 1024).is_ok());
        assert!(port_allowed(&key("web", Network::Unix, "/x"), 999, &[], 1024).is_ok());
    }
}
