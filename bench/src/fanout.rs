//! `bench/fanout`: how fast stored mail reaches agents.
//!
//! Release builds of `postagent` on fresh SQLite databases, `webhook_mode = development` so
//! the receiver may be on loopback, and in this process a real HTTP receiver (axum, answering
//! 204) and real WebSocket clients (tokio-tungstenite). Three figures:
//!
//! - **(a) deliveries/s** with `subscriptions` webhooks for `email.received`, two ways:
//!   *live*, `postagent serve` storing `messages` messages sent straight to its LMTP port from
//!   8 sessions as fast as it takes them while it delivers them (the figure is deliveries per
//!   second from the first POST received to the last; the storing rate is beside it); and
//!   *backlog*, the same messages stored by `postagent api` + `postagent lmtp` with no worker
//!   running, then drained by `postagent worker` alone (the worker's own ceiling).
//! - **(b) Postfix → webhook**: `postagent serve` behind a private Postfix (milter and LMTP,
//!   as `postfix-conf/` wires them) with one subscription; probes over SMTP timed from the
//!   final `.` of DATA to the POST's arrival, one every 20 ms on an idle system, and again
//!   while an even load of `paced_rate` msg/s goes through the same Postfix. Each probe is
//!   also split at the row's `created_at` into DATA → stored and stored → POST.
//! - **(c) WebSockets**: `connections` agents, one socket each; the server's RSS before and
//!   after they are all open gives the memory per connection; then `ws_messages` messages to
//!   connected agents over LMTP, timed from the final `.` to the frame on that agent's socket.

mod deliveries;
pub(crate) mod lmtp;
mod load;
pub mod receiver;
mod system;

pub(crate) use deliveries::Role;
pub use deliveries::Throughput;
use deliveries::{backlog, live, median_run, rates};
use lmtp::{Lmtp, inject, subscribe};
pub use system::Cpu;
use system::*;

use crate::probe::send_probe_at;
use crate::report::{Latency, environment};
use crate::{AGENT, AGENT_DOMAIN, Postagent, start_postfix};
use anyhow::Context as _;
use futures_util::StreamExt;
use load::Load;
use postagent_core::service;
use postagent_core::store::SqlStore;
use postagent_lab::PostfixInstance;
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone, sample_message, unique_token};
use receiver::Receiver;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    pub messages: u32,
    pub subscriptions: u32,
    /// Runs of (a), each way; the median is reported.
    pub runs: u32,
    /// `webhook_concurrency` of the servers measured.
    pub concurrency: u32,
    pub probes: u32,
    pub paced_rate: u32,
    pub paced_seconds: u32,
    pub connections: u32,
    /// Also (a) live on PostgreSQL.
    pub postgres: bool,
    pub ws_messages: u32,
    /// The pace of the (c) messages, msg/s.
    pub ws_rate: u32,
}

/// (b) probes: the whole path, and split at the row's `created_at`.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    pub to_webhook: Latency,
    pub to_stored: Latency,
    pub stored_to_webhook: Latency,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub opts: Option<Opts>,
    /// The median runs of (a), and every run.
    pub live: Throughput,
    pub backlog: Throughput,
    pub live_runs: Vec<Throughput>,
    pub backlog_runs: Vec<Throughput>,
    /// (a) live on PostgreSQL (durable settings): the median run, and every run.
    pub live_pg: Throughput,
    pub live_pg_runs: Vec<Throughput>,
    pub idle: Probes,
    pub paced: Probes,
    pub load: Load,
    /// Seconds from the load's end until Postfix's queue was empty.
    pub drain_secs: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_after_messages_kib: u64,
    pub connected: usize,
    pub open_secs: f64,
    pub open_cpu: Cpu,
    /// WebSocket handshakes (TCP connect to 101), 250 at a time.
    pub handshake: Latency,
    /// Connections the kernel dropped meanwhile because a listen queue was full.
    pub listen_overflows: u64,
    pub load_cpu: Cpu,
    pub ws: Latency,
    pub ws_warnings: usize,
    /// CPU cores busy on the machine in the 2 s before the run (other processes).
    pub background: f64,
    pub environment: String,
}

const LIMIT: Duration = Duration::from_secs(600);
/// Gap between (b) probes.
const PROBE_GAP: Duration = Duration::from_millis(20);
/// LMTP sessions sending the (a) messages at once.
const SESSIONS: u32 = 8;

pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    postagent_lab::mail_lab::check_can_run_postfix()?;
    check_open_files(u64::from(opts.connections))?;
    // Anything else busy on the machine skews every figure: measured, and said in the report.
    let (busy0, total0) = machine_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (busy, total) = machine_ticks();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let background = busy.saturating_sub(busy0) as f64 / total.saturating_sub(total0).max(1) as f64 * cores;
    if background > 0.2 {
        eprintln!("warning: {background:.2} CPU cores were busy before the run; the figures will be low");
    }
    let zone = SampleZone::start().await?;
    zone.dns().set_ttl(crate::DNS_TTL);
    let mut report =
        Report { opts: Some(opts.clone()), environment: environment(), background, ..Report::default() };

    // (a), the ways alternating, so a slow spell of the machine hits them all alike.
    let pg = if opts.postgres { Some(postagent_lab::pg::PgCluster::start_durable()?) } else { None };
    for run in 1..=opts.runs.max(1) {
        let l = live(opts, &zone, None).await?;
        eprintln!("(a) run {run} live: {l}; {}", l.cpu);
        report.live_runs.push(l);
        if let Some(pg) = &pg {
            let l = live(opts, &zone, Some(pg)).await?;
            eprintln!("(a) run {run} live on PostgreSQL: {l}; {}", l.cpu);
            report.live_pg_runs.push(l);
        }
        let b = backlog(opts, &zone).await?;
        eprintln!("(a) run {run} backlog: {b}; {}", b.cpu);
        report.backlog_runs.push(b);
    }
    report.live = median_run(&report.live_runs);
    report.live_pg = median_run(&report.live_pg_runs);
    drop(pg);
    report.backlog = median_run(&report.backlog_runs);

    // (b) and (c) share one server (its agents seeded before it starts).
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
    eprintln!("seeding {} agents", opts.connections + 1);
    let (key, agents) = seed(&db_url, opts.connections).await?;
    let pa = serve(opts, &zone, dir, db_url).await?;
    let postfix = start_postfix(Some(format!("inet:{}", pa.milter)), pa.lmtp).await?;
    let http = reqwest::Client::new();

    // (b)
    let rx = Receiver::start().await?;
    let hook = subscribe(&http, &pa.api, &key, &rx.url("/latency")).await?;
    postfix.wait_queue_empty(LIMIT).await?;
    // One uncounted probe: the first connection of each kind is slower (process start-up).
    probes(&postfix, &pa, &rx, 3, None).await?;
    report.idle = probes(&postfix, &pa, &rx, opts.probes, None).await?;
    eprintln!("(b) idle: {}", report.idle.to_webhook);
    let token = unique_token()?;
    let meter = CpuMeter::start(pa.pid());
    let load = load::start(postfix.smtp_addr(), opts.paced_rate, opts.paced_seconds, token);
    let (paced, load, drain) = probes_under(&postfix, &pa, &rx, load).await?;
    report.load_cpu = meter.stop();
    (report.paced, report.load, report.drain_secs) = (paced, load, drain);
    eprintln!(
        "(b) at {:.0} msg/s ({} sent, {} failed; {}): {}; queue empty {:.1} s after the load",
        report.load.achieved_rate(),
        report.load.sent,
        report.load.failed,
        report.load_cpu,
        report.paced.to_webhook,
        report.drain_secs
    );
    // (c) measures the WebSocket path alone: no webhook POST per message meanwhile.
    let r =
        http.delete(format!("{}/v1/webhooks/{hook}?confirm=DELETE", pa.api)).bearer_auth(&key).send().await?;
    anyhow::ensure!(r.status().is_success(), "delete webhook: {}", r.status());
    drop(rx);

    // (c)
    let warnings_before = warnings(&pa).len();
    let pid = pa.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.rss_before_kib = rss_kib(pid)?;
    let (frames_tx, mut frames) = mpsc::unbounded_channel::<(usize, Instant, String)>();
    let mut sockets = Vec::with_capacity(agents.len());
    let mut handshakes = Vec::with_capacity(agents.len());
    let base = pa.api.replace("http://", "ws://");
    let opened = Instant::now();
    let meter = CpuMeter::start(pid);
    let overflows = listen_overflows();
    for (c, chunk) in agents.chunks(250).enumerate() {
        let mut batch = Vec::new();
        for (i, agent) in chunk.iter().enumerate() {
            let url = format!("{base}/v1/agents/{}/ws", agent.replace('@', "%40"));
            let (key, tx) = (key.clone(), frames_tx.clone());
            batch.push(tokio::spawn(open_socket(url, key, c * 250 + i, tx)));
        }
        for b in batch {
            let (socket, took) = b.await??;
            sockets.push(socket);
            handshakes.push(took.as_secs_f64() * 1000.0);
        }
    }
    report.open_secs = opened.elapsed().as_secs_f64();
    report.open_cpu = meter.stop();
    report.listen_overflows = listen_overflows().saturating_sub(overflows);
    report.handshake = Latency::from_samples(handshakes);
    report.connected = sockets.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    anyhow::ensure!(
        sockets.iter().all(|s| !s.is_finished()),
        "{} sockets closed while idle",
        sockets.iter().filter(|s| s.is_finished()).count()
    );
    report.rss_after_kib = rss_kib(pid)?;
    eprintln!(
        "(c) {} sockets open in {:.1} s (handshakes {}; {} listen-queue overflows; {}): RSS {} → {} KiB, {:.1} KiB per connection",
        report.connected,
        report.open_secs,
        report.handshake,
        report.listen_overflows,
        report.open_cpu,
        report.rss_before_kib,
        report.rss_after_kib,
        report.per_connection_kib()
    );
    report.ws = ws_latency(opts, &pa, &agents, &mut frames).await?;
    report.rss_after_messages_kib = rss_kib(pid)?;
    report.ws_warnings = show("(c)", &warnings(&pa), warnings_before);
    eprintln!("(c) delivery: {}", report.ws);
    let closed = sockets.iter().filter(|s| s.is_finished()).count();
    anyhow::ensure!(closed == 0, "{closed} sockets closed while messages were pushed");
    for s in &sockets {
        s.abort();
    }
    drop(postfix);
    pa.stop()?;
    Ok(report)
}

/// `postagent serve` as measured: development webhook rules, the chosen concurrency.
async fn serve(
    opts: &Opts,
    zone: &SampleZone,
    dir: tempfile::TempDir,
    db_url: String,
) -> anyhow::Result<Postagent> {
    let concurrency = opts.concurrency.to_string();
    let env =
        [("POSTAGENT_WEBHOOK_MODE", "development"), ("POSTAGENT_WEBHOOK_CONCURRENCY", concurrency.as_str())];
    let url = db_url.clone();
    let extra: &[&str] = if url.starts_with("postgres") { &["--database-url", &url] } else { &[] };
    Postagent::start_in(&opts.postagent, zone, dir, db_url, extra, &env).await
}

/// The account (its key) and `n` agents on the shared domain, written before postagent starts.
async fn seed(db_url: &str, n: u32) -> anyhow::Result<(String, Vec<String>)> {
    let store = SqlStore::open(db_url, 1).await?;
    let (account, key) = service::bootstrap_account(&store, "bench@example.org").await?;
    service::create_agent(&store, &account.id, AGENT, "Bench", AGENT_DOMAIN).await?;
    let mut agents = Vec::with_capacity(n as usize);
    for i in 0..n {
        let email = format!("ws{i}@{AGENT_DOMAIN}");
        service::create_agent(&store, &account.id, &email, "", AGENT_DOMAIN).await?;
        agents.push(email);
    }
    store.close().await;
    Ok((key, agents))
}

/// One probe sent: subject, Message-ID, wall clock (µs) and monotonic time of the final dot.
struct Sent {
    subject: String,
    id: String,
    wall: i64,
    at: Instant,
}

/// `count` probes through Postfix, one every [`PROBE_GAP`].
async fn probes(
    postfix: &PostfixInstance,
    pa: &Postagent,
    rx: &Receiver,
    count: u32,
    token: Option<String>,
) -> anyhow::Result<Probes> {
    let token = match token {
        Some(t) => t,
        None => unique_token()?,
    };
    let mut sent = Vec::new();
    for n in 0..count {
        let (id, wall, at) = send_probe_at(postfix, n, &token).await?;
        sent.push(Sent { subject: format!("probe {n} {token}"), id, wall, at });
        tokio::time::sleep(PROBE_GAP).await;
    }
    measure(pa, rx, &sent).await
}

/// Probes every [`PROBE_GAP`] for as long as `load` runs; then waits for Postfix's queue to
/// empty. Returns the probes, the load and how long the queue took to empty after it.
async fn probes_under(
    postfix: &PostfixInstance,
    pa: &Postagent,
    rx: &Receiver,
    mut load: tokio::task::JoinHandle<Load>,
) -> anyhow::Result<(Probes, Load, f64)> {
    let token = unique_token()?;
    let mut sent = Vec::new();
    let load = loop {
        let n = sent.len() as u32;
        let (id, wall, at) = send_probe_at(postfix, n, &token).await?;
        sent.push(Sent { subject: format!("probe {n} {token}"), id, wall, at });
        tokio::select! {
            done = &mut load => break done?,
            () = tokio::time::sleep(PROBE_GAP) => {}
        }
    };
    let ended = Instant::now();
    postfix.wait_queue_empty(LIMIT).await?;
    let drain = ended.elapsed().as_secs_f64();
    Ok((measure(pa, rx, &sent).await?, load, drain))
}

/// Matches each probe with its POST (by subject) and its row (by Message-ID).
async fn measure(pa: &Postagent, rx: &Receiver, sent: &[Sent]) -> anyhow::Result<Probes> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut arrived: HashMap<String, Instant> = HashMap::new();
    let mut seen = 0;
    loop {
        let hits = rx.hits();
        for h in &hits[seen..] {
            if let Some(s) = h.subject() {
                arrived.entry(s).or_insert(h.at);
            }
        }
        seen = hits.len();
        if sent.iter().all(|s| arrived.contains_key(&s.subject)) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "some probes were never POSTed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = sqlx::SqlitePool::connect(&pa.db_url).await?;
    let (mut total, mut stored, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for s in sent {
        let posted = arrived[&s.subject].saturating_duration_since(s.at);
        let created: i64 = sqlx::query_scalar("SELECT created_at FROM messages WHERE rfc_message_id = ?")
            .bind(&s.id)
            .fetch_one(&pool)
            .await
            .with_context(|| format!("probe {} is not stored", s.id))?;
        let to_stored = (created - s.wall) as f64 / 1000.0;
        let to_webhook = posted.as_secs_f64() * 1000.0;
        total.push(to_webhook);
        stored.push(to_stored);
        after.push(to_webhook - to_stored);
    }
    pool.close().await;
    Ok(Probes {
        to_webhook: Latency::from_samples(total),
        to_stored: Latency::from_samples(stored),
        stored_to_webhook: Latency::from_samples(after),
    })
}

/// Opens one socket and reports each text frame's arrival (index, time, text) until it closes;
/// returns its task and how long the handshake took.
async fn open_socket(
    url: String,
    key: String,
    idx: usize,
    frames: mpsc::UnboundedSender<(usize, Instant, String)>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Duration)> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse()?);
    let t0 = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.context("WebSocket handshake")?;
    let took = t0.elapsed();
    let task = tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame {
                let _ = frames.send((idx, Instant::now(), text.as_str().to_owned()));
            }
        }
    });
    Ok((task, took))
}

/// (c) latency: `ws_messages` messages over LMTP at `ws_rate` msg/s, each to a connected
/// agent without a push still due, timed from the final `.` to the frame on its socket
/// (matched by subject).
async fn ws_latency(
    opts: &Opts,
    pa: &Postagent,
    agents: &[String],
    frames: &mut mpsc::UnboundedReceiver<(usize, Instant, String)>,
) -> anyhow::Result<Latency> {
    anyhow::ensure!(!agents.is_empty(), "no WebSocket agents");
    let token = unique_token()?;
    let subject_of = |text: &str| -> Option<String> {
        let v: Value = serde_json::from_str(text).ok()?;
        v["data"]["subject"].as_str().map(str::to_owned)
    };
    // Subject → (agent, final dot).
    let mut due: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut pending = vec![false; agents.len()];
    let mut millis = Vec::new();
    let mut take = |due: &mut HashMap<String, (usize, Instant)>,
                    pending: &mut [bool],
                    (idx, arrived, text): (usize, Instant, String)| {
        if let Some(subject) = subject_of(&text)
            && let Some((agent, at)) = due.remove(&subject)
            && agent == idx
        {
            pending[idx] = false;
            millis.push(arrived.saturating_duration_since(at).as_secs_f64() * 1000.0);
        }
    };
    let mut lmtp = Lmtp::connect(pa.lmtp).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(opts.ws_rate.max(1))));
    // Spread over the agents: a stride coprime with nothing in particular, then the next
    // agent without a push due.
    let mut idx = 0usize;
    for n in 0..opts.ws_messages {
        tick.tick().await;
        idx = (idx + 7919) % agents.len();
        let mut tries = 0;
        while pending[idx] && tries < agents.len() {
            idx = (idx + 1) % agents.len();
            tries += 1;
        }
        let subject = format!("ws {n} {token}");
        let at = lmtp.deliver(&agents[idx], &subject).await?;
        pending[idx] = true;
        due.insert(subject, (idx, at));
        while let Ok(frame) = frames.try_recv() {
            take(&mut due, &mut pending, frame);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !due.is_empty() && Instant::now() < deadline {
        if let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(1), frames.recv()).await {
            take(&mut due, &mut pending, frame);
        }
    }
    anyhow::ensure!(due.is_empty(), "{} WebSocket pushes never arrived", due.len());
    Ok(Latency::from_samples(millis))
}

/// Whether a log line is a WARN or ERROR the benchmark did not cause on purpose: messages sent
/// straight to LMTP carry no milter signature and are logged `signed=no` at WARN, by design.
impl Report {
    pub fn per_connection_kib(&self) -> f64 {
        (self.rss_after_kib.saturating_sub(self.rss_before_kib)) as f64 / self.connected.max(1) as f64
    }

    pub fn markdown(&self, command: &str) -> String {
        let o = self.opts.clone().unwrap_or(Opts {
            postagent: PathBuf::new(),
            messages: 0,
            subscriptions: 0,
            runs: 0,
            concurrency: 0,
            probes: 0,
            paced_rate: 0,
            paced_seconds: 0,
            connections: 0,
            postgres: false,
            ws_messages: 0,
            ws_rate: 0,
        });
        let ok = |met: bool| if met { "met" } else { "**not met**" };
        let lat =
            |l: &Latency| format!("p50 **{:.1} ms**, p99 **{:.1} ms** (max {:.1})", l.p50, l.p99, l.max);
        let small = |l: &Latency| format!("p50 {:.1}, p99 {:.1}", l.p50, l.p99);
        let (live, backlog) = (&self.live, &self.backlog);
        let mut out = format!(
            "# bench/fanout report\n\n\
             Reproduce with `{command}` (as root, Debian's postfix installed). What each figure means \
             and how it is taken: bench/fanout/README.md.\n\n{} Machine: {}; {:.2} CPU cores were busy \
             with other work in the 2 s before the run. postagent logs at `info` (one line per webhook \
             POST) to a file, as in production.\n\n",
            self.environment,
            machine(),
            self.background,
        );
        out.push_str(&format!(
            "| figure | measured | target |\n|---|---|---|\n\
             | (a) webhook deliveries/s, {subs} subscriptions per event, {m} messages into `postagent serve` over LMTP ({SESSIONS} sessions) while it delivers; median of {runs} runs | **{:.0}/s** first to last POST (runs: {}; the median run: {} deliveries in {:.2} s from the first message sent, stored at {:.0} msg/s, so at most {:.0} deliveries/s could be due) | ≥ 2,000/s: {} |\n\
             {pg_row}| (a) the same {m} messages stored first, then drained by `postagent worker` alone; median of {runs} runs | **{:.0}/s** first to last POST (runs: {}; the median run: {} deliveries in {:.2} s from the worker's start) | — |\n\
             | (b) end of DATA at Postfix → webhook received, idle ({} probes, one per {} ms) | {} | p50 ≤ 20, p99 ≤ 100: {} |\n\
             | (b) the same under {:.0} msg/s through the same Postfix ({} probes) | {} | — |\n\
             | (c) server RSS per WebSocket, {} open | **{:.1} KiB** ({} → {} KiB) | ≤ 64 KiB: {} |\n\
             | (c) end of LMTP DATA → frame on the agent's socket, {} open, {} messages at {} msg/s | {} | p99 ≤ 250: {} |\n",
            live.deliveries_per_sec,
            rates(&self.live_runs),
            live.deliveries,
            live.total_secs,
            live.ingest_per_sec,
            live.ingest_per_sec * f64::from(o.subscriptions),
            ok(live.deliveries_per_sec >= 2000.0),
            backlog.deliveries_per_sec,
            rates(&self.backlog_runs),
            backlog.deliveries,
            backlog.total_secs,
            self.idle.to_webhook.samples,
            PROBE_GAP.as_millis(),
            lat(&self.idle.to_webhook),
            ok(self.idle.to_webhook.p50 <= 20.0 && self.idle.to_webhook.p99 <= 100.0),
            self.load.achieved_rate(),
            self.paced.to_webhook.samples,
            lat(&self.paced.to_webhook),
            self.connected,
            self.per_connection_kib(),
            self.rss_before_kib,
            self.rss_after_kib,
            ok(self.per_connection_kib() <= 64.0),
            self.connected,
            self.ws.samples,
            o.ws_rate,
            lat(&self.ws),
            ok(self.ws.p99 <= 250.0),
            subs = o.subscriptions,
            m = o.messages,
            runs = self.live_runs.len(),
            pg_row = if self.live_pg_runs.is_empty() {
                String::new()
            } else {
                format!(
                    "| (a) the same live, on PostgreSQL (durable settings: `fsync`, `synchronous_commit` on) | **{:.0}/s** \
                     first to last POST (runs: {}; stored at {:.0} msg/s) | ≥ 2,000/s on one backend: {} |\n",
                    self.live_pg.deliveries_per_sec,
                    rates(&self.live_pg_runs),
                    self.live_pg.ingest_per_sec,
                    ok(self.live_pg.deliveries_per_sec.max(live.deliveries_per_sec) >= 2000.0)
                )
            },
        ));
        out.push_str(&format!(
            "\n### Details\n\n\
             - (a) live, the median run: the last POST came {:.2} s after the last message was stored; {} duplicate POSTs; \
             {} unexpected WARN/ERROR log lines. {}.\n\
             - (a) backlog, the median run: stored by `postagent api` + `postagent lmtp` with no worker at {:.0} msg/s; \
             {} duplicate POSTs; {} unexpected WARN/ERROR lines. While `postagent worker` drained it: {}.\n\
             - (a) both: `webhook_concurrency` {}; the receiver (axum, in the bench process) answers 204 at \
             once; the `signed=no` WARN of each message sent straight to LMTP (no milter) is expected \
             and not counted.\n\
             - (b) split at the row's `created_at` (ms): idle, DATA → stored {}, stored → POST {}; \
             loaded, DATA → stored {}, stored → POST {}.\n\
             - (b) load: {} msg/s asked for {} s, {:.0} msg/s achieved ({} sent, {} failed), each \
             message its own SMTP connection, evenly spaced; every one is a webhook POST too. Postfix's \
             queue was empty {:.1} s after the load ended. {}.\n\
             - (c) {} sockets opened in {:.1} s ({:.0}/s, 250 handshakes in flight; {}). Handshake (TCP \
             connect to 101) p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; the kernel counted {} listen-queue \
             overflows (`TcpExt ListenOverflows`) meanwhile. RSS {} KiB after the messages; {} unexpected \
             WARN/ERROR lines meanwhile.\n",
            live.tail_secs,
            live.duplicates,
            live.warnings,
            live.cpu,
            backlog.ingest_per_sec,
            backlog.duplicates,
            backlog.warnings,
            backlog.cpu,
            o.concurrency,
            small(&self.idle.to_stored),
            small(&self.idle.stored_to_webhook),
            small(&self.paced.to_stored),
            small(&self.paced.stored_to_webhook),
            self.load.asked_rate,
            o.paced_seconds,
            self.load.achieved_rate(),
            self.load.sent,
            self.load.failed,
            self.drain_secs,
            self.load_cpu,
            self.connected,
            self.open_secs,
            self.connected as f64 / self.open_secs.max(f64::EPSILON),
            self.open_cpu,
            self.handshake.p50,
            self.handshake.p99,
            self.handshake.max,
            self.listen_overflows,
            self.rss_after_messages_kib,
            self.ws_warnings,
        ));
        out
    }
}
