//! `bench/data`: what the data-rights and retention work costs with a full account.
//!
//! One account with one agent holding `messages` stored messages (10,000 by default), each a
//! few kilobytes with a small attachment, as LMTP stores them. On SQLite, then on a throwaway
//! PostgreSQL:
//!
//! - **export**: `GET /v1/account/export` from `postagent api` (a release build), timed to the
//!   last byte, with the API process's peak resident memory (VmHWM) before and after, to show
//!   that the export streams instead of building the document in memory;
//! - **purge**: every message trashed, then the janitor's retention purge (the one
//!   `postagent serve` runs) called with a clock past the trash window until the trash is
//!   empty, timed.

use crate::fanout::Role;
use crate::{AGENT, AGENT_DOMAIN};
use anyhow::{Context as _, bail};
use postagent_core::janitor::{Retention, purge};
use postagent_core::mail::inbound::{self, Delivered};
use postagent_core::secret::Secret;
use postagent_core::service;
use postagent_core::store::{MessageStore, SqlStore};
use postagent_core::time::Timestamp;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    pub messages: u32,
    /// Also on PostgreSQL (needs Debian's postgresql package).
    pub postgres: bool,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub backend: &'static str,
    pub seed_secs: f64,
    pub export_secs: f64,
    pub export_bytes: u64,
    /// The API process's peak resident set before and after the export, in KiB.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub purge_secs: f64,
    pub purged: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub opts: Opts,
    pub rows: Vec<Row>,
}

/// Stores `n` inbound messages for the agent (one transaction each, as LMTP does); the
/// account's key and the stored ids.
async fn seed(db_url: &str, n: u32) -> anyhow::Result<(String, Vec<String>, f64)> {
    let store = SqlStore::open(db_url, 2).await?;
    let (account, key) = service::bootstrap_account(&store, "bench@example.org").await?;
    service::create_agent(&store, &account.id, AGENT, "Bench", AGENT_DOMAIN).await?;
    let secret = Secret::new(vec![1; 32]);
    let paragraph = "The quarterly numbers are in the attached file; the summary follows. ".repeat(30);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        let raw = format!(
            "From: Sender {s} <sender{s}@example.org>\r\nTo: {AGENT}\r\nSubject: Report {i}\r\n\
             Message-ID: <data-{i}@example.org>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{paragraph}\r\n\
             --b\r\nContent-Type: text/csv; name=r{i}.csv\r\nContent-Disposition: attachment; filename=r{i}.csv\r\n\r\n\
             {rows}\r\n--b--\r\n",
            s = i % 97,
            rows = "quarter,total,delta\r\n".repeat(40)
        );
        let p = inbound::prepare(
            &secret,
            raw.into_bytes(),
            "sender@example.org",
            &[AGENT.to_owned()],
            Timestamp::now(),
        );
        match inbound::store_for(&store, &p, AGENT, Timestamp::now()).await? {
            Delivered::Stored { id } => ids.push(id),
            Delivered::Duplicate { id } => bail!("message {i} was a duplicate of {id}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    store.close().await;
    if db_url.starts_with("postgres") {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db_url).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    Ok((key, ids, secs))
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

async fn backend(opts: &Opts, name: &'static str, db_url: &str) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let (key, ids, seed_secs) = seed(db_url, opts.messages).await?;
    let bin = std::fs::canonicalize(&opts.postagent)?;
    let (api, addr) = Role::api(&bin, db_url, dir.path(), &[])?;
    let http = reqwest::Client::new();
    let rss_before_kib = peak_rss_kib(api.pid());
    let started = Instant::now();
    let res = http.get(format!("http://{addr}/v1/account/export")).bearer_auth(&key).send().await?;
    if !res.status().is_success() {
        bail!("export: {}", res.status());
    }
    let body = res.bytes().await?;
    let export_secs = started.elapsed().as_secs_f64();
    let rss_after_kib = peak_rss_kib(api.pid());
    let doc: serde_json::Value = serde_json::from_slice(&body).context("the export is not JSON")?;
    let exported = doc["messages"].as_array().map_or(0, Vec::len);
    if exported != ids.len() {
        bail!("the export holds {exported} messages, not {}", ids.len());
    }
    drop(api);

    // The trash, purged as the janitor does it, a month later.
    let store = SqlStore::open(db_url, 2).await?;
    let now = Timestamp::now();
    for id in &ids {
        store.set_message_trashed(id, Some(now)).await?;
    }
    let later = now.plus_secs(31 * 86_400);
    let keep = Retention::new(Duration::from_secs(30 * 86_400), 30, 0);
    let started = Instant::now();
    let mut purged = 0;
    loop {
        let done = purge(&store, later, keep, "bench", Duration::from_secs(60)).await?;
        purged += done.messages;
        if done.messages == 0 {
            break;
        }
    }
    let purge_secs = started.elapsed().as_secs_f64();
    store.close().await;
    if purged != ids.len() as u64 {
        bail!("purged {purged} of {} trashed messages", ids.len());
    }
    Ok(Row {
        backend: name,
        seed_secs,
        export_secs,
        export_bytes: body.len() as u64,
        rss_before_kib,
        rss_after_kib,
        purge_secs,
        purged,
    })
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
        let n = self.opts.messages;
        let mut s = format!(
            "# bench/data\n\n`{command}`\n\nOne agent with {n} stored messages (each about 4 KB of MIME with a CSV \
             attachment), stored one transaction each as LMTP does.\n\n\
             - **Export**: `GET /v1/account/export` from `postagent api` (release), to the last byte; the API \
             process's peak resident memory (VmHWM) before and after the export.\n\
             - **Purge**: every message trashed, then the janitor's retention purge with a clock past the trash \
             window until the trash is empty (batches of 500, one transaction each).\n\n"
        );
        let _ = writeln!(
            s,
            "| backend | export | export rate | export size | API peak memory before → after | purge | purge rate |\n|---|---|---|---|---|---|---|"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {:.2} s | {:.0} messages/s ({:.1} MB/s) | {:.1} MB | {:.1} → {:.1} MB | {:.2} s | {:.0} messages/s |",
                r.backend,
                r.export_secs,
                f64::from(n) / r.export_secs,
                r.export_bytes as f64 / 1e6 / r.export_secs,
                r.export_bytes as f64 / 1e6,
                r.rss_before_kib as f64 / 1024.0,
                r.rss_after_kib as f64 / 1024.0,
                r.purge_secs,
                r.purged as f64 / r.purge_secs,
            );
        }
        for r in &self.rows {
            let _ = writeln!(s, "\nSeeding {}: {n} messages stored in {:.1} s.", r.backend, r.seed_secs);
        }
        let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());
        let _ = writeln!(s, "\nOn {cpus} CPUs, client and server on the same machine.");
        s
    }
}
