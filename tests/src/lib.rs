//! End-to-end tests and benchmarks for ally: the real `ally-master`,
//! `ally-ctl` and demo service, real sockets, real signals.
//!
//! The tests themselves are in `tests/e2e.rs`; this library is what they
//! share with the `ally-bench` binary:
//!
//! - [`bins`] finds the binaries under test in the target directory and
//!   builds them first;
//! - [`harness`] gives each test its own directory and a [`harness::Master`]
//!   guard that stops the master and kills every process the test caused,
//!   failure or not;
//! - [`fd_store`] is the protocol half of `fake-systemd`, the stand-in for
//!   systemd's notify socket and file descriptor store;
//! - [`fixture`] is the usual set-up: the demo as app `web`;
//! - [`service`] writes the app's wrapper script and swaps it to "upgrade
//!   the binary on disk";
//! - [`load`] is an HTTP/1.1 load client that counts every failed request,
//!   [`grpc_load`] a gRPC one that counts every failed RPC;
//! - [`proc`] reads `/proc` (liveness, socket inodes, listening sockets);
//! - [`cmd`] runs a command within a time limit and shows what it did;
//! - [`clock`] stamps the master's log and the load's errors alike;
//! - [`script`] writes shell-script services, guards processes a test
//!   starts itself, and reads the stamped lines of the master's log.
//! - [`state_suite`] is the shared-state test body, run in simulate mode and
//!   by the `state-probe` service under a master.
//!
//! Nothing here waits a fixed time for something to happen: every wait polls
//! a condition until a deadline.

pub mod bins;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod control;
pub mod executable;
pub mod fd_store;
pub mod fixture;
pub mod grpc_load;
pub mod harness;
pub mod load;
pub mod proc;
pub mod reloading;
pub mod script;
pub mod service;
pub mod state_suite;
pub mod testdir;
pub mod upgrading;
pub mod users;
pub mod vitals;
