//! Checks shared by the wire-format targets.

#![allow(dead_code, reason = "each target uses part of it")]

use std::fmt::Debug;

use ally_proto::frame::{self, HEADER_LEN, MAX_FRAME_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A message decoded from `body` re-encodes to a frame no longer than
/// `body`, which decodes to an equal message and encodes to the same bytes.
pub fn round_trip<T>(msg: &T, body: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let frame = frame::encode(msg).unwrap_or_else(|e| panic!("{msg:?} does not encode: {e}"));
    let len = u32::from_le_bytes(frame[..HEADER_LEN].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - HEADER_LEN);
    assert!(len <= MAX_FRAME_LEN);
    assert!(
        len <= body.len(),
        "{msg:?} re-encodes to {len} bytes, more than the {} it was decoded from",
        body.len()
    );
    let again: T = frame::decode(&frame[HEADER_LEN..])
        .unwrap_or_else(|e| panic!("{msg:?} does not decode from its own encoding: {e}"));
    assert_eq!(&again, msg);
    assert_eq!(frame::encode(&again).unwrap(), frame, "encoding of {msg:?} is not stable");
}

/// `frame::decode::<T>(data)` never panics; when it succeeds the message
/// round-trips.
pub fn decode_and_check<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let msg = frame::decode::<T>(data).ok()?;
    round_trip(&msg, data);
    Some(msg)
}
