//! The fanout harness on a tiny load, so `bench/fanout/run` cannot rot unnoticed. The figures
//! are not asserted (the real run measures them): only that every delivery, probe and push
//! was matched and the report names them.

use postagent_bench::fanout::{Opts, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_measures_all_three_figures() {
    if !postagent_lab::postfix::require_postfix() {
        return;
    }
    // `cargo test --workspace` builds the binary next to this crate's tests (target/debug).
    let Some(bin) = postagent_bench::debug_postagent(env!("CARGO_TARGET_TMPDIR")) else { return };
    let opts = Opts {
        postagent: bin,
        messages: 20,
        subscriptions: 2,
        runs: 1,
        concurrency: 8,
        probes: 3,
        paced_rate: 5,
        paced_seconds: 1,
        connections: 20,
        postgres: postagent_lab::pg::PgCluster::available(),
        ws_messages: 5,
        ws_rate: 50,
    };
    let report = run(&opts).await.expect("benchmark run");
    assert_eq!((report.live_runs.len(), report.backlog_runs.len()), (1, 1));
    assert_eq!((report.live.deliveries, report.backlog.deliveries), (40, 40));
    if opts.postgres {
        assert_eq!((report.live_pg_runs.len(), report.live_pg.deliveries), (1, 40), "live on PostgreSQL");
    }
    assert!(report.live.deliveries_per_sec > 0.0 && report.backlog.deliveries_per_sec > 0.0);
    assert_eq!(report.idle.to_webhook.samples, 3);
    assert!(report.paced.to_webhook.samples >= 1);
    assert_eq!(report.load.sent + report.load.failed, 5);
    assert_eq!((report.connected, report.ws.samples), (20, 5));
    let md = report.markdown("bench/fanout/run --messages 20");
    assert!(md.contains("`bench/fanout/run --messages 20`"), "{md}");
    assert!(md.contains("| (c) server RSS per WebSocket, 20 open |"), "{md}");
    assert_eq!(md.contains("live, on PostgreSQL"), opts.postgres, "{md}");
}
