//! End-to-end tests: a real `ally-master` running the demo service, driven
//! by the real `ally-ctl`, under a real HTTP load.
//!
//! Each test gets its own directory and master; the harness stops the
//! master and kills every process the test caused when the test ends, pass
//! or fail. The binaries are built first by the harness (see
//! `ally_tests::bins`), so plain `cargo test` runs these.
//!
//! Tests are named after the regression they guard against.

#[path = "e2e/attack.rs"]
mod attack;
#[path = "e2e/axum.rs"]
mod axum;
#[path = "e2e/channel.rs"]
mod channel;
#[path = "e2e/chaos.rs"]
mod chaos;
#[path = "e2e/completions.rs"]
mod completions;
#[path = "e2e/control_limits.rs"]
mod control_limits;
#[path = "e2e/ctl.rs"]
mod ctl;
#[path = "e2e/ctl_output.rs"]
mod ctl_output;
#[path = "e2e/drain.rs"]
mod drain;
#[path = "e2e/families.rs"]
mod families;
#[path = "e2e/fd_store.rs"]
mod fd_store;
#[path = "e2e/flood.rs"]
mod flood;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/incoming.rs"]
mod incoming;
#[path = "e2e/interop.rs"]
mod interop;
#[path = "e2e/kept_sockets.rs"]
mod kept_sockets;
#[path = "e2e/lifecycle.rs"]
mod lifecycle;
#[path = "e2e/listen_scope.rs"]
mod listen_scope;
#[path = "e2e/logs.rs"]
mod logs;
#[path = "e2e/notify_socket.rs"]
mod notify_socket;
#[path = "e2e/packages.rs"]
mod packages;
#[path = "e2e/pid1.rs"]
mod pid1;
#[path = "e2e/queue.rs"]
mod queue;
#[path = "e2e/reload_load.rs"]
mod reload_load;
#[path = "e2e/reread.rs"]
mod reread;
#[path = "e2e/rollback.rs"]
mod rollback;
#[path = "e2e/run.rs"]
mod run;
#[path = "e2e/shutdown.rs"]
mod shutdown;
#[path = "e2e/simulate_notify.rs"]
mod simulate_notify;
#[path = "e2e/soak.rs"]
mod soak;
#[path = "e2e/sockets.rs"]
mod sockets;
#[path = "e2e/spawn.rs"]
mod spawn;
#[path = "e2e/state.rs"]
mod state;
#[path = "e2e/status.rs"]
mod status;
#[path = "e2e/std_http.rs"]
mod std_http;
#[path = "e2e/supervise.rs"]
mod supervise;
#[path = "e2e/systemd_activation.rs"]
mod systemd_activation;
#[path = "e2e/systemd_notify.rs"]
mod systemd_notify;
#[path = "e2e/tonic.rs"]
mod tonic;
#[path = "e2e/trust.rs"]
mod trust;
#[path = "e2e/upgrade.rs"]
mod upgrade;
#[path = "e2e/upgrade_attack.rs"]
mod upgrade_attack;
#[path = "e2e/upgrade_frames.rs"]
mod upgrade_frames;
#[path = "e2e/upgrade_systemd.rs"]
mod upgrade_systemd;
#[path = "e2e/upgrade_users.rs"]
mod upgrade_users;
#[path = "e2e/users.rs"]
mod users;
#[path = "e2e/version.rs"]
mod version;
