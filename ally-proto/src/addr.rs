//! Listen addresses: what a service asks for, and the normalized form the
//! master keys its listeners by.
//!
//! Normalization is pure (no name resolution, no filesystem access), so the
//! library and the master always agree on the key of a request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest unix socket path, in bytes, that fits `sockaddr_un.sun_path`
/// with its terminating NUL.
pub const MAX_UNIX_PATH: usize = 107;

/// The kind of socket a service asks for.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    /// A TCP listener (IPv4 or IPv6).
    Tcp,
    /// A UDP socket (IPv4 or IPv6).
    Udp,
    /// A unix stream listener: a filesystem path or an abstract `@name`.
    Unix,
    /// A unix datagram socket: a filesystem path or an abstract `@name`.
    Unixgram,
}

impl Network {
    /// The lowercase name used in configs, URLs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Udp => "udp",
            Network::Unix => "unix",
            Network::Unixgram => "unixgram",
        }
    }

    /// Whether addresses of this network are unix socket addresses.
    pub fn is_unix(self) -> bool {
        matches!(self, Network::Unix | Network::Unixgram)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A normalized listen address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenAddr {
    /// An IP socket address; port 0 means "any free port", chosen once.
    Inet(SocketAddr),
    /// An absolute filesystem path for a unix socket.
    Path(PathBuf),
    /// A Linux abstract unix socket name (written `@name`), without the
    /// leading NUL.
    Abstract(Vec<u8>),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Inet(a) => write!(f, "{a}"),
            ListenAddr::Path(p) => write!(f, "{}", p.display()),
            ListenAddr::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// An IP network got something that is not `IP:PORT`, `[IPv6]:PORT` or
    /// `:PORT`.
    NotIpPort(String),
    /// A unix network got a relative path (the master's working directory is
    /// not the service's, so a relative path would be ambiguous).
    RelativePath(String),
    /// A unix path or abstract name is longer than [`MAX_UNIX_PATH`].
    PathTooLong(String),
    /// An empty address.
    Empty,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::NotIpPort(a) => write!(
                f,
                "`{a}` is not IP:PORT (examples: 127.0.0.1:8080, [::1]:8080, :8080); \
                 host names are not resolved, so the listener key stays stable"
            ),
            AddrError::RelativePath(a) => {
                write!(f, "unix socket path `{a}` must be absolute")
            }
            AddrError::PathTooLong(a) => write!(
                f,
                "unix socket address `{a}` is longer than {MAX_UNIX_PATH} bytes"
            ),
            AddrError::Empty => f.write_str("empty address"),
        }
    }
}

impl std::error::Error for AddrError {}

impl ListenAddr {
    /// Parses and normalizes `addr` for `network`.
    ///
    /// - tcp/udp: `IP:PORT`, `[IPv6]:PORT`, or `:PORT` (all IPv4 interfaces,
    ///   `0.0.0.0:PORT`). IPv6 is written in its canonical form.
    /// - unix/unixgram: `@name` for an abstract socket, otherwise an absolute
    ///   path, cleaned of `.` components and repeated slashes.
    ///
    /// # Errors
    ///
    /// An [`AddrError`] saying what is wrong and what is expected.
    pub fn parse(network: Network, addr: &str) -> Result<ListenAddr, AddrError> {
        if addr.is_empty() {
            return Err(AddrError::Empty);
        }
        if !network.is_unix() {
            if let Some(port) = addr.strip_prefix(':') {
                let port: u16 = port
                    .parse()
                    .map_err(|_| AddrError::NotIpPort(addr.to_owned()))?;
                return Ok(ListenAddr::Inet(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port,
                )));
            }
            return addr
                .parse::<SocketAddr>()
                .map(ListenAddr::Inet)
                .map_err(|_| AddrError::NotIpPort(addr.to_owned()));
        }
        if let Some(name) = addr.strip_prefix('@') {
            if name.len() > MAX_UNIX_PATH - 1 {
                return Err(AddrError::PathTooLong(addr.to_owned()));
            }
            return Ok(ListenAddr::Abstract(name.as_bytes().to_vec()));
        }
        let path = Path::new(addr);
        if !path.is_absolute() {
            return Err(AddrError::RelativePath(addr.to_owned()));
        }
        let clean: PathBuf = path
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        if clean.as_os_str().len() > MAX_UNIX_PATH {
            return Err(AddrError::PathTooLong(addr.to_owned()));
        }
        Ok(ListenAddr::Path(clean))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(net: Network, a: &str) -> String {
        ListenAddr::parse(net, a).unwrap().to_string()
    }

    #[test]
    fn ip_addresses_normalize() {
        assert_eq!(norm(Network::Tcp, "127.0.0.1:0"), "127.0.0.1:0");
        assert_eq!(norm(Network::Tcp, ":8080"), "0.0.0.0:8080");
        assert_eq!(norm(Network::Udp, "[0:0::1]:53"), "[::1]:53");
    }

    #[test]
    fn host_names_are_refused() {
        assert!(matches!(
            ListenAddr::parse(Network::Tcp, "localhost:80"),
            Err(AddrError::NotIpPort(_))
        ));
        assert!(ListenAddr::parse(Network::Tcp, ":http").is_err());
        assert!(ListenAddr::parse(Network::Tcp, "").is_err());
    }

    #[test]
    fn unix_paths_normalize() {
        assert_eq!(norm(Network::Unix, "/run//x/./web.sock"), "/run/x/web.sock");
        assert_eq!(norm(Network::Unixgram, "@ally-test"), "@ally-test");
        assert!(matches!(
            ListenAddr::parse(Network::Unix, "web.sock"),
            Err(AddrError::RelativePath(_))
        ));
        let long = format!("/{}", "x".repeat(MAX_UNIX_PATH));
        assert!(matches!(
            ListenAddr::parse(Network::Unix, &long),
            Err(AddrError::PathTooLong(_))
        ));
    }
}
