//! Tests of [`Locker`](super::Locker).
