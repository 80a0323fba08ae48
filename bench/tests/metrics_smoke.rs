//! The metrics harness on a small account, so `bench/metrics/run` cannot rot unnoticed. The
//! times are not asserted (the real run measures them); the harness itself checks that every
//! answer counts exactly the seeded messages.

use postagent_bench::Markdown as _;
use postagent_bench::metrics::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_account_is_measured() {
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts { postagent: bin, messages: 300, agents: 3, requests: 2, postgres: false };
    let report = run(&opts).await.expect("benchmark run");
    assert_eq!(report.rows.len(), 1);
    let r = &report.rows[0];
    assert_eq!(r.timings.len(), 3);
    // 150 received with 3 rows each, 150 sent with 4, 5 for the 6 that bounced (n % 50 == 1).
    assert_eq!(r.ledger_rows, 150 * 3 + 144 * 4 + 6 * 5, "{r:?}");
    let md = report.markdown("bench/metrics/run --messages 300");
    assert!(md.contains("| SQLite | `GET /v1/metrics` |"), "{md}");
}
