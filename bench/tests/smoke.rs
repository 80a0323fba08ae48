//! The benchmark harness on a tiny load, so `bench/inbound/run` cannot rot unnoticed. The
//! figures are not asserted (they are measured, by the real run): only that every message
//! got through both configurations and every probe was matched.

use postagent_bench::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_measures_every_setup() {
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
        nullmilter: std::path::PathBuf::from(env!("CARGO_BIN_EXE_bench-nullmilter")),
        sizes: vec![1024],
        ed25519_sizes: vec![1024],
        postgres: postagent_lab::pg::PgCluster::available(),
        probes: 5,
        paced_rate: 5,
        paced_seconds: 2,
    };
    let report = run(&opts).await.expect("benchmark run");
    // One RSA-2048 row and one Ed25519 row, each with every set-up: (a), (b), (b-pg), (b-2),
    // (c), (d) (the PostgreSQL pair only where PostgreSQL is installed; CI has it).
    assert_eq!(report.rows.len(), 2);
    let keys = if opts.postgres { vec!["a", "b", "b-pg", "b-2", "c", "d"] } else { vec!["a", "b", "c", "d"] };
    for row in &report.rows {
        assert_eq!(row.by.iter().map(|(s, _)| s.key()).collect::<Vec<_>>(), keys, "{row:?}");
        for (setup, m) in &row.by {
            assert!(m.rates.len() == 1 && m.rates[0] > 0.0, "({}) {m:?}", setup.key());
            // Postfix worked for every set-up; its CPU is counted.
            assert!(
                m.cpu.first().is_some_and(|(n, ms)| n == "Postfix" && *ms > 0.0),
                "({}) {m:?}",
                setup.key()
            );
        }
    }
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
    assert!(md.contains("| 1 KB RSA-2048 | **"), "{md}");
    assert!(md.contains("| 1 KB Ed25519 | **"), "{md}");
    assert!(md.contains("`bench/inbound/run --messages 30`"), "{md}");
}
