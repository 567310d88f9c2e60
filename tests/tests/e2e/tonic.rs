//! The tonic example under ally-master: 20 reloads under a gRPC load whose
//! clients keep connecting, and not one failed RPC — and the failures the
//! drain prevents: with its grace set to zero, and in the service written
//! without it (`tonic-naive`, a plain `serve_with_incoming_shutdown`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ally_tests::bins::bins;
use ally_tests::fixture::{DEFAULT_TIMEOUT, START_TIMEOUT, free_port};
use ally_tests::grpc_load::{GrpcLoad, GrpcLoadOptions, GrpcStats};
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until;
use ally_tests::service::Service;

const APP: &str = "grpc";
/// Half of them open a new connection for every RPC, half every 4.
const CLIENTS: usize = 16;
const RELOADS: u64 = 20;
/// RPCs that must succeed before the reloads, and again after them.
const WARM_UP: u64 = 50;
/// The longest an old instance may take to exit after a reload: its grace
/// and its RPCs in flight, with room for a loaded machine.
const DRAINED: Duration = Duration::from_secs(15);

/// The tonic example, built with the demo from the examples of package
/// `ally` (with its `tonic` feature, which this package enables).
fn tonic_example() -> PathBuf {
    let path = bins().demo.with_file_name("tonic");
    assert!(
        path.is_file(),
        "{} was not built with the other examples",
        path.display()
    );
    path
}

/// A finished run: what the load saw, and the master (alive, for its log).
struct Run {
    stats: GrpcStats,
    /// Before `_dir`: the master stops before its directory goes.
    master: Master,
    _dir: TestDir,
}

/// Runs `program` (with `--addr ADDR` and `args`; it logs `{name}: instance
/// N pid P listening on ADDR`) under a master, reloads it [`RELOADS`] times
/// under the gRPC load, waits after each reload until its new instance is
/// main and the old one has exited, and returns what the load saw.
fn reloads_under_grpc_load(test: &str, program: &Path, name: &str, args: &[&str]) -> Run {
    let dir = TestDir::new(test);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addr_arg = addr.to_string();
    let mut argv = vec!["--addr", &addr_arg];
    argv.extend_from_slice(args);
    let service = Service::new(dir.path(), "service", program, &argv);
    let app = AppConfig::new(APP, service.path())
        .ready_timeout(DEFAULT_TIMEOUT)
        .stop_timeout(DEFAULT_TIMEOUT)
        .stop_signal("SIGTERM");
    let master = Master::start_with(bins(), &dir, &config_toml(&[app]));
    let first = master.wait_main(APP, Some(1), START_TIMEOUT);
    master.wait_for_log(
        &format!(
            "{name}: instance {} pid {} listening on {addr}",
            first.id, first.pid
        ),
        Duration::from_secs(10),
    );
    let load = GrpcLoad::start(addr, GrpcLoadOptions::reconnecting(CLIENTS));
    assert!(
        load.wait_for_ok(WARM_UP, Duration::from_secs(20)),
        "{name} did not answer the load\n{}",
        master.log_tail()
    );
    for n in 1..=RELOADS {
        master.reload_ok(APP);
        let main = first.id + n;
        assert_eq!(
            master.main_of(APP).map(|m| m.id),
            Some(main),
            "reload {n} did not leave its new instance main\n{}",
            master.log_tail()
        );
        // Each stop takes the grace (1 s by default): reloads faster than
        // that pile up draining instances until the master kills the
        // oldest (`max_draining`), which no drain survives.
        assert!(
            wait_until(DRAINED, || master
                .instances(APP)
                .iter()
                .all(|i| i["id"] == main)),
            "instance {} did not finish draining: {:?}\n{}",
            main - 1,
            master.instances(APP),
            master.log_tail()
        );
    }
    let so_far = load.ok();
    assert!(
        load.wait_for_ok(so_far + WARM_UP, Duration::from_secs(20)),
        "the last instance did not answer the load\n{}",
        master.log_tail()
    );
    let stats = load.stop();
    eprintln!("{stats}");
    Run {
        stats,
        master,
        _dir: dir,
    }
}

#[test]
fn tonic_reloads_under_reconnecting_grpc_load_fail_no_rpc() {
    let run = reloads_under_grpc_load("tonic_grpc_load", &tonic_example(), "tonic", &[]);
    let (stats, master) = (&run.stats, &run.master);
    let fail = |what: &str| panic!("{what}\n{stats}\n{}", master.log_tail());
    if stats.failures() != 0 {
        fail("RPCs or connects failed across reloads");
    }
    if stats.instances_seen.len() < 2 {
        fail("every RPC was answered by one instance: the reloads took no traffic");
    }
    assert!(
        master.log_tail().contains("exiting: drained"),
        "no instance said it drained\n{}",
        master.log_tail()
    );
}

/// The same load against the example with no grace (tonic's graceful stop
/// starts at the stop, as with a plain `serve_with_incoming_shutdown`):
/// connections accepted just before it are closed before their preface,
/// and the load sees it. This is what makes the test above able to fail.
#[test]
#[ignore = "a control, not a property: it shows the load can see a bad drain (7 to 79 failed \
            RPCs a run here), but how many connections race the stop depends on the machine, \
            and a fast one may see none; run with --ignored"]
fn tonic_without_grace_fails_rpcs_of_connections_accepted_before_the_stop() {
    let run = reloads_under_grpc_load(
        "tonic_no_grace",
        &tonic_example(),
        "tonic",
        &["--grace-ms", "0"],
    );
    let (stats, master) = (&run.stats, &run.master);
    assert!(
        stats.failed_rpcs > 0,
        "no RPC failed without the grace: the load cannot see what the grace prevents\n{stats}\n{}",
        master.log_tail()
    );
}

/// The service written without `ally::tonic` fails RPCs under the same
/// reloads and load, for the same reason.
#[test]
#[ignore = "a control, not a property: it shows the load can see a bad drain (7 to 79 failed \
            RPCs a run here), but how many connections race the stop depends on the machine, \
            and a fast one may see none; run with --ignored"]
fn naive_tonic_reloads_under_reconnecting_grpc_load_fail_rpcs() {
    let naive = Path::new(env!("CARGO_BIN_EXE_tonic-naive"));
    let run = reloads_under_grpc_load("tonic_naive", naive, "tonic-naive", &[]);
    assert!(
        run.stats.failed_rpcs > 0,
        "the naive service failed no RPC: the load cannot see a bad drain\n{}\n{}",
        run.stats,
        run.master.log_tail()
    );
}
