//! The restart harness on a few messages, so `bench/restart/run` cannot rot unnoticed: with
//! Postfix's retry timing shortened to 1 s both variants must store every message (the real
//! run, with 300 s, measures the difference).

use postagent_bench::restart::{Opts, Variant, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_measures_both_variants() {
    // `cargo test --workspace` builds the binary next to this crate's tests (target/debug).
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts {
        postagent: bin,
        messages: 60,
        restart_after: Duration::from_millis(500),
        limit: Duration::from_secs(60),
        variants: vec![Variant::Before, Variant::After],
        retry: Duration::from_secs(1),
    };
    let report = run(&opts).await.expect("benchmark run");
    assert_eq!(report.outcomes.len(), 2);
    for o in &report.outcomes {
        assert!(o.at_kill >= 6, "{o:?}");
        assert!(o.all_stored.is_some(), "every message arrives after the restart: {o:?}");
    }
    let md = report.markdown("bench/restart/run --messages 60");
    assert!(md.contains("`bench/restart/run --messages 60`") && md.contains("socket activation"), "{md}");
}
