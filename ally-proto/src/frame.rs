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
    let Some(prefix) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(Error::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let end = HEADER_LEN + len;
    Ok(buf.get(HEADER_LEN..end).map(|body| (body, end)))
}

/// An input buffer for a byte stream that carries frames.
///
/// Bytes go in with [`extend`](Self::extend) as they arrive; whole messages
/// come out of [`next`](Self::next). Used by the non-blocking master and by
/// the blocking clients alike.
#[derive(Debug, Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Number of buffered bytes not yet taken as messages.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no bytes are buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
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
        let Some((body, used)) = split(&self.buf)? else {
            return Ok(None);
        };
        let msg = decode(body);
        self.buf.drain(..used);
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
    fn read_from_reports_clean_close() {
        assert!(matches!(read_from::<_, u8>(&[][..]), Err(Error::Closed)));
        assert!(matches!(read_from::<_, u8>(&[1, 0][..]), Err(Error::Io(_))));
    }
}
