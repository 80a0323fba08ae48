//! `bench/fanout`: how fast stored mail reaches agents.
//!
//! One `postagent serve` (release build, SQLite, `webhook_mode = development` so the receiver
//! may be on loopback), a private Postfix wired to it as in production, and in this process
//! a real HTTP receiver and real WebSocket clients:
//!
//! - **(a) deliveries/s**: five webhook subscriptions for `email.received`; messages go
//!   straight to postagent's LMTP server from 8 sessions; the figure is deliveries received
//!   per second from the first message sent to the last POST received.
//! - **(b) Postfix → webhook**: one subscription; probes sent through Postfix over SMTP,
//!   timed from the final `.` of DATA to the POST's arrival at the receiver: one at a time
//!   (idle), and while `smtp-source` sends about `paced_rate` msg/s through Postfix.
//! - **(c) WebSockets**: `connections` agents, one socket each; the server's RSS before and
//!   after they are all open gives the memory per connection; then messages to random
//!   connected agents over LMTP, timed from the final `.` to the frame on that agent's socket.

use crate::probe::send_probe_at;
use crate::report::{Latency, environment};
use crate::{AGENT, AGENT_DOMAIN, Postagent, SMTP_SOURCE, start_postfix};
use anyhow::Context as _;
use futures_util::StreamExt;
use postagent_core::service;
use postagent_core::store::SqlStore;
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone, sample_message, unique_token};
use postagent_lab::receiver::Receiver;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    pub messages: u32,
    pub subscriptions: u32,
    pub probes: u32,
    pub paced_rate: u32,
    pub paced_seconds: u32,
    pub connections: u32,
    pub ws_messages: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub opts: Option<Opts>,
    pub ingest_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub deliveries: usize,
    pub idle: Latency,
    pub paced: Latency,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub connected: usize,
    pub ws: Latency,
    pub environment: String,
}

const LIMIT: Duration = Duration::from_secs(600);

pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    postagent_lab::mail_lab::check_can_run_postfix()?;
    let zone = SampleZone::start().await?;
    zone.dns().set_ttl(crate::DNS_TTL);
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
    eprintln!("seeding {} agents", opts.connections + 1);
    let (key, agents) = seed(&db_url, opts.connections).await?;
    let extra = ["--webhook-mode", "development"];
    let env = [("POSTAGENT_WEBHOOK_CONCURRENCY", "64")];
    let pa = Postagent::start_in(&opts.postagent, &zone, dir, db_url, &extra, &env).await?;
    let postfix = start_postfix(Some(pa.milter), pa.lmtp).await?;
    let http = reqwest::Client::new();
    let mut report = Report { opts: Some(opts.clone()), environment: environment(), ..Report::default() };

    // (a)
    let a = deliveries_per_sec(opts, &zone).await?;
    (report.deliveries, report.ingest_per_sec, report.deliveries_per_sec) = a;
    eprintln!("(a) {:.0} deliveries/s ({} deliveries; the backlog was stored at {:.0} msg/s)", a.2, a.0, a.1);

    // (b)
    let rx = Receiver::start().await?;
    subscribe(&http, &pa.api, &key, &rx.url("/latency")).await?;
    postfix.wait_queue_empty(LIMIT).await?;
    report.idle = probe_latency(&postfix, &rx, opts.probes, None).await?;
    eprintln!("(b) idle: {}", report.idle);
    let load = paced(&postfix, opts)?;
    report.paced = probe_latency(&postfix, &rx, u32::MAX, Some(load)).await?;
    eprintln!("(b) at about {} msg/s: {}", opts.paced_rate, report.paced);
    postfix.wait_queue_empty(LIMIT).await?;

    // (c)
    let pid = pa.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.rss_before_kib = rss_kib(pid)?;
    let (frames_tx, mut frames) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut sockets = Vec::new();
    let base = pa.api.replace("http://", "ws://");
    for (c, chunk) in agents.chunks(250).enumerate() {
        let mut batch = Vec::new();
        for (i, agent) in chunk.iter().enumerate() {
            let idx = c * 250 + i;
            let url = format!("{base}/v1/agents/{}/ws", agent.replace('@', "%40"));
            let (key, tx) = (key.clone(), frames_tx.clone());
            batch.push(tokio::spawn(async move { open_socket(url, key, idx, tx).await }));
        }
        for b in batch {
            sockets.push(b.await??);
        }
    }
    report.connected = sockets.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    report.rss_after_kib = rss_kib(pid)?;
    eprintln!(
        "(c) {} sockets: RSS {} → {} KiB, {:.1} KiB per connection",
        report.connected,
        report.rss_before_kib,
        report.rss_after_kib,
        report.per_connection_kib()
    );
    let mut sent: HashMap<usize, Instant> = HashMap::new();
    let mut lmtp = Lmtp::connect(pa.lmtp).await?;
    let mut millis = Vec::new();
    let step = (agents.len() / opts.ws_messages.max(1) as usize).max(1);
    for n in 0..opts.ws_messages as usize {
        let idx = (n * step + n * 7919) % agents.len();
        let at = lmtp.deliver(&agents[idx], &format!("ws {n}")).await?;
        sent.insert(idx, at);
        // Paced at about 100 msg/s, and collect what has arrived.
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Ok((i, arrived)) = frames.try_recv() {
            if let Some(t) = sent.remove(&i) {
                millis.push(arrived.saturating_duration_since(t).as_secs_f64() * 1000.0);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sent.is_empty() && Instant::now() < deadline {
        if let Ok(Some((i, arrived))) = tokio::time::timeout(Duration::from_secs(1), frames.recv()).await
            && let Some(t) = sent.remove(&i)
        {
            millis.push(arrived.saturating_duration_since(t).as_secs_f64() * 1000.0);
        }
    }
    anyhow::ensure!(sent.is_empty(), "{} WebSocket pushes never arrived", sent.len());
    report.ws = Latency::from_samples(millis);
    eprintln!("(c) delivery: {}", report.ws);
    drop(sockets);
    drop(postfix);
    pa.stop()?;
    Ok(report)
}

impl Report {
    pub fn per_connection_kib(&self) -> f64 {
        (self.rss_after_kib.saturating_sub(self.rss_before_kib)) as f64 / self.connected.max(1) as f64
    }

    pub fn markdown(&self, command: &str) -> String {
        let o = self.opts.clone();
        let (messages, subs, rate, conns) =
            o.as_ref().map_or((0, 0, 0, 0), |o| (o.messages, o.subscriptions, o.paced_rate, o.connections));
        let ok = |met: bool| if met { "met" } else { "**not met**" };
        format!(
            "# bench/fanout report\n\n\
             Reproduce with `{command}` (as root, Debian's postfix installed). What each figure means: \
             bench/fanout/README.md.\n\n{}\n\n\
             | figure | measured | target |\n|---|---|---|\n\
             | (a) webhook deliveries/s by `postagent worker`, {subs} subscriptions per event, a backlog of {messages} messages | **{:.0}/s** ({} deliveries; the backlog was stored over LMTP at {:.0} msg/s) | ≥ 2,000/s: {} |\n\
             | (b) end of DATA at Postfix → webhook received, idle | p50 **{:.1} ms**, p99 **{:.1} ms** (max {:.1}, {} probes) | p50 ≤ 20, p99 ≤ 100: {} |\n\
             | (b) the same at about {rate} msg/s through Postfix | p50 **{:.1} ms**, p99 **{:.1} ms** (max {:.1}, {} probes) | — |\n\
             | (c) server RSS per WebSocket, {conns} open | **{:.1} KiB** ({} → {} KiB for {} sockets) | ≤ 64 KiB: {} |\n\
             | (c) end of LMTP DATA → frame on the agent's socket, {conns} open | p50 **{:.1} ms**, p99 **{:.1} ms** (max {:.1}, {} messages) | p99 ≤ 250: {} |\n",
            self.environment,
            self.deliveries_per_sec,
            self.deliveries,
            self.ingest_per_sec,
            ok(self.deliveries_per_sec >= 2000.0),
            self.idle.p50,
            self.idle.p99,
            self.idle.max,
            self.idle.samples,
            ok(self.idle.p50 <= 20.0 && self.idle.p99 <= 100.0),
            self.paced.p50,
            self.paced.p99,
            self.paced.max,
            self.paced.samples,
            self.per_connection_kib(),
            self.rss_before_kib,
            self.rss_after_kib,
            self.connected,
            ok(self.per_connection_kib() <= 64.0),
            self.ws.p50,
            self.ws.p99,
            self.ws.max,
            self.ws.samples,
            ok(self.ws.p99 <= 250.0),
        )
    }
}

/// One role of the binary, on `db_url`, until dropped; waits for `ready` in its log.
struct Role(std::process::Child);

impl Role {
    fn start(
        bin: &std::path::Path,
        args: &[&str],
        dir: &std::path::Path,
        ready: &str,
    ) -> anyhow::Result<(Role, String)> {
        use std::io::BufRead as _;
        let mut child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(ready.as_str()).nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let shown = rx.recv_timeout(Duration::from_secs(30)).context("the role did not start")?;
        Ok((Role(child), shown))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (a): the API and LMTP roles store a backlog of `messages` messages with `subscriptions`
/// pending deliveries each (no worker runs yet); then `postagent worker` starts alone and
/// drains it. Deliveries/s is from the worker's start to the last POST received, so the
/// figure is the worker's, not the ingest's. Returns (deliveries, ingest msg/s, deliveries/s).
async fn deliveries_per_sec(opts: &Opts, zone: &SampleZone) -> anyhow::Result<(usize, f64, f64)> {
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
    let (key, _) = seed(&db_url, 0).await?;
    let bin_path = std::fs::canonicalize(&opts.postagent)?;
    let bin = bin_path.as_path();
    let dns = zone.dns().addr().to_string();
    let common =
        ["--database-url", db_url.as_str(), "--webhook-mode", "development", "--dns-server", dns.as_str()];
    let lmtp_port = postagent_lab::free_port()?.to_string();
    let lmtp_listen = format!("127.0.0.1:{lmtp_port}");
    let (api_role, api) = Role::start(
        bin,
        &[&["api", "--api-listen", "127.0.0.1:0"][..], &common].concat(),
        dir.path(),
        "API listening on",
    )?;
    let (lmtp_role, _) = Role::start(
        bin,
        &[&["lmtp", "--lmtp-listen", lmtp_listen.as_str(), "--shared-domain", AGENT_DOMAIN][..], &common]
            .concat(),
        dir.path(),
        "LMTP listening on",
    )?;
    let api = format!("http://{api}");
    let http = reqwest::Client::new();
    let rx = Receiver::start().await?;
    for n in 0..opts.subscriptions {
        subscribe(&http, &api, &key, &rx.url(&format!("/hook/{n}"))).await?;
    }
    let t0 = Instant::now();
    inject(lmtp_listen.parse()?, 8, opts.messages, "load").await?;
    let ingest = f64::from(opts.messages) / t0.elapsed().as_secs_f64();
    drop(lmtp_role);
    drop(api_role);
    let want = opts.messages as usize * opts.subscriptions as usize;
    let started = Instant::now();
    let (_worker, _) =
        Role::start(bin, &[&["worker"][..], &common].concat(), dir.path(), "webhook worker started")?;
    let hits = rx.wait_hits(want, LIMIT).await;
    let last = hits.iter().map(|h| h.at).max().context("no hits")?;
    Ok((hits.len(), ingest, hits.len() as f64 / last.duration_since(started).as_secs_f64()))
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

async fn subscribe(http: &reqwest::Client, api: &str, key: &str, url: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{api}/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": url, "events": ["email.received"]}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "create webhook: {}", r.status());
    let v: Value = r.json().await?;
    v["id"].as_str().map(str::to_owned).context("webhook id")
}

/// A minimal LMTP client: LHLO once, then transactions.
struct Lmtp {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Lmtp {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Lmtp> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Lmtp { r: BufReader::new(r), w };
        c.expect("220").await?;
        c.w.write_all(b"LHLO bench.test\r\n").await?;
        c.expect("250").await?;
        Ok(c)
    }

    async fn expect(&mut self, code: &str) -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            anyhow::ensure!(self.r.read_line(&mut line).await? > 0, "LMTP closed, wanted {code}");
            anyhow::ensure!(line.starts_with(code), "wanted {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    /// One 1 KB message to `rcpt`; returns when the final `.` was written.
    async fn deliver(&mut self, rcpt: &str, subject: &str) -> anyhow::Result<Instant> {
        let id = unique_token()?;
        let body = ("x".repeat(76) + "\r\n").repeat(10);
        let msg = sample_message(rcpt, subject, &id, &body);
        let head = format!("MAIL FROM:<alice@{SENDER_DOMAIN}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
        self.w.write_all(head.as_bytes()).await?;
        self.expect("250").await?;
        self.expect("250").await?;
        self.expect("354").await?;
        self.w.write_all(msg.as_bytes()).await?;
        self.w.write_all(b".\r\n").await?;
        let at = Instant::now();
        self.expect("250").await?;
        Ok(at)
    }
}

/// `total` messages to the bench agent over `sessions` LMTP connections at once.
async fn inject(lmtp: SocketAddr, sessions: u32, total: u32, tag: &str) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let count = total / sessions + u32::from(s < total % sessions);
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut c = Lmtp::connect(lmtp).await?;
            for n in 0..count {
                c.deliver(AGENT, &format!("{tag} {s}.{n}")).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// `smtp-source` at about `paced_rate` msg/s for `paced_seconds` through Postfix.
fn paced(postfix: &postagent_lab::PostfixInstance, opts: &Opts) -> anyhow::Result<std::process::Child> {
    let (rate, total) = (opts.paced_rate.max(1), opts.paced_rate.max(1) * opts.paced_seconds.max(1));
    Command::new(SMTP_SOURCE)
        .args(["-s", &rate.to_string(), "-m", &total.to_string(), "-w", "1", "-l", "1024"])
        .args(["-f", &format!("alice@{SENDER_DOMAIN}"), "-t", AGENT, "-M", &format!("mail.{SENDER_DOMAIN}")])
        .arg(postfix.smtp_addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run smtp-source")
}

/// Probes through Postfix, `count` of them (or for as long as `load` runs), each matched to
/// its POST by the token in its subject.
async fn probe_latency(
    postfix: &postagent_lab::PostfixInstance,
    rx: &Receiver,
    count: u32,
    mut load: Option<std::process::Child>,
) -> anyhow::Result<Latency> {
    let token = unique_token()?;
    let mut sent = Vec::new();
    for n in 0..count {
        let (_, _, at) = send_probe_at(postfix, n, &token).await?;
        sent.push((format!("probe {n} {token}"), at));
        if let Some(l) = &mut load
            && l.try_wait()?.is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + LIMIT;
    let mut millis = Vec::new();
    for (subject, at) in &sent {
        loop {
            let hit = rx.hits().into_iter().find(|h| h.json()["data"]["subject"] == subject.as_str());
            if let Some(h) = hit {
                millis.push(h.at.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no webhook for {subject}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(Latency::from_samples(millis))
}

/// Opens one socket and reports each text frame's arrival (index, time) until it closes.
async fn open_socket(
    url: String,
    key: String,
    idx: usize,
    frames: mpsc::UnboundedSender<(usize, Instant)>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(req).await.context("WebSocket handshake")?;
    let frames = Arc::new(frames);
    Ok(tokio::spawn(async move {
        let mut ws = ws;
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(_) = frame {
                let _ = frames.send((idx, Instant::now()));
            }
        }
    }))
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}
