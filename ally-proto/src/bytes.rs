//! Byte strings (cache values) encoded as bytes, not as sequences of
//! `u8`: `#[serde(with = "crate::bytes")]`.
//!
//! postcard writes both the same way (a varint length, then the bytes), so
//! the wire and the handover state are unchanged; what changes is the
//! cost. Serde's default for a `Vec<u8>` is one `serialize_u8` call per
//! byte, which a debug build of the master paid at about 300 ns a byte: a
//! 512 KiB value took 150 ms to answer, and an instance reading one again
//! and again kept every other client waiting for seconds.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// Writes `v` with one `serialize_bytes`.
///
/// # Errors
///
/// The serializer's.
pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// Reads what [`serialize`] wrote (or a sequence of `u8`, which is the
/// same on postcard's wire).
///
/// # Errors
///
/// The deserializer's, for anything but bytes.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(ByteBuf)
}

struct ByteBuf;

impl<'de> Visitor<'de> for ByteBuf {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // Bounded by what arrived: the hint is the sender's word.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(v)
    }
}

/// The same for an `Option<Vec<u8>>`: `#[serde(with = "crate::bytes::option")]`.
pub mod option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Bytes behind [`super::serialize`], for `Some`.
    struct Ref<'a>(&'a [u8]);

    impl Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(self.0, s)
        }
    }

    /// Bytes behind [`super::deserialize`], for `Some`.
    struct Owned(Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Owned, D::Error> {
            super::deserialize(d).map(Owned)
        }
    }

    /// Writes `v` as an option of bytes.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_deref().map(Ref).serialize(s)
    }

    /// Reads what [`serialize`] wrote.
    ///
    /// # Errors
    ///
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Owned>::deserialize(d)?.map(|o| o.0))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Plain {
        v: Vec<u8>,
        o: Option<Vec<u8>>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct AsBytes {
        #[serde(with = "crate::bytes")]
        v: Vec<u8>,
        #[serde(with = "crate::bytes::option")]
        o: Option<Vec<u8>>,
    }

    #[test]
    fn the_wire_is_the_same_both_ways() {
        for (v, o) in [
            (vec![], None),
            (vec![0, 255, 7], Some(vec![])),
            (vec![9; 300], Some(vec![1; 200])),
        ] {
            let plain = postcard::to_allocvec(&Plain {
                v: v.clone(),
                o: o.clone(),
            })
            .unwrap();
            let bytes = postcard::to_allocvec(&AsBytes {
                v: v.clone(),
                o: o.clone(),
            })
            .unwrap();
            assert_eq!(plain, bytes);
            let back: AsBytes = postcard::from_bytes(&plain).unwrap();
            assert_eq!(
                back,
                AsBytes {
                    v: v.clone(),
                    o: o.clone()
                }
            );
            let old: Plain = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(old, Plain { v, o });
        }
    }
}
