//! The hostile-mail harness on small messages, so `bench/hostile/run` cannot rot unnoticed.
//! The figures are not asserted (the real run measures them): only that each case was stored
//! within the caps and each forward answered.

use postagent_bench::hostile::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_measures_every_case() {
    // `cargo test --workspace` builds the binary next to this crate's tests (target/debug).
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts =
        Opts { postagent: bin, parts: 2_000, forward_counts: vec![1, 2], forward_bytes: 1_000, runs: 1 };
    let report = run(&opts).await.expect("benchmark run");
    assert_eq!(report.stored.len(), 4);
    for s in &report.stored {
        assert!(s.attachment_rows <= 100, "{s:?}");
        assert!(s.event_bytes < 64 * 1024, "{s:?}");
    }
    assert!(report.stored[1].truncated, "100,000 parts are past the caps");
    assert!(report.stored[2].truncated, "2,000,000 header fields are past the caps");
    assert!(!report.stored[3].truncated, "an ordinary message is whole");
    assert_eq!(report.forward.len(), 2);
    assert_eq!(report.refused.map(|r| r.2), Some(400), "4000 attachments are refused before parsing");
    let md = report.markdown("bench/hostile/run --parts 2000");
    assert!(md.contains("`bench/hostile/run --parts 2000`") && md.contains("| 2 |"), "{md}");
}
