//! Tests of [`Cache`](super::Cache).
