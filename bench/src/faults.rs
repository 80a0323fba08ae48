//! `bench/faults`: postagent under load while things break, then a count of what survived.
//!
//! Two `postagent serve` replicas on one PostgreSQL (durable settings) behind one Postfix: the
//! first's milter on a unix socket, the LMTP hop chosen at random per message between both
//! (`randmap`), five webhook subscriptions to one receiver. While `smtp-source` sends for
//! `duration`:
//!
//! - one replica, in turn, is killed with SIGKILL every `kill_every` and started again at once
//!   (as systemd's `Restart=always` would), with its milter socket and LMTP port unchanged;
//! - PostgreSQL is restarted once (`pg_ctl stop -m fast`, then start), at 60 % of the time;
//! - the webhook receiver answers 500 for the second tenth of the time, 429 for the fourth and
//!   takes longer than postagent's webhook timeout for the sixth.
//!
//! Then everything is healthy again and the script waits for Postfix's queue to empty and every
//! delivery to arrive, and counts: every message Postfix accepted stored exactly once, every
//! event delivered at least once to every subscription, no duplicate rows, nothing left in
//! Postfix's queue. It reports counts, not speed.

use crate::{AGENT, AGENT_DOMAIN, HOSTNAME, probe};
use anyhow::Context as _;
use axum::http::StatusCode;
use postagent_lab::mail_lab::{SampleZone, Wiring};
use postagent_lab::pg::PgCluster;
use postagent_lab::{PostfixInstance, free_port};
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUBSCRIPTIONS: usize = 5;
/// postagent's webhook timeout here; the receiver's "timeout" spell sleeps longer.
const WEBHOOK_TIMEOUT_SECS: u64 = 2;

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    /// How long the load and the faults last.
    pub duration: Duration,
    pub kill_every: Duration,
    /// Parallel `smtp-source` sessions.
    pub sessions: u32,
    /// How long to wait, once healthy, for the queue and the deliveries to drain.
    pub limit: Duration,
}

/// What the script counted.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub opts_summary: String,
    pub kills: u32,
    pub pg_restarts: u32,
    /// Requests the receiver refused (500, 429) or let time out.
    pub refused_posts: usize,
    /// Messages Postfix accepted (each queue id once: `status=sent`).
    pub accepted: usize,
    /// Deliveries Postfix tried again after a failure (`status=deferred` lines).
    pub deferred: usize,
    pub left_in_queue: usize,
    pub stored: i64,
    pub duplicate_rows: i64,
    pub events: i64,
    /// Distinct (subscription, event) pairs answered 2xx.
    pub delivered_pairs: usize,
    pub expected_pairs: usize,
    /// POSTs answered 2xx beyond the first of their pair (at-least-once at work).
    pub repeated_posts: usize,
    pub drained_in: Duration,
    pub environment: String,
}

impl Report {
    /// Everything the script promises held.
    pub fn holds(&self) -> bool {
        self.left_in_queue == 0
            && self.accepted > 0
            && self.stored == self.accepted as i64
            && self.duplicate_rows == 0
            && self.events == self.stored
            && self.delivered_pairs == self.expected_pairs
    }

    pub fn markdown(&self, command: &str) -> String {
        let verdict = if self.holds() { "**every count holds**" } else { "**A COUNT DOES NOT HOLD**" };
        format!(
            "# bench/faults\n\n`{command}`\n\n{env}\n\n{summary}\n\n{verdict}.\n\n\
             | what | count |\n|---|---|\n\
             | replicas killed with SIGKILL (and restarted) | {kills} |\n\
             | PostgreSQL restarts | {pg} |\n\
             | webhook POSTs refused (500, 429) or timed out | {refused} |\n\
             | messages Postfix accepted (`status=sent`) | {accepted} |\n\
             | LMTP deliveries Postfix deferred and retried | {deferred} |\n\
             | left in Postfix's queue | {left} |\n\
             | messages stored | {stored} |\n\
             | duplicate rows (same agent and milter message id) | {dups} |\n\
             | `email.received` events | {events} |\n\
             | (subscription, event) pairs delivered with 2xx | {pairs} of {expected} |\n\
             | repeated 2xx POSTs (at-least-once) | {repeated} |\n\
             | time to drain after the faults stopped | {drain:.1} s |\n",
            env = self.environment,
            summary = self.opts_summary,
            kills = self.kills,
            pg = self.pg_restarts,
            refused = self.refused_posts,
            accepted = self.accepted,
            deferred = self.deferred,
            left = self.left_in_queue,
            stored = self.stored,
            dups = self.duplicate_rows,
            events = self.events,
            pairs = self.delivered_pairs,
            expected = self.expected_pairs,
            repeated = self.repeated_posts,
            drain = self.drained_in.as_secs_f64(),
        )
    }
}

/// One replica: `serve` with fixed sockets, so it can be killed and started again in place.
struct Replica {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The receiver's behaviour, switched while it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Ok = 0,
    Error = 1,
    Throttle = 2,
    Slow = 3,
}

#[derive(Default)]
struct Received {
    /// (path, webhook-id) of every 2xx answer.
    ok: Vec<(String, String)>,
    refused: usize,
}

struct FaultyReceiver {
    base: String,
    mode: Arc<AtomicU8>,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultyReceiver {
    async fn start() -> anyhow::Result<FaultyReceiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mode = Arc::new(AtomicU8::new(Mode::Ok as u8));
        let received = Arc::new(Mutex::new(Received::default()));
        let (m, r) = (mode.clone(), received.clone());
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let (m, r) = (m.clone(), r.clone());
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let lock = || r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match m.load(Ordering::SeqCst) {
                        x if x == Mode::Error as u8 => {
                            lock().refused += 1;
                            StatusCode::INTERNAL_SERVER_ERROR
                        }
                        x if x == Mode::Throttle as u8 => {
                            lock().refused += 1;
                            StatusCode::TOO_MANY_REQUESTS
                        }
                        x if x == Mode::Slow as u8 => {
                            lock().refused += 1;
                            tokio::time::sleep(Duration::from_secs(WEBHOOK_TIMEOUT_SECS + 1)).await;
                            StatusCode::NO_CONTENT
                        }
                        _ => {
                            lock().ok.push((uri.path().to_owned(), id));
                            StatusCode::NO_CONTENT
                        }
                    }
                }
            });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("faults receiver stopped: {e}");
            }
        });
        Ok(FaultyReceiver { base, mode, received, server })
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn pairs(&self) -> (usize, usize, usize) {
        let r = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let distinct: HashSet<&(String, String)> = r.ok.iter().collect();
        (distinct.len(), r.ok.len() - distinct.len(), r.refused)
    }
}

impl Drop for FaultyReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    postagent_lab::mail_lab::check_can_run_postfix()?;
    let zone = SampleZone::start().await?;
    zone.dns().set_ttl(crate::DNS_TTL);
    let pg = PgCluster::start_durable()?;
    let url = pg.create_database()?;
    let key = probe::seed(&url, AGENT_DOMAIN, AGENT).await?;
    let receiver = FaultyReceiver::start().await?;

    let dir = crate::world_traversable_tempdir()?;
    let secret = dir.path().join("hmac.secret");
    std::fs::write(&secret, format!("{}\n", "ab".repeat(32)))?;
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let lmtp: Vec<SocketAddr> = (0..2)
        .map(|_| free_port().map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))))
        .collect::<Result<_, _>>()?;
    let api = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
    let milter = dir.path().join("milter.sock");
    let mut replicas: Vec<Replica> = (0..2)
        .map(|i| {
            replica(opts, &zone, dir.path(), &secret, &url, lmtp[i], (i == 0).then_some((&milter, api)), i)
        })
        .collect::<anyhow::Result<_>>()?;
    for r in &mut replicas {
        r.spawn()?;
    }
    let logs = || {
        replicas
            .iter()
            .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for addr in std::iter::once(api).chain(lmtp.iter().copied()) {
        crate::wait_listening(addr).with_context(|| format!("the replicas did not start:\n{}", logs()))?;
    }
    let http = reqwest::Client::new();
    for n in 0..SUBSCRIPTIONS {
        let url = format!("{}/s{n}", receiver.base);
        crate::fanout::lmtp::subscribe(&http, &format!("http://{api}"), &key, &url).await?;
    }
    let postfix = start_postfix(&milter, &lmtp).await?;

    // The load and the faults.
    let started = Instant::now();
    let at = |fraction: f64| opts.duration.mul_f64(fraction);
    let mut report = Report::default();
    let mut next_kill = opts.kill_every;
    let mut pg_restarted = false;
    let mut victim = 1;
    let mut source: Option<Child> = None;
    while started.elapsed() < opts.duration {
        if source.as_mut().is_none_or(|s| s.try_wait().ok().flatten().is_some()) {
            // Batches of 200 1 KB messages.
            source = Some(crate::smtp_source_n(&postfix, opts.sessions, 200, 1024)?);
        }
        let t = started.elapsed();
        receiver.set(match t {
            t if t >= at(0.1) && t < at(0.2) => Mode::Error,
            t if t >= at(0.3) && t < at(0.4) => Mode::Throttle,
            t if t >= at(0.5) && t < at(0.6) => Mode::Slow,
            _ => Mode::Ok,
        });
        if t >= next_kill {
            let r = &mut replicas[victim];
            r.kill9();
            r.spawn()?;
            report.kills += 1;
            victim = 1 - victim;
            next_kill += opts.kill_every;
        }
        if !pg_restarted && t >= at(0.6) {
            pg.stop_server()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            pg.start_server()?;
            pg_restarted = true;
            report.pg_restarts += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(mut s) = source {
        tokio::task::spawn_blocking(move || s.wait()).await??;
    }
    receiver.set(Mode::Ok);
    eprintln!("  faults over after {:.1} s; draining", started.elapsed().as_secs_f64());

    // Healthy again: wait for the queue, the rows and every delivery.
    let healthy = Instant::now();
    postfix.wait_queue_empty(opts.limit).await.ok();
    let accepted = sent_queue_ids(&postfix.read_log()).len();
    let stored = probe::wait_stored(&url, accepted as i64, opts.limit).await?;
    let expected = usize::try_from(stored).unwrap_or(0) * SUBSCRIPTIONS;
    while receiver.pairs().0 < expected && healthy.elapsed() < opts.limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.drained_in = healthy.elapsed();
    let log = postfix.read_log();
    report.accepted = sent_queue_ids(&log).len();
    report.deferred = log.matches("status=deferred").count();
    report.left_in_queue =
        postfix.queue_listing().lines().filter(|l| l.starts_with(|c: char| c.is_ascii_hexdigit())).count();
    let counts = probe::counts(
        &url,
        &[
            "SELECT COUNT(*) FROM messages",
            "SELECT COUNT(*) - COUNT(DISTINCT agent_email || ' ' || source_id) FROM messages",
            "SELECT COUNT(*) FROM events WHERE type = 'email.received'",
        ],
    )
    .await?;
    (report.stored, report.duplicate_rows, report.events) = (counts[0], counts[1], counts[2]);
    let (pairs, repeated, refused) = receiver.pairs();
    report.expected_pairs = usize::try_from(report.events).unwrap_or(0) * SUBSCRIPTIONS;
    report.delivered_pairs = pairs;
    report.repeated_posts = repeated;
    report.refused_posts = refused;
    report.opts_summary = format!(
        "Two replicas on one PostgreSQL (durable settings), one Postfix (the first replica's milter, a random \
         LMTP hop of the two per message), {SUBSCRIPTIONS} webhook subscriptions. `smtp-source -s {s}` for {d} s \
         of faults: a replica killed with SIGKILL and started again every {k} s, in turn; PostgreSQL restarted \
         once at 60 % of the time; the receiver answering 500, then 429, then too slowly (over the {WEBHOOK_TIMEOUT_SECS} s \
         webhook timeout) for a tenth of the time each. Postfix retries deferred mail every second \
         (`queue_run_delay`, `minimal_backoff_time` 1 s); webhook retries are 1 s apart here.",
        s = opts.sessions,
        d = opts.duration.as_secs(),
        k = opts.kill_every.as_secs(),
    );
    report.environment = crate::report::environment();
    drop(postfix);
    drop(replicas);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn replica(
    opts: &Opts,
    zone: &SampleZone,
    dir: &Path,
    secret: &Path,
    url: &str,
    lmtp: SocketAddr,
    front: Option<(&PathBuf, SocketAddr)>,
    n: usize,
) -> anyhow::Result<Replica> {
    let data = dir.join(format!("replica{n}"));
    std::fs::create_dir_all(&data)?;
    let mut args: Vec<String> = ["serve", "--data-dir"].map(str::to_owned).to_vec();
    args.push(data.display().to_string());
    let mut set = |k: &str, v: String| {
        args.push(k.to_owned());
        args.push(v);
    };
    set("--database-url", url.to_owned());
    set("--hmac-secret-file", secret.display().to_string());
    set("--lmtp-listen", lmtp.to_string());
    set("--shared-domain", AGENT_DOMAIN.into());
    set("--mail-hostname", HOSTNAME.into());
    set("--dns-server", zone.dns().addr().to_string());
    set("--unix-socket-group", "postfix".into());
    set("--socketmap-listen", String::new());
    // The milter and the API on the first replica only; the second only delivers.
    match front {
        Some((milter, api)) => {
            set("--milter-listen", format!("unix:{}", milter.display()));
            set("--api-listen", api.to_string());
        }
        None => {
            set("--milter-listen", String::new());
            set("--api-listen", "127.0.0.1:0".into());
        }
    }
    // Webhook retries a second apart (the production schedule waits minutes), loopback
    // receivers allowed (development mode), a short timeout for the receiver's slow spell.
    let env = [
        ("POSTAGENT_WEBHOOK_MODE", "development".to_owned()),
        ("POSTAGENT_WEBHOOK_RETRY_SCHEDULE", vec!["1s"; 30].join(",")),
        ("POSTAGENT_WEBHOOK_TIMEOUT", format!("{WEBHOOK_TIMEOUT_SECS}s")),
        ("POSTAGENT_WEBHOOK_THROTTLE_DELAY", "1s".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec();
    Ok(Replica {
        bin: opts.postagent.clone(),
        args,
        env,
        log: dir.join(format!("replica{n}.log")),
        child: None,
    })
}

async fn start_postfix(milter: &Path, lmtp: &[SocketAddr]) -> anyhow::Result<PostfixInstance> {
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter: Some(format!("unix:{}", milter.display())),
        lmtp: format!("lmtp:inet:{}", lmtp[0]),
        smtp_port: None,
        originating_port: None,
    };
    let builder = wiring
        .builder()?
        .main_cf("transport_maps", &crate::random_lmtp_hop(lmtp))
        .main_cf("non_smtpd_milters", "")
        .main_cf("queue_run_delay", "1s")
        .main_cf("minimal_backoff_time", "1s")
        .main_cf("maximal_backoff_time", "2s");
    tokio::task::spawn_blocking(move || builder.start()).await?
}

/// Queue ids Postfix delivered (`status=sent`), each once.
fn sent_queue_ids(log: &str) -> HashSet<String> {
    log.lines()
        .filter(|l| l.contains("status=sent"))
        .filter_map(|l| l.split(": ").nth(1).map(str::to_owned))
        .collect()
}
