//! A byte stream fed to `FrameBuf` in chunks of random size, pulling
//! messages of a randomly chosen type after each chunk: never panics, takes
//! exactly one frame per message or error, and every message round-trips.
//! `read_from` over a reader that returns random short reads agrees with
//! `split` + `decode` on the whole stream.
#![no_main]

mod common;

use std::fmt::Debug;
use std::io::{self, Read};

use ally_proto::frame::{self, FrameBuf};
use ally_proto::{
    ControlRequest, ControlResponse, Error, Hello, HelloReply, InstanceRequest, InstanceResponse,
};
use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The message types a stream can carry.
const KINDS: usize = 6;

/// What became of one pull.
enum Pulled {
    /// A message, taking this many bytes.
    Message(usize),
    /// More bytes needed.
    Incomplete,
    /// A framing or decoding error: the stream cannot go on.
    Broken,
}

/// Pulls one message of type `T` from `buf`, whose content is `pending`,
/// and checks the outcome against `split` + `decode` of `pending`.
fn pull<T>(buf: &mut FrameBuf, pending: &[u8]) -> Pulled
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    assert_eq!(buf.len(), pending.len());
    let expected = frame::split(pending);
    let got = buf.next::<T>();
    match (expected, got) {
        (Ok(None), Ok(None)) => {
            assert_eq!(buf.len(), pending.len(), "Ok(None) consumed bytes");
            Pulled::Incomplete
        }
        (Ok(Some((body, used))), Ok(Some(msg))) => {
            assert_eq!(buf.len(), pending.len() - used);
            assert_eq!(frame::decode::<T>(body).as_ref().ok(), Some(&msg));
            common::round_trip(&msg, body);
            // The message also survives a trip through a fresh buffer.
            let mut fresh = FrameBuf::new();
            fresh.extend(&frame::encode(&msg).unwrap());
            assert_eq!(fresh.next::<T>().unwrap().as_ref(), Some(&msg));
            assert!(fresh.is_empty());
            Pulled::Message(used)
        }
        (Ok(Some((body, used))), Err(_)) => {
            assert_eq!(buf.len(), pending.len() - used, "a bad frame is dropped whole");
            assert!(frame::decode::<T>(body).is_err());
            Pulled::Broken
        }
        (Err(Error::TooLarge { .. }), Err(Error::TooLarge { .. })) => Pulled::Broken,
        (expected, got) => panic!("split gave {expected:?}, FrameBuf::next gave {got:?}"),
    }
}

fn pull_kind(kind: usize, buf: &mut FrameBuf, pending: &[u8]) -> Pulled {
    match kind {
        0 => pull::<Hello>(buf, pending),
        1 => pull::<HelloReply>(buf, pending),
        2 => pull::<InstanceRequest>(buf, pending),
        3 => pull::<InstanceResponse>(buf, pending),
        4 => pull::<ControlRequest>(buf, pending),
        _ => pull::<ControlResponse>(buf, pending),
    }
}

/// A reader that hands out `data` in the given short reads.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes.get(self.next).copied().unwrap_or(usize::MAX);
        self.next += 1;
        if size == 0 && !self.data.is_empty() && !out.is_empty() {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = size.max(1).min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `read_from` over short reads agrees with `split` + `decode`.
fn check_read_from<T>(stream: &[u8], sizes: Vec<usize>)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let reader = Chunked {
        data: stream,
        sizes,
        next: 0,
    };
    let got = frame::read_from::<_, T>(reader);
    match frame::split(stream) {
        Err(Error::TooLarge { .. }) => assert!(matches!(got, Err(Error::TooLarge { .. }))),
        Err(e) => panic!("split failed with {e}"),
        Ok(None) if stream.is_empty() => assert!(matches!(got, Err(Error::Closed))),
        Ok(None) => assert!(matches!(got, Err(Error::Io(_))), "{got:?}"),
        Ok(Some((body, _))) => match (frame::decode::<T>(body), got) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("decode gave {a:?}, read_from gave {b:?}"),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(split_at) = u.int_in_range(0..=u8::MAX) else {
        return;
    };
    // The control part: chunk sizes and message kinds; the rest is the
    // stream itself.
    let control_len = usize::from(split_at).min(u.len());
    let Ok(control) = u.bytes(control_len) else {
        return;
    };
    let stream = u.take_rest();
    let mut c = Unstructured::new(control);

    let mut buf = FrameBuf::new();
    let mut fed = 0;
    let mut taken = 0;
    'feed: while fed < stream.len() {
        let chunk = c.int_in_range(1..=64usize).unwrap_or(stream.len());
        let end = stream.len().min(fed + chunk);
        buf.extend(&stream[fed..end]);
        fed = end;
        let kind = c.choose_index(KINDS).unwrap_or(fed % KINDS);
        loop {
            match pull_kind(kind, &mut buf, &stream[taken..fed]) {
                Pulled::Message(used) => taken += used,
                Pulled::Incomplete => break,
                Pulled::Broken => break 'feed,
            }
        }
    }

    let sizes: Vec<usize> = (0..16)
        .map(|_| c.int_in_range(0..=8usize).unwrap_or(usize::MAX))
        .collect();
    match c.choose_index(KINDS).unwrap_or(0) {
        0 => check_read_from::<Hello>(stream, sizes),
        1 => check_read_from::<HelloReply>(stream, sizes),
        2 => check_read_from::<InstanceRequest>(stream, sizes),
        3 => check_read_from::<InstanceResponse>(stream, sizes),
        4 => check_read_from::<ControlRequest>(stream, sizes),
        _ => check_read_from::<ControlResponse>(stream, sizes),
    }
});
