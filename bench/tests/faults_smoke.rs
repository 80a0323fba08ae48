//! The fault script on a short run, so `bench/faults/run` cannot rot unnoticed, and so its
//! promises are checked on every run of the suite: under kills, a PostgreSQL restart and a
//! failing receiver, every message Postfix accepted is stored exactly once and every event
//! reaches every subscription.

use postagent_bench::faults::{Opts, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_loses_and_doubles_nothing() {
    if !postagent_lab::postfix::require_postfix() || !postagent_lab::pg::PgCluster::available() {
        return;
    }
    // `cargo test --workspace` builds the binary next to this crate's tests (target/debug).
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts {
        postagent: bin,
        duration: Duration::from_secs(12),
        kill_every: Duration::from_secs(3),
        sessions: 4,
        limit: Duration::from_secs(120),
    };
    let report = run(&opts).await.expect("fault run");
    let md = report.markdown("bench/faults/run --seconds 12");
    assert!(report.kills >= 3 && report.pg_restarts == 1, "{md}");
    assert!(report.accepted > 0, "{md}");
    assert!(report.holds(), "{md}");
}
