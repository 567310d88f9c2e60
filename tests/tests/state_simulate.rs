//! The shared-state suite in simulate mode: no master, so the `ally`
//! library answers from its in-process store. The same suite runs under a
//! real master in the `state` end-to-end tests.

#[test]
fn state_suite_passes_in_simulate_mode() {
    for var in ally_proto::env::ALL {
        assert!(
            std::env::var_os(var).is_none(),
            "{var} is set: this test must run without a master"
        );
    }
    if let Err(e) = ally_tests::state_suite::run() {
        panic!("shared-state suite failed in simulate mode: {e}");
    }
}
