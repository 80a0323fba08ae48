//! `bench/console`: how fast the console's pages answer with a full store.
//!
//! One account with one agent holding `messages` stored messages (10,000 by default) and
//! `holds` held sends, served by `postagent api` (a release build) on SQLite, then on a
//! throwaway PostgreSQL. A signed-in client (the session cookie, as a browser sends it) asks
//! each main page `requests` times, one request at a time after a warm-up, and the report
//! gives each page's latency, from the request to the last byte of the page.

use crate::fanout::Role;
use crate::{AGENT, AGENT_DOMAIN, Latency};
use anyhow::{Context as _, bail};
use postagent_core::mail::inbound::{self, Delivered};
use postagent_core::secret::Secret;
use postagent_core::service;
use postagent_core::store::SqlStore;
use postagent_core::time::Timestamp;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    pub messages: u32,
    pub holds: u32,
    pub requests: u32,
    /// Also on PostgreSQL (needs Debian's postgresql package).
    pub postgres: bool,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub backend: &'static str,
    pub page: &'static str,
    pub latency: Latency,
    pub bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub opts: Opts,
    pub rows: Vec<Row>,
    pub seed_secs: Vec<(&'static str, f64)>,
}

/// Stores `n` inbound messages for the agent, as LMTP would (one transaction each).
async fn seed(db_url: &str, n: u32) -> anyhow::Result<(String, f64)> {
    let store = SqlStore::open(db_url, 2).await?;
    let (account, key) = service::bootstrap_account(&store, "bench@example.org").await?;
    service::create_agent(&store, &account.id, AGENT, "Bench", AGENT_DOMAIN).await?;
    let secret = Secret::new(vec![1; 32]);
    let started = Instant::now();
    for i in 0..n {
        let raw = format!(
            "From: Sender {s} <sender{s}@example.org>\r\nTo: {AGENT}\r\nSubject: Order {i}\r\n\
             Message-ID: <bench-{i}@example.org>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\n\
             Content-Type: text/html\r\n\r\n<p>Hello, this is message <b>{i}</b>.</p>\r\n",
            s = i % 97
        );
        let p = inbound::prepare(
            &secret,
            raw.into_bytes(),
            "sender@example.org",
            &[AGENT.to_owned()],
            Timestamp::now(),
        );
        match inbound::store_for(&store, &p, AGENT, Timestamp::now()).await? {
            Delivered::Stored { .. } => {}
            Delivered::Duplicate { id } => bail!("message {i} was a duplicate of {id}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    store.close().await;
    // A live PostgreSQL has statistics (autovacuum analyses a table once a tenth of it
    // changed); a freshly loaded one has none until its next round, and plans as if empty.
    if db_url.starts_with("postgres") {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db_url).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
        pool.close().await;
    }
    Ok((key, secs))
}

/// A signed-in session's cookie.
async fn sign_in(http: &reqwest::Client, api: &str, key: &str) -> anyhow::Result<String> {
    let res = http.post(format!("{api}/console/login/key")).form(&[("key", key)]).send().await?;
    let set = res.headers().get(reqwest::header::SET_COOKIE).context("no session cookie")?.to_str()?;
    Ok(set.split(';').next().unwrap_or("").to_owned())
}

async fn api_call(
    http: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let res = http.request(method, url).bearer_auth(key).json(&body).send().await?;
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

async fn backend(opts: &Opts, name: &'static str, db_url: &str) -> anyhow::Result<(Vec<Row>, f64)> {
    let dir = tempfile::tempdir()?;
    let (key, seed_secs) = seed(db_url, opts.messages).await?;
    let bin = std::fs::canonicalize(&opts.postagent)?;
    // The benchmark's own reads must not meet the poll budget.
    let limits = ["--poll-rate-limit", "0", "--send-rate-limit", "0"];
    let (_api, addr) = Role::api(&bin, db_url, dir.path(), &limits)?;
    let api = format!("http://{addr}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let agent = AGENT.replace('@', "%40");
    let protection = json!({
        "inbound": {"gate": {"policy": "open"}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 86400, "on_expiry": "reject"},
    });
    api_call(&http, &key, reqwest::Method::PUT, &format!("{api}/v1/agents/{agent}/protection"), protection)
        .await?;
    let mut held = String::new();
    for i in 0..opts.holds {
        let body = json!({"to": [format!("person{i}@example.org")], "subject": format!("Held {i}"), "text": "Please review.", "html": "<p>Please <b>review</b>.</p>"});
        let v =
            api_call(&http, &key, reqwest::Method::POST, &format!("{api}/v1/agents/{agent}/messages"), body)
                .await?;
        held = v["message_id"].as_str().unwrap_or("").to_owned();
    }
    let list = api_call(
        &http,
        &key,
        reqwest::Method::GET,
        &format!("{api}/v1/agents/{agent}/messages?direction=all&read_status=all&limit=25"),
        Value::Null,
    )
    .await?;
    let cursor = list["next_cursor"].as_str().unwrap_or("").to_owned();
    let inbound = api_call(
        &http,
        &key,
        reqwest::Method::GET,
        &format!("{api}/v1/agents/{agent}/messages?direction=inbound&read_status=all&limit=1"),
        Value::Null,
    )
    .await?;
    let message = inbound["items"][0]["id"].as_str().context("no stored message")?.to_owned();
    let cookie = sign_in(&http, &api, &key).await?;
    let pages: Vec<(&'static str, String)> = vec![
        ("reviews (queue)", "/console/reviews".into()),
        ("review (a held message)", format!("/console/reviews/{held}")),
        ("inboxes", "/console/agents".into()),
        ("inbox (newest page of mail)", format!("/console/agents/{agent}")),
        ("inbox (an older page)", format!("/console/agents/{agent}?cursor={cursor}")),
        ("conversations", format!("/console/agents/{agent}/conversations")),
        ("message", format!("/console/agents/{agent}/messages/{message}")),
        ("message body frame", format!("/console/agents/{agent}/messages/{message}/body")),
        ("domains", "/console/domains".into()),
        ("API keys", "/console/keys".into()),
        ("sessions", "/console/sessions".into()),
    ];
    let mut rows = Vec::new();
    for (page, path) in pages {
        let url = format!("{api}{path}");
        let get = || async {
            let res = http.get(&url).header(reqwest::header::COOKIE, &cookie).send().await?;
            let status = res.status();
            let body = res.bytes().await?;
            if status != reqwest::StatusCode::OK {
                bail!("{path}: {status}");
            }
            anyhow::Ok(body.len())
        };
        for _ in 0..opts.requests.div_ceil(10) {
            get().await?;
        }
        let mut millis = Vec::with_capacity(opts.requests as usize);
        let mut bytes = 0;
        for _ in 0..opts.requests {
            let started = Instant::now();
            bytes = get().await?;
            millis.push(started.elapsed().as_secs_f64() * 1e3);
        }
        rows.push(Row { backend: name, page, latency: Latency::from_samples(millis), bytes });
    }
    Ok((rows, seed_secs))
}

pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let mut seed_secs = Vec::new();
    let sqlite = format!("sqlite://{}", dir.path().join("postagent.db").display());
    let (r, s) = backend(opts, "SQLite", &sqlite).await?;
    rows.extend(r);
    seed_secs.push(("SQLite", s));
    if opts.postgres {
        let cluster = postagent_lab::pg::PgCluster::shared().context("PostgreSQL is not installed")?;
        let url = cluster.create_database()?;
        let (r, s) = backend(opts, "PostgreSQL", &url).await?;
        rows.extend(r);
        seed_secs.push(("PostgreSQL", s));
    }
    Ok(Report { opts: opts.clone(), rows, seed_secs })
}

impl crate::Markdown for Report {
    fn markdown(&self, command: &str) -> String {
        let o = &self.opts;
        let mut s = format!(
            "# bench/console\n\n`{command}`\n\nOne agent with {} stored messages and {} held sends; one signed-in client, \
             one request at a time, {} timed requests per page after a warm-up; latency from the request to the \
             last byte of the page. Target: every page under 50 ms.\n\n",
            o.messages, o.holds, o.requests
        );
        let _ = writeln!(s, "| backend | page | p50 | p99 | max | page size |\n|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} KB |",
                r.backend,
                r.page,
                r.latency.p50,
                r.latency.p99,
                r.latency.max,
                r.bytes as f64 / 1024.0
            );
        }
        let worst = self.rows.iter().map(|r| r.latency.p99).fold(0.0, f64::max);
        let _ = writeln!(s, "\nSlowest page p99: {worst:.1} ms.");
        for (b, secs) in &self.seed_secs {
            let _ = writeln!(s, "Seeding {b}: {} messages stored in {secs:.1} s.", o.messages);
        }
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(s, "\nOn {cpus} CPUs, client and server on the same machine.");
        s
    }
}
