//! What starting an instance costs a large master: [`RELOADS`] timed
//! `reload --wait` of a `sleep` app (ready at once) on a master holding
//! [`CACHED_MIB`] MiB of shared state, beside the same on a master holding
//! none, in the same run. The master starts every child through its
//! launcher with `posix_spawn`, which copies nothing of its memory: the two
//! should cost the same.

use std::path::Path;
use std::time::{Duration, Instant};

use ally_tests::bins::bins;
use ally_tests::harness::{AppConfig, Master, TestDir, config_toml};
use ally_tests::proc::wait_until_every;

use crate::table::{Row, Section, ratio};

/// Reloads timed on each master.
pub const RELOADS: usize = 50;
/// Shared state the large master holds, in MiB (1 MB values).
pub const CACHED_MIB: usize = 512;
/// How long filling the cache may take.
const FILL_TIMEOUT: Duration = Duration::from_secs(120);

/// Reload latency on a small and on a large master.
pub fn measure() -> Section {
    eprintln!("ally-bench: reloads on a master holding nothing, then {CACHED_MIB} MiB...");
    let (small_rss, small) = reloads_with(0);
    let (large_rss, large) = reloads_with(CACHED_MIB);
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3 / RELOADS as f64);
    Section {
        rows: vec![
            Row(
                format!("reload --wait, master of {} MiB", large_rss >> 10),
                format!(
                    "{} = {} the {}-MiB master's",
                    ms(large),
                    ratio(large.as_secs_f64() / small.as_secs_f64()),
                    small_rss >> 10
                ),
            ),
            Row(
                format!("reload --wait, master of {} MiB", small_rss >> 10),
                ms(small),
            ),
        ],
        notes: vec![format!(
            "reload --wait of a `sleep` app (ready = \"immediate\"), {RELOADS} in a row, per \
             reload, on a master whose other app stored {CACHED_MIB} values of 1 MB in its \
             cache (tests/fixtures/cache_items.py), beside a master that stores none."
        )],
    }
}

/// The master's VmRSS in KiB, and how long [`RELOADS`] reloads took, with
/// `values` MB of cache.
fn reloads_with(values: usize) -> (u64, Duration) {
    let dir = TestDir::new("bench_spawns");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cache_items.py");
    let filler = AppConfig::new("filler", &fixture)
        .ready_timeout("120s")
        .line("max_cache_bytes = 1073741824")
        .line(&format!(
            "env = {{ ENTRIES = \"{values}\", SECONDS = \"0\" }}"
        ));
    let mut quiet = AppConfig::new("quiet", "sleep".as_ref()).line("ready = \"immediate\"");
    quiet.command.push("infinity".into());
    let master = Master::start_with(bins(), &dir, &config_toml(&[filler, quiet]));
    let full = wait_until_every(Duration::from_millis(100), FILL_TIMEOUT, || {
        master.log().contains("cache_items: done")
    });
    assert!(full, "the cache was not filled\n{}", master.log_tail());
    master.wait_main("quiet", None, Duration::from_secs(30));
    let rss = ally_tests::vitals::rss_kib(master.pid());
    let started = Instant::now();
    for _ in 0..RELOADS {
        master.reload_ok("quiet");
    }
    (rss, started.elapsed())
}
