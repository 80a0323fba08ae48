//! The console harness on a small store, so `bench/console/run` cannot rot unnoticed. The
//! figures are not asserted (the real run measures them): only that every page answered and
//! the report names each one.

use postagent_bench::Markdown as _;
use postagent_bench::console::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_store_times_every_page() {
    // `cargo test --workspace` builds the binary next to this crate's tests (target/debug).
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts { postagent: bin, messages: 60, holds: 3, requests: 3, postgres: false };
    let report = run(&opts).await.expect("benchmark run");
    assert_eq!(report.rows.len(), 11);
    assert!(report.rows.iter().all(|r| r.latency.samples == 3 && r.bytes > 0), "{:?}", report.rows);
    let md = report.markdown("bench/console/run --messages 60");
    assert!(md.contains("| SQLite | inbox (an older page) |"), "{md}");
    assert!(md.contains("Seeding SQLite: 60 messages"), "{md}");
}
