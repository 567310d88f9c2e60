//! Values of the keys that serve programs which do not link ally:
//! `listen` (sockets handed over as systemd's `LISTEN_FDS`) and `ready`
//! (how readiness is known).

use ally_proto::{ListenAddr, ListenSpec, Network};
use serde::de::{Deserialize, Deserializer};

use super::value::{from_str, parse_duration};
use super::{ListenDecl, ReadyMode};

/// What a `listen` entry looks like, for error messages.
const LISTEN_EXAMPLE: &str = "e.g. \"tcp://0.0.0.0:8080\", \"http=tcp://[::]:80\", \
     \"unix:///run/web.sock?mode=0660\", \"unix://@web\", \"udp://127.0.0.1:53\", \
     \"unixgram:///run/log.sock\"";

/// One `listen` entry: `[NAME=]SCHEME://ADDRESS[?mode=OCTAL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenValue(pub ListenDecl);

impl<'de> Deserialize<'de> for ListenValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a socket URL", |s| parse_listen(s).map(ListenValue))
    }
}

/// Parses one `listen` entry.
pub fn parse_listen(s: &str) -> Result<ListenDecl, String> {
    let (name, url) = match s.split_once('=') {
        Some((name, url)) if !name.contains("://") => (Some(name), url),
        _ => (None, s),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{s:?} is not a socket URL: {LISTEN_EXAMPLE}"));
    };
    let network = match scheme {
        "tcp" => Network::Tcp,
        "udp" => Network::Udp,
        "unix" => Network::Unix,
        "unixgram" => Network::Unixgram,
        _ => {
            return Err(format!(
                "unknown socket type {scheme:?} in {s:?}: use tcp, udp, unix or unixgram"
            ));
        }
    };
    let (address, mode) = match rest.split_once("?mode=") {
        Some((address, mode)) => {
            let mode = u32::from_str_radix(mode, 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| format!("invalid mode {mode:?} in {s:?}: an octal like 0660"))?;
            if !matches!(ListenAddr::parse(network, address), Ok(ListenAddr::Path(_))) {
                return Err(format!("{s:?}: a mode applies to unix socket paths only"));
            }
            (address, Some(mode))
        }
        None => (rest, None),
    };
    ListenAddr::parse(network, address).map_err(|e| format!("{s:?}: {e}"))?;
    let name = name.unwrap_or(scheme);
    let valid_name = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid_name {
        return Err(format!(
            "invalid socket name {name:?} in {s:?}: 1 to 255 printable characters, no ':' \
             (it becomes an entry of LISTEN_FDNAMES)"
        ));
    }
    Ok(ListenDecl {
        name: name.to_owned(),
        spec: ListenSpec {
            network,
            address: address.to_owned(),
            mode,
        },
    })
}

/// `ready`: `"lib"`, `"notify"`, `"immediate"` or `"delay:DURATION"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyValue(pub ReadyMode);

impl<'de> Deserialize<'de> for ReadyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d, "a readiness mode", |s| parse_ready(s).map(ReadyValue))
    }
}

/// Parses a `ready` value.
pub fn parse_ready(s: &str) -> Result<ReadyMode, String> {
    match s {
        "lib" => Ok(ReadyMode::Lib),
        "notify" => Ok(ReadyMode::Notify),
        "immediate" => Ok(ReadyMode::Immediate),
        _ => match s.strip_prefix("delay:") {
            Some(d) => parse_duration(d).map(ReadyMode::Delay),
            None => Err(format!(
                "unknown readiness mode {s:?}: use \"lib\", \"notify\", \"immediate\" or \"delay:2s\""
            )),
        },
    }
}

/// The default for `ready`.
pub const DEFAULT_READY: ReadyMode = ReadyMode::Lib;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn listen_urls() {
        let d = parse_listen("http=tcp://0.0.0.0:80").unwrap();
        assert_eq!(d.name, "http");
        assert_eq!(d.spec.network, Network::Tcp);
        assert_eq!(d.spec.address, "0.0.0.0:80");
        let d = parse_listen("unix:///run/web.sock?mode=0660").unwrap();
        assert_eq!((d.name.as_str(), d.spec.mode), ("unix", Some(0o660)));
        assert_eq!(parse_listen("unix://@web").unwrap().spec.address, "@web");
        assert_eq!(
            parse_listen("udp://[::1]:53").unwrap().spec.network,
            Network::Udp
        );
        for bad in [
            "0.0.0.0:80",
            "sctp://1.2.3.4:5",
            "tcp://localhost:80",
            "unix://relative.sock",
            "tcp://1.2.3.4:5?mode=0660",
            "unix:///a.sock?mode=999",
            "a:b=tcp://1.2.3.4:5",
            "=tcp://1.2.3.4:5",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn ready_modes() {
        assert_eq!(parse_ready("notify"), Ok(ReadyMode::Notify));
        assert_eq!(
            parse_ready("delay:2s"),
            Ok(ReadyMode::Delay(Duration::from_secs(2)))
        );
        assert!(parse_ready("delay:").is_err());
        assert!(parse_ready("soon").is_err());
    }
}
