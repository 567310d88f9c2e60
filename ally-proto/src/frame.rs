//! Framing: a `u32` little-endian length, then that many bytes of postcard.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before anything is
//! allocated, so a peer cannot make the reader reserve more than one frame.

use std::io::{Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// Largest body a frame may carry, in bytes (1 MiB).
///
/// Large enough for a listing of many apps or a big cache value, small enough
/// that a hostile peer cannot make the master buffer much.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Largest body a client may send on the master's control socket, in bytes
/// (64 KiB): the hello and control requests, which carry only app names and
/// a few numbers.
///
/// The master closes a control connection whose next frame announces more,
/// before buffering its body, so thousands of control clients cannot make it
/// hold more than a little each. Instances may send up to [`MAX_FRAME_LEN`].
pub const MAX_CONTROL_FRAME_LEN: usize = 64 << 10;

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Encodes `msg` as one frame: length prefix followed by the postcard body.
///
/// # Errors
///
/// [`Error::Encode`] if serialization fails, [`Error::TooLarge`] if the body
/// would exceed [`MAX_FRAME_LEN`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; HEADER_LEN];
    out = postcard::to_extend(msg, out).map_err(Error::Encode)?;
    let len = out.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(Error::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Decodes one message from a complete frame body (without the prefix).
///
/// The body must be consumed exactly: trailing bytes are an error, so two
/// encodings never decode to the same message.
///
/// # Errors
///
/// [`Error::Decode`] for bytes that are not a valid message,
/// [`Error::TrailingBytes`] when the message ends before the body does.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let (msg, rest) = postcard::take_from_bytes(body).map_err(Error::Decode)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes { extra: rest.len() });
    }
    Ok(msg)
}

/// Looks for one complete frame at the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, or the body and the number
/// of bytes the frame occupies (prefix included).
///
/// # Errors
///
/// [`Error::TooLarge`] as soon as the prefix announces more than
/// [`MAX_FRAME_LEN`], before the body has arrived.
pub fn split(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    split_limited(buf, MAX_FRAME_LEN)
}

/// [`split`] with a body limit of `max` bytes (at most [`MAX_FRAME_LEN`]).
///
/// # Errors
///
/// [`Error::TooLarge`] as soon as the prefix announces more than `max`.
pub fn split_limited(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, Error> {
    let max = max.min(MAX_FRAME_LEN);
    let Some(prefix) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    if len > max {
        return Err(Error::TooLarge { len, max });
    }
    let end = HEADER_LEN + len;
    Ok(buf.get(HEADER_LEN..end).map(|body| (body, end)))
}

/// Capacity an emptied [`FrameBuf`] keeps; it gives back anything above,
/// so a connection that once carried a large frame holds no memory while
/// idle.
const KEEP_CAPACITY: usize = 4 << 10;

/// An input buffer for a byte stream that carries frames.
///
/// Bytes go in with [`extend`](Self::extend) as they arrive; whole messages
/// come out of [`next`](Self::next). Used by the non-blocking master and by
/// the blocking clients alike.
///
/// Taking a message only moves an offset; the bytes left are moved to the
/// front when they are no more than those taken, so each byte is copied a
/// bounded number of times however many frames arrive together. Emptied, it
/// keeps at most a few KiB of capacity.
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
    /// Bytes at the front already taken as messages.
    start: usize,
    /// Largest body accepted.
    limit: usize,
}

impl Default for FrameBuf {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME_LEN)
    }
}

impl FrameBuf {
    /// An empty buffer for frames of up to [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer for frames of up to `limit` bytes (at most
    /// [`MAX_FRAME_LEN`]).
    pub fn with_limit(limit: usize) -> Self {
        FrameBuf {
            buf: Vec::new(),
            start: 0,
            limit: limit.min(MAX_FRAME_LEN),
        }
    }

    /// The largest body [`next`](Self::next) accepts.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the largest body accepted from the next frame on (at most
    /// [`MAX_FRAME_LEN`]).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_FRAME_LEN);
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        // Move the unread bytes to the front when they are no more than
        // the bytes taken (each byte moved is paid for by one taken), or
        // when appending would otherwise grow the allocation.
        if self.start > 0
            && (self.start >= self.len() || self.buf.len() + bytes.len() > self.buf.capacity())
        {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The buffered bytes not yet taken as messages: what a master
    /// upgraded in place carries over for a connection.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Number of buffered bytes not yet taken as messages.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether no bytes are buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the next whole message, if one has fully arrived.
    ///
    /// # Errors
    ///
    /// Any framing or decoding error; the stream cannot be resynchronised
    /// after one, so the caller should drop the connection.
    #[allow(
        clippy::should_implement_trait,
        reason = "generic over the message type, so it cannot be an Iterator"
    )]
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        let Some((body, used)) = split_limited(&self.buf[self.start..], self.limit)? else {
            return Ok(None);
        };
        let msg = decode(body);
        self.start += used;
        if self.start == self.buf.len() {
            self.start = 0;
            self.buf.clear();
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        } else if self.len() <= KEEP_CAPACITY && self.buf.capacity() > KEEP_CAPACITY {
            // A little left behind a large frame: keep it in a small
            // allocation, so what is buffered is what is held.
            self.buf = self.buf[self.start..].to_vec();
            self.start = 0;
        }
        msg.map(Some)
    }
}

/// Writes `msg` as one frame to a blocking writer.
///
/// # Errors
///
/// Encoding errors, or [`Error::Io`] from the writer.
pub fn write_to<W: Write, T: Serialize>(mut w: W, msg: &T) -> Result<(), Error> {
    let frame = encode(msg)?;
    w.write_all(&frame).map_err(Error::Io)
}

/// Reads one frame from a blocking reader and decodes it.
///
/// # Errors
///
/// [`Error::Closed`] on end of stream before a frame starts, [`Error::Io`]
/// (including `UnexpectedEof` mid-frame), and framing or decoding errors.
pub fn read_from<R: Read, T: DeserializeOwned>(mut r: R) -> Result<T, Error> {
    let mut prefix = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(Error::Closed),
            Ok(0) => return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(Error::Io)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_waits_for_whole_frame() {
        let frame = encode(&7u32).unwrap();
        assert_eq!(frame, [1, 0, 0, 0, 7]);
        for cut in 0..frame.len() {
            assert!(split(&frame[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        assert_eq!(split(&frame).unwrap(), Some((&[7u8][..], 5)));
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body_arrives() {
        let prefix = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
        assert!(matches!(split(&prefix), Err(Error::TooLarge { .. })));
        assert!(matches!(
            read_from::<_, u32>(&prefix[..]),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        assert!(matches!(
            decode::<u8>(&[1, 2]),
            Err(Error::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn frame_buf_yields_messages_in_order() {
        let mut fb = FrameBuf::new();
        let mut bytes = encode(&1u8).unwrap();
        bytes.extend(encode(&2u8).unwrap());
        fb.extend(&bytes[..3]);
        assert_eq!(fb.next::<u8>().unwrap(), None);
        fb.extend(&bytes[3..]);
        assert_eq!(fb.next::<u8>().unwrap(), Some(1));
        assert_eq!(fb.next::<u8>().unwrap(), Some(2));
        assert_eq!(fb.next::<u8>().unwrap(), None);
        assert!(fb.is_empty());
    }

    #[test]
    fn frame_buf_refuses_a_frame_over_its_own_limit() {
        let mut fb = FrameBuf::with_limit(8);
        fb.extend(&encode(&[7u8; 8]).unwrap());
        assert_eq!(fb.next::<[u8; 8]>().unwrap(), Some([7; 8]));
        // The prefix alone is enough to refuse: the body never has to come.
        fb.extend(&9u32.to_le_bytes());
        assert!(matches!(
            fb.next::<u8>(),
            Err(Error::TooLarge { len: 9, max: 8 })
        ));
        assert_eq!(FrameBuf::with_limit(usize::MAX).limit(), MAX_FRAME_LEN);
    }

    #[test]
    fn frame_buf_keeps_order_across_compaction_and_frees_when_empty() {
        let mut fb = FrameBuf::new();
        let mut stream = Vec::new();
        for i in 0..10_000u32 {
            stream.extend(encode(&i).unwrap());
        }
        let mut next = 0u32;
        for chunk in stream.chunks(1000) {
            fb.extend(chunk);
            // Take only some, so unread bytes are carried over and moved.
            for _ in 0..50 {
                match fb.next::<u32>().unwrap() {
                    Some(i) => {
                        assert_eq!(i, next);
                        next += 1;
                    }
                    None => break,
                }
            }
        }
        while let Some(i) = fb.next::<u32>().unwrap() {
            assert_eq!(i, next);
            next += 1;
        }
        assert_eq!(next, 10_000);
        assert!(fb.is_empty());
        fb.extend(&encode(&vec![1u8; 100_000]).unwrap());
        assert_eq!(
            fb.next::<Vec<u8>>().unwrap().map(|v| v.len()),
            Some(100_000)
        );
        assert!(
            fb.buf.capacity() <= KEEP_CAPACITY,
            "an empty buffer keeps its memory"
        );
    }

    /// The master charges a connection's input budget with `len()`, the
    /// bytes not yet taken: the allocation behind them must not be much
    /// more, or a client that sends one large frame and then one byte of
    /// the next holds the large frame's memory while charged for a byte
    /// (4096 such connections: hundreds of MiB against a 16 MiB budget).
    #[test]
    fn a_few_bytes_left_after_a_large_frame_keep_no_large_allocation() {
        let mut fb = FrameBuf::with_limit(MAX_FRAME_LEN);
        let mut bytes = encode(&vec![7u8; 60_000]).unwrap();
        bytes.push(1); // the first byte of the next frame's header
        fb.extend(&bytes);
        assert_eq!(fb.next::<Vec<u8>>().unwrap().map(|v| v.len()), Some(60_000));
        assert_eq!(fb.len(), 1);
        assert!(
            fb.buf.capacity() <= KEEP_CAPACITY,
            "one byte buffered holds {} bytes of capacity",
            fb.buf.capacity()
        );
    }

    #[test]
    fn read_from_reports_clean_close() {
        assert!(matches!(read_from::<_, u8>(&[][..]), Err(Error::Closed)));
        assert!(matches!(read_from::<_, u8>(&[1, 0][..]), Err(Error::Io(_))));
    }
}
