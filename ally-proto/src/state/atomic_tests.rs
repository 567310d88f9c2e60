//! Tests of [`Atomics`](super::Atomics).
