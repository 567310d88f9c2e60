//! Finding the master's control socket and talking to it.
//!
//! Blocking I/O on a std [`UnixStream`]; a deadline, when given, becomes the
//! socket's read and write timeouts before each exchange.
//!
//! Nothing is sent or believed before the peer's credentials
//! (`SO_PEERCRED`) name root or ally-ctl's own user: a socket served by
//! anyone else is refused as no master at all.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ally_proto::{
    ControlRequest, ControlResponse, Hello, HelloReply, PROTOCOL_VERSION, Role, frame, paths,
};

use crate::failure::Failure;

/// A connection to a master that has welcomed us as a control client.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    deadline: Option<Instant>,
}

impl Client {
    /// Connects to the master at `socket`, or to the one master running in
    /// the runtime directory, and says hello. Every later exchange must end
    /// by `deadline`.
    ///
    /// # Errors
    ///
    /// [`Failure::Unreachable`] if no single master answers or the one
    /// that does runs as neither root nor us, [`Failure::Refused`] if it
    /// refuses us, [`Failure::TimedOut`] past the deadline,
    /// [`Failure::Protocol`] for a malformed reply.
    pub fn connect(socket: Option<&Path>, deadline: Option<Instant>) -> Result<Client, Failure> {
        let (path, stream) = match socket {
            Some(path) => (path.to_owned(), connect_trusted(path)?),
            None => discover()?,
        };
        let mut client = Client {
            stream,
            path,
            deadline,
        };
        client.write(&Hello::new(Role::Control))?;
        match client.read()? {
            HelloReply::Welcome { version, .. } if version == PROTOCOL_VERSION => Ok(client),
            HelloReply::Welcome { version, .. } => Err(Failure::Refused(format!(
                "the master at {} speaks protocol {version}, this ally-ctl speaks \
                 {PROTOCOL_VERSION}; use the ally-ctl of the master's release",
                client.path.display()
            ))),
            HelloReply::Refused(f) => Err(Failure::Refused(format!(
                "the master at {} refused the connection: {f}",
                client.path.display()
            ))),
        }
    }

    /// A second handle on the connection, whose `shutdown` ends a
    /// `recv` blocked in another thread.
    ///
    /// # Errors
    ///
    /// [`Failure::Unreachable`] if the descriptor cannot be duplicated.
    pub fn closer(&self) -> Result<UnixStream, Failure> {
        self.stream.try_clone().map_err(|e| {
            Failure::Unreachable(format!(
                "cannot follow the master at {}: {e}",
                self.path.display()
            ))
        })
    }

    /// Sends one request.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn send(&mut self, request: &ControlRequest) -> Result<(), Failure> {
        self.write(request)
    }

    /// Waits for the next response.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub fn recv(&mut self) -> Result<ControlResponse, Failure> {
        self.read()
    }

    fn write<T: serde::Serialize>(&mut self, msg: &T) -> Result<(), Failure> {
        let timeout = self.remaining()?;
        self.stream
            .set_write_timeout(timeout)
            .map_err(|e| self.io_failure(ally_proto::Error::Io(e)))?;
        frame::write_to(&self.stream, msg).map_err(|e| self.io_failure(e))
    }

    fn read<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Failure> {
        let timeout = self.remaining()?;
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| self.io_failure(ally_proto::Error::Io(e)))?;
        frame::read_from(&self.stream).map_err(|e| self.io_failure(e))
    }

    /// Time left before the deadline; `None` for no deadline.
    fn remaining(&self) -> Result<Option<std::time::Duration>, Failure> {
        let Some(deadline) = self.deadline else {
            return Ok(None);
        };
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::TimedOut(format!(
            "timed out waiting for the master at {}",
            self.path.display()
        ))
    }

    fn io_failure(&self, e: ally_proto::Error) -> Failure {
        let path = self.path.display();
        match e {
            ally_proto::Error::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                self.timed_out()
            }
            ally_proto::Error::Closed => Failure::Unreachable(format!(
                "the master at {path} closed the connection; did it exit?"
            )),
            ally_proto::Error::Io(e) => {
                Failure::Unreachable(format!("lost the connection to the master at {path}: {e}"))
            }
            e => Failure::Protocol(format!("bad reply from the master at {path}: {e}")),
        }
    }
}

/// The runtime directory, from the environment.
fn runtime_dir() -> Result<PathBuf, Failure> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    paths::runtime_dir(
        var(paths::RUNTIME_DIR_VAR),
        rustix::process::geteuid().is_root(),
        var("XDG_RUNTIME_DIR"),
    )
    .ok_or_else(|| {
        Failure::Unreachable(format!(
            "cannot tell where ally-master keeps its socket: set {} or XDG_RUNTIME_DIR \
             as the master had it, or pass --socket",
            paths::RUNTIME_DIR_VAR
        ))
    })
}

/// `SO_PEERCRED` — checks that the process serving `stream` (the one that
/// listens on `path`) runs as root or as ally-ctl's own user.
///
/// # Errors
///
/// [`Failure::Unreachable`] naming the socket and the uid otherwise.
fn trusted(path: &Path, stream: &UnixStream) -> Result<(), Failure> {
    let peer = rustix::net::sockopt::socket_peercred(stream).map_err(|e| {
        Failure::Unreachable(format!(
            "cannot tell who serves the socket at {}: {e}; refusing to trust it",
            path.display()
        ))
    })?;
    if peer.uid.is_root() || peer.uid == rustix::process::geteuid() {
        return Ok(());
    }
    Err(Failure::Unreachable(format!(
        "the socket at {} is served by uid {}, not root or you: refusing to trust it",
        path.display(),
        peer.uid.as_raw()
    )))
}

/// What a look at the runtime directory found.
#[derive(Debug, Default)]
pub struct Probe {
    /// Sockets that accept a connection from a process trusted as a
    /// master, sorted.
    pub live: Vec<PathBuf>,
    /// Stale sockets (left by a master that died) and why: `PATH: error`.
    pub dead: Vec<String>,
    /// Sockets served by someone not trusted, each refused.
    pub untrusted: Vec<Failure>,
}

/// Tries every `*.sock` in `dir`: a stale file left by a master that died
/// refuses the connection, a socket served by anyone but root or us is
/// not trusted. The probing connections close before their hello.
///
/// # Errors
///
/// [`Failure::Unreachable`] if `dir` cannot be read.
pub fn probe(dir: &Path) -> Result<Probe, Failure> {
    let mut found = Probe::default();
    for path in sockets_in(dir)? {
        match UnixStream::connect(&path) {
            Ok(stream) => match trusted(&path, &stream) {
                Ok(()) => found.live.push(path),
                Err(refusal) => found.untrusted.push(refusal),
            },
            Err(e) => found.dead.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(found)
}

/// The runtime directory and what is in it; `Err` if no master there is
/// live and trusted.
///
/// # Errors
///
/// [`Failure::Unreachable`]: no live socket (naming the stale ones), or
/// the first untrusted one's refusal.
pub fn probe_runtime_dir() -> Result<Probe, Failure> {
    let dir = runtime_dir()?;
    let mut found = probe(&dir)?;
    if !found.live.is_empty() {
        return Ok(found);
    }
    if !found.untrusted.is_empty() {
        return Err(found.untrusted.swap_remove(0));
    }
    let mut message = format!(
        "no ally-master is running (looked for *.sock in {}); start one with \
         `ally-master --config FILE` or pass --socket",
        dir.display()
    );
    if !found.dead.is_empty() {
        message.push_str(&format!(
            " (found, but cannot connect: {})",
            found.dead.join("; ")
        ));
    }
    Err(Failure::Unreachable(message))
}

/// Connects to the one master whose socket is in the runtime directory.
///
/// # Errors
///
/// As [`probe_runtime_dir`], and [`Failure::Unreachable`] when several
/// masters run there (commands that are not about apps cannot tell which
/// one is meant).
fn discover() -> Result<(PathBuf, UnixStream), Failure> {
    let mut found = probe_runtime_dir()?;
    if found.live.len() > 1 {
        let names: Vec<String> = found.live.iter().map(|p| p.display().to_string()).collect();
        return Err(Failure::Unreachable(format!(
            "several ally-masters are running ({}); pass --socket to choose one",
            names.join(", ")
        )));
    }
    let path = found.live.swap_remove(0);
    connect_trusted(&path).map(|stream| (path, stream))
}

/// Connects to `path` and checks who serves it.
fn connect_trusted(path: &Path) -> Result<UnixStream, Failure> {
    let stream = UnixStream::connect(path).map_err(|e| {
        Failure::Unreachable(format!(
            "cannot connect to {}: {e}; is ally-master running?",
            path.display()
        ))
    })?;
    trusted(path, &stream)?;
    Ok(stream)
}

/// The `*.sock` paths in `dir`, sorted; none if `dir` does not exist.
fn sockets_in(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Failure::Unreachable(format!(
                "cannot look for a master in {}: {e}; pass --socket",
                dir.display()
            )));
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == paths::SOCKET_EXTENSION)
        })
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ally-ctl-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_probe_skips_stale_sockets_and_finds_every_live_one() {
        let dir = temp_dir("probe");
        assert!(probe(&dir).unwrap().live.is_empty());

        // A socket file nobody listens on any more, and a non-socket name.
        drop(std::os::unix::net::UnixListener::bind(dir.join("stale.sock")).unwrap());
        std::fs::write(dir.join("notes.txt"), "").unwrap();
        let stale = probe(&dir).unwrap();
        assert!(stale.live.is_empty());
        assert_eq!(stale.dead.len(), 1);
        assert!(stale.dead[0].contains("stale.sock: "), "{:?}", stale.dead);

        let _b = std::os::unix::net::UnixListener::bind(dir.join("b.sock")).unwrap();
        let _a = std::os::unix::net::UnixListener::bind(dir.join("a.sock")).unwrap();
        let found = probe(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.live, [dir.join("a.sock"), dir.join("b.sock")]);
        assert_eq!(found.dead.len(), 1);
    }

    #[test]
    fn missing_runtime_dir_is_no_master() {
        let dir = temp_dir("missing");
        let found = probe(&dir.join("nope")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(found.live.is_empty() && found.dead.is_empty());
    }
}
