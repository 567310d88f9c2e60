//! The instance's side channel for programs that speak systemd's notify
//! protocol: each instance gets a private `NOTIFY_SOCKET` (a datagram
//! socket in the abstract namespace) and may send `READY=1`, `STATUS=...`,
//! `STOPPING=1`, `RELOADING=1`, `MAINPID=...` on it.
//!
//! Only datagrams whose `SCM_CREDENTIALS` name the instance's own pid are
//! taken (systemd's `NotifyAccess=main`): any local process can reach an
//! abstract socket, but not forge its pid.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use rustix::process::Pid;

use crate::limits::MAX_NOTIFY_DATAGRAM;

/// One thing an instance said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`: it serves.
    Ready,
    /// `STATUS=...`: free text for `ally-ctl status`.
    Status(String),
    /// `STOPPING=1`: it is shutting down.
    Stopping,
    /// `RELOADING=1`: it is reloading its own configuration.
    Reloading,
    /// `MAINPID=...`: it says another process is its main one.
    MainPid(String),
}

/// Reads the messages of one datagram: newline-separated `KEY=VALUE`
/// assignments; unknown keys (`WATCHDOG=1`, `FDSTORE=1`, ...) and
/// malformed lines are skipped.
pub fn parse(datagram: &[u8]) -> Vec<Message> {
    let text = String::from_utf8_lossy(datagram);
    text.split('\n')
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match (key, value) {
                ("READY", "1") => Some(Message::Ready),
                ("STATUS", text) => Some(Message::Status(text.to_owned())),
                ("STOPPING", "1") => Some(Message::Stopping),
                ("RELOADING", "1") => Some(Message::Reloading),
                ("MAINPID", pid) => Some(Message::MainPid(pid.to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// An instance's notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    fd: OwnedFd,
    address: String,
}

impl NotifySocket {
    /// Binds `@ally-notify/<master pid>/<app>/<id>`: non-blocking,
    /// close-on-exec, receiving credentials.
    pub fn bind(app: &str, id: u64) -> std::io::Result<NotifySocket> {
        let name = format!("ally-notify/{}/{app}/{id}", std::process::id());
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        rustix::net::sockopt::set_socket_passcred(&fd, true)?;
        rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name.as_bytes())?)?;
        Ok(NotifySocket {
            fd,
            address: format!("@{name}"),
        })
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Every message waiting from process `pid`; datagrams from anyone else
    /// are dropped and counted in the second value.
    pub fn receive(&self, pid: Pid) -> (Vec<Message>, usize) {
        let mut messages = Vec::new();
        let mut strangers = 0;
        let mut buf = vec![0u8; MAX_NOTIFY_DATAGRAM];
        loop {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let received = match rustix::net::recvmsg(
                &self.fd,
                &mut iov,
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            ) {
                Ok(msg) => msg,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            };
            let sender = control.drain().find_map(|m| match m {
                RecvAncillaryMessage::ScmCredentials(cred) => Some(cred.pid),
                _ => None,
            });
            if sender != Some(pid) {
                strangers += 1;
                continue;
            }
            let len = received.bytes.min(buf.len());
            messages.extend(parse(&buf[..len]));
        }
        (messages, strangers)
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn parses_the_known_assignments() {
        let got = parse(b"READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1\nbogus\nMAINPID=42\n");
        assert_eq!(
            got,
            [
                Message::Ready,
                Message::Status("serving 3 clients".into()),
                Message::MainPid("42".into()),
            ]
        );
        assert!(parse(b"READY=0").is_empty());
        assert!(parse(&[0xff, b'=', 0]).is_empty());
    }

    #[test]
    fn takes_messages_from_the_right_pid_only() {
        let socket = NotifySocket::bind("test", u64::from(std::process::id())).unwrap();
        let name = &socket.address()[1..];
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to_addr(b"READY=1", &addr).unwrap();
        let me = rustix::process::getpid();
        let (messages, strangers) = socket.receive(me);
        assert_eq!((messages, strangers), (vec![Message::Ready], 0));
        client.send_to_addr(b"READY=1", &addr).unwrap();
        let other = Pid::from_raw(1).unwrap();
        assert_eq!(socket.receive(other), (vec![], 1));
    }
}
