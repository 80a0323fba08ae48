//! The data harness on a small store, so `bench/data/run` cannot rot unnoticed. The figures
//! are not asserted (the real run measures them): only that the export held every message and
//! the purge emptied the trash.

use postagent_bench::Markdown as _;
use postagent_bench::data::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_store_is_exported_and_purged() {
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts { postagent: bin, messages: 40, postgres: false };
    let report = run(&opts).await.expect("benchmark run");
    assert_eq!(report.rows.len(), 1);
    let r = &report.rows[0];
    assert_eq!(r.purged, 40);
    assert!(r.export_bytes > 40 * 1000, "{r:?}");
    let md = report.markdown("bench/data/run --messages 40");
    assert!(md.contains("| SQLite |") && md.contains("messages/s"), "{md}");
}
