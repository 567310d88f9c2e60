//! The `FDNAME` a listening socket is parked under: which table it belongs
//! to, its app, network and address, and (for a unix path) its file mode
//! and the file it was bound to — everything a master started again needs
//! to put it back where it was.
//!
//! systemd takes a name of at most 255 printable ASCII characters other
//! than `:` (the separator of `LISTEN_FDNAMES`). The form is
//!
//! ```text
//! ally1/TABLE/APP/NETWORK/MODE/FILE/ADDRESS
//! ```
//!
//! with TABLE `cfg` (an app's `listen =` socket) or `lib` (asked through
//! the library), MODE the octal file mode or `-`, FILE `DEV.INO` of a unix
//! socket's file or `-`, and ADDRESS last (it is the only field that may
//! hold a `/`): `127.0.0.1%3A8080`, `/run/web.sock`, `@name`, with every
//! byte outside `!`..`~` and every `%` and `:` written `%XX`. App names are
//! 1-64 of `A-Z a-z 0-9 _ . -` and networks at most 8 letters, so the
//! fields before ADDRESS take at most 124 characters. When the whole name
//! would pass [`MAX_FDNAME`] (a long path or abstract name full of
//! escapes), ADDRESS is `#` and 16 hex digits of its FNV-1a hash instead;
//! the address is then the socket's own (`getsockname`), which for a unix
//! socket is exactly what was asked, and the hash must match it.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use ally_proto::{ListenAddr, Network};

use crate::listeners::Key;
use crate::path_socket::FileId;

/// Longest name systemd accepts (`FDNAME_MAX`).
pub const MAX_FDNAME: usize = 255;

/// What every name of this master starts with; the digit is the form's
/// version.
const PREFIX: &str = "ally1";

/// Which of the master's tables a socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// An app's `listen =` sockets, handed as `LISTEN_FDS`.
    Config,
    /// The listener table of sockets instances asked for.
    Library,
}

impl Table {
    fn tag(self) -> &'static str {
        match self {
            Table::Config => "cfg",
            Table::Library => "lib",
        }
    }
}

/// The address a name gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedAddr {
    /// The address itself.
    Exact(ListenAddr),
    /// Too long to write: the hash of a unix address, to be read from the
    /// socket and checked with [`NamedAddr::is`].
    Hashed(u64),
}

impl NamedAddr {
    /// Whether `addr` is the address named.
    pub fn is(&self, addr: &ListenAddr) -> bool {
        match self {
            NamedAddr::Exact(a) => a == addr,
            NamedAddr::Hashed(h) => *h == fnv1a(&addr_bytes(addr)),
        }
    }
}

/// A parsed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The table the socket belongs to.
    pub table: Table,
    /// Its app.
    pub app: String,
    /// Its network.
    pub network: Network,
    /// Its file mode (unix paths only).
    pub mode: Option<u32>,
    /// The file it was bound to (unix paths only).
    pub file: Option<FileId>,
    /// Its address, as asked (port 0 included).
    pub addr: NamedAddr,
}

/// A valid `FDNAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FdName(String);

impl fmt::Display for FdName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FdName {
    /// The name of the socket of `key` in `table`, with its file `mode`
    /// and `file` for a unix path.
    pub fn new(table: Table, key: &Key, mode: Option<u32>, file: Option<FileId>) -> FdName {
        let mode = mode.map_or_else(|| "-".to_owned(), |m| format!("{m:o}"));
        let file = file.map_or_else(|| "-".to_owned(), |f| format!("{}.{}", f.dev, f.ino));
        let head = format!(
            "{PREFIX}/{}/{}/{}/{mode}/{file}/",
            table.tag(),
            key.app,
            key.network
        );
        let bytes = addr_bytes(&key.addr);
        let escaped = escape(&bytes);
        if head.len() + escaped.len() <= MAX_FDNAME {
            return FdName(head + &escaped);
        }
        FdName(format!("{head}#{:016x}", fnv1a(&bytes)))
    }

    /// A name given by systemd, checked as systemd checks it
    /// (`fdname_is_valid`): `None` if it is not one.
    pub fn given(text: &str) -> Option<FdName> {
        let valid = text.len() <= MAX_FDNAME
            && text
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b':');
        valid.then(|| FdName(text.to_owned()))
    }

    /// The name as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the name says, if it is one of this master's.
    pub fn parse(&self) -> Option<Parsed> {
        let mut fields = self.0.splitn(7, '/');
        if fields.next()? != PREFIX {
            return None;
        }
        let table = match fields.next()? {
            "cfg" => Table::Config,
            "lib" => Table::Library,
            _ => return None,
        };
        let app = fields.next()?.to_owned();
        let network = match fields.next()? {
            "tcp" => Network::Tcp,
            "udp" => Network::Udp,
            "unix" => Network::Unix,
            "unixgram" => Network::Unixgram,
            _ => return None,
        };
        let mode = match fields.next()? {
            "-" => None,
            m => Some(u32::from_str_radix(m, 8).ok()?),
        };
        let file = match fields.next()? {
            "-" => None,
            f => {
                let (dev, ino) = f.split_once('.')?;
                Some(FileId {
                    dev: dev.parse().ok()?,
                    ino: ino.parse().ok()?,
                })
            }
        };
        let rest = fields.next()?;
        let addr = match rest.strip_prefix('#') {
            Some(hex) if hex.len() == 16 => NamedAddr::Hashed(u64::from_str_radix(hex, 16).ok()?),
            Some(_) => return None,
            None => NamedAddr::Exact(addr_from_bytes(network, &unescape(rest)?)?),
        };
        if app.is_empty() {
            return None;
        }
        Some(Parsed {
            table,
            app,
            network,
            mode,
            file,
            addr,
        })
    }
}

/// The address as bytes: `IP:PORT`, the path, or `@` and the name.
fn addr_bytes(addr: &ListenAddr) -> Vec<u8> {
    match addr {
        ListenAddr::Inet(sa) => sa.to_string().into_bytes(),
        ListenAddr::Path(p) => p.as_os_str().as_bytes().to_vec(),
        ListenAddr::Abstract(name) => [b"@".as_slice(), name].concat(),
    }
}

fn addr_from_bytes(network: Network, bytes: &[u8]) -> Option<ListenAddr> {
    if network.is_unix() {
        return match bytes.split_first() {
            Some((b'@', name)) => Some(ListenAddr::Abstract(name.to_vec())),
            Some((b'/', _)) => Some(ListenAddr::Path(PathBuf::from(
                std::ffi::OsString::from_vec(bytes.to_vec()),
            ))),
            _ => None,
        };
    }
    let text = std::str::from_utf8(bytes).ok()?;
    text.parse::<SocketAddr>().ok().map(ListenAddr::Inet)
}

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (b'!'..=b'~').contains(&b) && b != b'%' && b != b':' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// 64-bit FNV-1a: a stable hash with no dependency (not a defence: the
/// store is written by this master alone, and the address is checked).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str, network: Network, address: &str) -> Key {
        Key {
            app: app.into(),
            network,
            addr: ListenAddr::parse(network, address).unwrap(),
        }
    }

    #[test]
    fn names_round_trip_and_are_valid_fdnames() {
        let file = FileId { dev: 2049, ino: 77 };
        let cases = [
            (
                Table::Library,
                key("web", Network::Tcp, "127.0.0.1:0"),
                None,
                None,
            ),
            (
                Table::Config,
                key("a.b-c_9", Network::Udp, "[::1]:53"),
                None,
                None,
            ),
            (
                Table::Library,
                key("web", Network::Unix, "/run/w b%:.sock"),
                Some(0o660),
                Some(file),
            ),
            (
                Table::Config,
                key("x", Network::Unixgram, "@ally/x:1"),
                None,
                None,
            ),
        ];
        for (table, key, mode, file) in cases {
            let name = FdName::new(table, &key, mode, file);
            assert_eq!(FdName::given(name.as_str()).as_ref(), Some(&name), "{name}");
            let parsed = name
                .parse()
                .unwrap_or_else(|| panic!("{name} does not parse"));
            assert_eq!(
                parsed,
                Parsed {
                    table,
                    app: key.app.clone(),
                    network: key.network,
                    mode,
                    file,
                    addr: NamedAddr::Exact(key.addr.clone()),
                }
            );
        }
        assert_eq!(
            FdName::new(
                Table::Library,
                &key("web", Network::Tcp, "127.0.0.1:8080"),
                None,
                None
            )
            .as_str(),
            "ally1/lib/web/tcp/-/-/127.0.0.1%3A8080"
        );
    }

    #[test]
    fn a_name_too_long_to_write_hashes_the_address() {
        let app = "a".repeat(64);
        let path = format!("/{}", "\u{e9}".repeat(50)); // 101 bytes, 303 escaped
        let k = key(&app, Network::Unixgram, &path);
        let name = FdName::new(
            Table::Library,
            &k,
            Some(0o777),
            Some(FileId {
                dev: u64::MAX,
                ino: u64::MAX,
            }),
        );
        assert!(name.as_str().len() <= MAX_FDNAME, "{}", name.as_str().len());
        assert!(FdName::given(name.as_str()).is_some());
        let parsed = name.parse().unwrap();
        assert!(matches!(parsed.addr, NamedAddr::Hashed(_)));
        assert!(parsed.addr.is(&k.addr));
        assert!(!parsed.addr.is(&ListenAddr::Path("/other".into())));
    }

    #[test]
    fn names_that_are_not_ours_or_not_valid_are_refused() {
        assert!(FdName::given("a:b").is_none());
        assert!(FdName::given("tab\there").is_none());
        assert!(FdName::given(&"x".repeat(256)).is_none());
        assert_eq!(FdName::given("").map(|n| n.parse()), Some(None));
        for text in [
            "stored",
            "ally2/lib/web/tcp/-/-/127.0.0.1%3A80",
            "ally1/xyz/web/tcp/-/-/127.0.0.1%3A80",
            "ally1/lib//tcp/-/-/127.0.0.1%3A80",
            "ally1/lib/web/sctp/-/-/127.0.0.1%3A80",
            "ally1/lib/web/tcp/-/-/localhost%3A80",
            "ally1/lib/web/tcp/-/-/127.0.0.1%3",
            "ally1/lib/web/unix/9/-/relative",
            "ally1/lib/web/unix/-/1/%2Frun",
            "ally1/lib/web/unix/-/-/#123",
        ] {
            let name = FdName::given(text).unwrap();
            assert_eq!(name.parse(), None, "{text}");
        }
    }
}
