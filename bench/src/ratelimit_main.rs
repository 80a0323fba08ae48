//! `bench-ratelimit`: what the rate-limit check adds to a send, on each backend: the window
//! count (the key lookup it needs is the one the handler would make anyway; the handler reuses
//! it). Timed against a SQLite file and a throwaway PostgreSQL, one request at a time, in
//! microseconds per check (median of runs), beside the key lookup for scale. See
//! bench/ratelimit/run.

use postagent_core::store::{AccountStore, RateLimitStore, SqlStore, Store};
use std::time::Instant;

const CHECKS: u32 = 2000;
const RUNS: usize = 5;

async fn time(store: &SqlStore, key_hash: &str, what: &str) -> anyhow::Result<(f64, f64)> {
    let mut counts = Vec::new();
    let mut lookups = Vec::new();
    for run in 0..RUNS {
        let started = Instant::now();
        for i in 0..CHECKS {
            store.count_hit(&format!("send:bench:{run}:{}", i % 50), i64::from(run as u32)).await?;
        }
        counts.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS));
        let started = Instant::now();
        for _ in 0..CHECKS {
            store.authenticate(key_hash, postagent_core::time::Timestamp::now()).await?;
        }
        lookups.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, l) = (median(&mut counts), median(&mut lookups));
    println!("| {what} | {c:.1} µs | {l:.1} µs |");
    Ok((c, l))
}

async fn key(store: &SqlStore) -> anyhow::Result<String> {
    let (_, key) =
        postagent_core::service::bootstrap_account(store as &dyn Store, "bench@example.org").await?;
    Ok(postagent_core::apikey::hash(&key))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("| backend | window count (added per limited request) | key lookup (for scale) |");
    println!("|---|---|---|");
    let dir = tempfile::tempdir()?;
    let sqlite = SqlStore::open(&format!("sqlite://{}/bench.db", dir.path().display()), 5).await?;
    let hash = key(&sqlite).await?;
    time(&sqlite, &hash, "SQLite (in-process count)").await?;
    let cluster = postagent_lab::pg::PgCluster::shared()
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not installed"))?;
    let url = cluster.create_database()?;
    let pg = SqlStore::open(&url, 5).await?;
    let hash = key(&pg).await?;
    time(&pg, &hash, "PostgreSQL (shared upsert)").await?;
    println!("\n{CHECKS} checks per run, median of {RUNS} runs, one at a time, on this machine.");
    Ok(())
}
