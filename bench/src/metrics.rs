//! `bench/metrics`: what a dashboard load costs once an account has history.
//!
//! One account with `agents` agents and `messages` messages (100,000 by default) spread over
//! the last 29 days, half received and half sent, each with the lifecycle rows the pipeline
//! writes for it (received: accepted, authentication, queued; sent: accepted, queued,
//! submitted, then delivered or a bounce with its suppression), bulk-inserted. Then, against
//! `postagent api` (a release build), `requests` timed calls each of:
//!
//! - `GET /v1/agents/{email}/metrics` (one agent's 30 days);
//! - `GET /v1/metrics` (the account's 30 days);
//! - `GET /v1/metrics?group_by=agent&bucket=day` (the full dashboard).
//!
//! On SQLite, then on a throwaway PostgreSQL; median and 95th percentile per call.

use crate::AGENT_DOMAIN;
use crate::fanout::Role;
use anyhow::{Context as _, bail};
use postagent_core::service;
use postagent_core::store::{MetricsStore, SqlStore};
use postagent_core::time::{DAY_MICROS, Timestamp};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    pub messages: u32,
    pub agents: u32,
    pub requests: u32,
    pub postgres: bool,
}

#[derive(Debug, Clone)]
pub struct Timing {
    pub call: &'static str,
    pub median_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub backend: &'static str,
    pub seed_secs: f64,
    pub ledger_rows: u64,
    pub timings: Vec<Timing>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub opts: Opts,
    pub rows: Vec<Row>,
}

/// Messages are spread over this many days back, so the default 30-day window still holds
/// every one of them however long the run takes.
const SPREAD_DAYS: i64 = 29;
/// Rows per INSERT statement.
const CHUNK: usize = 200;

/// When message `n` of `total` was made: spread evenly back from `now`.
fn created(now: i64, n: u32, total: u32) -> i64 {
    now - i64::from(n) * (SPREAD_DAYS * DAY_MICROS / i64::from(total.max(1)))
}

fn agent(i: u32) -> String {
    format!("bot{i}@{AGENT_DOMAIN}")
}

/// The ledger of message `n` (its reasons, in order) and its direction.
fn stages(n: u32) -> (&'static str, &'static [&'static str]) {
    if n.is_multiple_of(2) {
        let rows: &'static [&'static str] = match n % 10 {
            0 => &["acceptance.inbound_smtp", "authentication.dmarc_fail", "queue.inbound_processing"],
            2 => &["acceptance.inbound_smtp", "authentication.dmarc_none", "queue.inbound_processing"],
            _ => &["acceptance.inbound_smtp", "authentication.dmarc_pass", "queue.inbound_processing"],
        };
        ("inbound", rows)
    } else if n % 50 == 1 {
        (
            "outbound",
            &[
                "acceptance.outbound_api",
                "queue.outbound_submission",
                "submission.upstream_accepted",
                "delivery.permanent_bounce",
                "suppression.hard_bounce_applied",
            ],
        )
    } else {
        (
            "outbound",
            &[
                "acceptance.outbound_api",
                "queue.outbound_submission",
                "submission.upstream_accepted",
                "delivery.recipient_server_accepted",
            ],
        )
    }
}

/// A value of a bulk insert.
enum Bind {
    Text(Option<String>),
    Int(i64),
}

fn text(s: String) -> Bind {
    Bind::Text(Some(s))
}

/// `head VALUES ($1, …), (…)`: one statement for the rows, numbered placeholders (both
/// backends read those).
async fn insert_many(conn: &mut sqlx::AnyConnection, head: &str, rows: &[Vec<Bind>]) -> anyhow::Result<()> {
    let mut sql = format!("{head} VALUES ");
    let mut n = 0;
    for (i, row) in rows.iter().enumerate() {
        sql += if i == 0 { "(" } else { ", (" };
        for j in 0..row.len() {
            n += 1;
            sql += &format!("{}${n}", if j == 0 { "" } else { ", " });
        }
        sql += ")";
    }
    let mut q = sqlx::query(&sql);
    for b in rows.iter().flatten() {
        q = match b {
            Bind::Text(t) => q.bind(t.clone()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Bulk-inserts the messages and their ledgers; the number of ledger rows.
async fn seed(db_url: &str, opts: &Opts) -> anyhow::Result<(String, u64, f64)> {
    use postagent_core::mail::lifecycle::Reason;
    use postagent_core::vocab::Word;
    let store = SqlStore::open(db_url, 2).await?;
    let (account, key) = service::bootstrap_account(&store, "bench@example.org").await?;
    for i in 0..opts.agents {
        service::create_agent(&store, &account.id, &agent(i), "Bench", AGENT_DOMAIN).await?;
    }
    store.close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(db_url).await?;
    let started = Instant::now();
    let now = Timestamp::now().as_micros();
    let mut ledger_rows = 0u64;
    let ids: Vec<u32> = (0..opts.messages).collect();
    for chunk in ids.chunks(CHUNK) {
        let mut tx = pool.begin().await?;
        let messages: Vec<Vec<Bind>> = chunk
            .iter()
            .map(|n| {
                let (direction, _) = stages(*n);
                let at = created(now, *n, opts.messages);
                vec![
                    text(format!("msg_bench{n:027}")),
                    text(account.id.as_str().to_owned()),
                    text(agent(n % opts.agents)),
                    text(direction.to_owned()),
                    text(if direction == "inbound" { "received" } else { "sent" }.to_owned()),
                    Bind::Int(at),
                    Bind::Int(at),
                ]
            })
            .collect();
        insert_many(
            &mut tx,
            "INSERT INTO messages (id, account_id, agent_email, direction, status, created_at, updated_at)",
            &messages,
        )
        .await?;
        let mut rows = Vec::new();
        for n in chunk {
            let (direction, reasons) = stages(*n);
            let at = created(now, *n, opts.messages);
            for (i, r) in reasons.iter().enumerate() {
                let reason = Reason::parse(r).context("a reason")?;
                rows.push(vec![
                    text(format!("mlt_bench{n:025}{i:02}")),
                    text(format!("msg_bench{n:027}")),
                    text(account.id.as_str().to_owned()),
                    text(agent(n % opts.agents)),
                    text(direction.to_owned()),
                    Bind::Text(reason.per_recipient().then(|| format!("rcpt{n}@example.org"))),
                    text(reason.stage().as_str().to_owned()),
                    text(reason.outcome().as_str().to_owned()),
                    text(reason.as_str().to_owned()),
                    Bind::Int(i64::from(reason.retryable())),
                    Bind::Int(at + i as i64 * 1_000_000),
                    Bind::Int(at),
                ]);
            }
        }
        for part in rows.chunks(CHUNK) {
            insert_many(
                &mut tx,
                "INSERT INTO message_lifecycle (id, message_id, account_id, agent_email, direction, recipient, stage,
                     outcome, reason_code, retryable, occurred_at, message_created_at)",
                part,
            )
            .await?;
            ledger_rows += part.len() as u64;
        }
        tx.commit().await?;
    }
    pool.close().await;
    // The rows went in directly: the rollups the ledger's writes keep are computed once.
    let store = SqlStore::open(db_url, 2).await?;
    store.rebuild_rollups().await?;
    store.close().await;
    let secs = started.elapsed().as_secs_f64();
    // Fresh planner statistics, as a long-lived database has them.
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(db_url).await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok((key, ledger_rows, secs))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

async fn backend(opts: &Opts, name: &'static str, db_url: &str) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let (key, ledger_rows, seed_secs) = seed(db_url, opts).await?;
    let bin = std::fs::canonicalize(&opts.postagent)?;
    let (api, addr) = Role::api(&bin, db_url, dir.path(), &["--poll-rate-limit", "0"])?;
    let http = reqwest::Client::new();
    let one = agent(0).replace('@', "%40");
    let calls: [(&'static str, String); 3] = [
        ("GET /v1/agents/{email}/metrics", format!("/v1/agents/{one}/metrics")),
        ("GET /v1/metrics", "/v1/metrics".into()),
        ("GET /v1/metrics?group_by=agent&bucket=day", "/v1/metrics?group_by=agent&bucket=day".into()),
    ];
    let mut timings = Vec::new();
    for (call, path) in calls {
        let mut ms = Vec::new();
        // One untimed call warms the caches, as a dashboard's second load finds them.
        for i in 0..=opts.requests {
            let started = Instant::now();
            let res = http.get(format!("http://{addr}{path}")).bearer_auth(&key).send().await?;
            let status = res.status();
            let body: serde_json::Value = res.json().await?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() {
                bail!("{call}: {status} {body}");
            }
            if i == 0 {
                // The answer counts what was seeded: every message for the account, an
                // agent's share for one agent.
                let messages = body["messages_in_window"].as_i64().unwrap_or(0);
                let want = if path.starts_with("/v1/agents/") {
                    i64::from(opts.messages.div_ceil(opts.agents))
                } else {
                    i64::from(opts.messages)
                };
                let ledgered = body["messages_with_lifecycle"].as_i64().unwrap_or(0);
                if messages != want || ledgered != want {
                    bail!("{call}: {messages} messages ({ledgered} with a ledger) in the window, not {want}");
                }
                continue;
            }
            ms.push(elapsed);
        }
        ms.sort_by(f64::total_cmp);
        timings.push(Timing { call, median_ms: percentile(&ms, 0.5), p95_ms: percentile(&ms, 0.95) });
    }
    drop(api);
    Ok(Row { backend: name, seed_secs, ledger_rows, timings })
}

pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let sqlite = format!("sqlite://{}", dir.path().join("postagent.db").display());
    rows.push(backend(opts, "SQLite", &sqlite).await?);
    if opts.postgres {
        let cluster = postagent_lab::pg::PgCluster::shared().context("PostgreSQL is not installed")?;
        let url = cluster.create_database()?;
        rows.push(backend(opts, "PostgreSQL", &url).await?);
    }
    Ok(Report { opts: opts.clone(), rows })
}

impl crate::Markdown for Report {
    fn markdown(&self, command: &str) -> String {
        let o = &self.opts;
        let mut s = format!(
            "# bench/metrics\n\n`{command}`\n\nOne account, {} agents, {} messages over the last 29 days (half received, \
             half sent, with the lifecycle rows the pipeline writes for each), then {} timed calls of each \
             metrics request against `postagent api` (release), after one untimed call. Times are to the last \
             byte of the answer, client and server on the same machine.\n\n",
            o.agents, o.messages, o.requests
        );
        let _ = writeln!(s, "| backend | call | median | p95 |\n|---|---|---|---|");
        for r in &self.rows {
            for t in &r.timings {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {:.1} ms | {:.1} ms |",
                    r.backend, t.call, t.median_ms, t.p95_ms
                );
            }
        }
        for r in &self.rows {
            let _ = writeln!(
                s,
                "\nSeeding {}: {} messages and {} lifecycle rows bulk-inserted, and the daily rollups computed, in {:.1} s.",
                r.backend, o.messages, r.ledger_rows, r.seed_secs
            );
        }
        let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());
        let _ = writeln!(s, "\nOn {cpus} CPUs.");
        s
    }
}
