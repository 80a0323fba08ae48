//! The benchmark harness on a tiny load, so `bench/inbound/run` cannot rot unnoticed. The
//! figures are not asserted (they are measured, by the real run): only that every message
//! got through both configurations and every probe was matched.

use postagent_bench::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_measures_both_configurations() {
    if !postagent_lab::postfix::require_postfix() {
        return;
    }
    // `cargo test --workspace` builds the binary next to this crate's tests (target/debug).
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts {
        postagent: bin,
        messages: 30,
        sessions: 3,
        runs: 1,
        sizes: vec![1024],
        probes: 5,
        paced_rate: 5,
        paced_seconds: 2,
    };
    let report = run(&opts).await.expect("benchmark run");
    let row = &report.rows[0];
    assert_eq!((row.baseline.len(), row.postagent.len(), row.mapped.len()), (1, 1, 1));
    assert!(row.baseline[0] > 0.0 && row.postagent[0] > 0.0 && row.mapped[0] > 0.0, "{row:?}");
    assert_eq!(report.lookups.len(), 3, "postmap, cached, new key");
    assert!(
        report.lookups.iter().all(|l| l.latency.samples >= 5 && l.latency.p50 > 0.0),
        "{:?}",
        report.lookups
    );
    assert_eq!(report.idle.samples, 5);
    assert!(report.paced.samples >= 1 && report.loaded.samples >= 1);
    assert!(report.idle.p50 > 0.0 && report.idle.p50 <= report.idle.p99, "{}", report.idle);
    let md = report.markdown("bench/inbound/run --messages 30");
    assert!(md.contains("| 1 KB | **"), "{md}");
    assert!(md.contains("`bench/inbound/run --messages 30`"), "{md}");
}
