//! Tests of [`Store::handle`](super::Store::handle).
