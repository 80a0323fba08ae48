//! (a): webhook deliveries/s, live (`postagent serve` storing and delivering at once) and
//! from a stored backlog (`postagent worker` alone).

#![allow(unused_imports)]
use super::*;

/// One (a) run.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub messages: u32,
    /// Distinct deliveries received (path and `webhook-id`).
    pub deliveries: usize,
    /// POSTs of a delivery already received.
    pub duplicates: usize,
    /// Messages stored per second over LMTP (from the first message sent to the last 250).
    pub ingest_per_sec: f64,
    /// Deliveries per second from the first POST received to the last.
    pub deliveries_per_sec: f64,
    /// Seconds from the first message sent (live) or the worker's start (backlog) to the last
    /// POST received.
    pub total_secs: f64,
    /// Seconds from the last message stored to the last POST received (live only).
    pub tail_secs: f64,
    /// Unexpected WARN or ERROR lines in the server's log during the run.
    pub warnings: usize,
    /// From the first message sent (live) or the worker's start (backlog) to the last POST.
    pub cpu: Cpu,
}

/// (a) live: one `postagent serve` stores and delivers at once, on SQLite or on a fresh
/// database of `pg`.
pub(super) async fn live(
    opts: &Opts,
    zone: &SampleZone,
    pg: Option<&postagent_lab::pg::PgCluster>,
) -> anyhow::Result<Throughput> {
    let dir = tempfile::tempdir()?;
    let db_url = match pg {
        Some(cluster) => cluster.create_database()?,
        None => format!("sqlite://{}", dir.path().join("postagent.db").display()),
    };
    let (key, _) = seed(&db_url, 0).await?;
    let pa = serve(opts, zone, dir, db_url).await?;
    let rx = Receiver::start().await?;
    let http = reqwest::Client::new();
    for n in 0..opts.subscriptions {
        subscribe(&http, &pa.api, &key, &rx.url(&format!("/hook/{n}"))).await?;
    }
    // Warm-up, uncounted: one message, all its deliveries.
    inject(pa.lmtp, 1, 1, "warm-up").await?;
    let want = opts.subscriptions as usize;
    anyhow::ensure!(rx.wait_count(want, LIMIT).await >= want, "the warm-up message was not delivered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    rx.take();
    let before = warnings(&pa).len();
    let meter = CpuMeter::start(pa.pid());
    let t0 = Instant::now();
    inject(pa.lmtp, SESSIONS, opts.messages, "load").await?;
    let stored = Instant::now();
    let want = opts.messages as usize * opts.subscriptions as usize;
    rx.wait_count(want, LIMIT).await;
    let cpu = meter.stop();
    // Anything late or duplicated shows up within this second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hits = rx.take();
    let mut t = throughput(opts, &hits, want)?;
    t.ingest_per_sec = f64::from(opts.messages) / stored.duration_since(t0).as_secs_f64();
    let last = hits.iter().map(|h| h.at).max().context("no POST")?;
    t.total_secs = last.duration_since(t0).as_secs_f64();
    t.tail_secs = last.saturating_duration_since(stored).as_secs_f64();
    t.warnings = show("(a) live", &warnings(&pa), before);
    t.cpu = cpu;
    pa.stop()?;
    Ok(t)
}

/// Counts and rates of one (a) run's POSTs; fails unless every delivery arrived.
fn throughput(opts: &Opts, hits: &[receiver::Hit], want: usize) -> anyhow::Result<Throughput> {
    let duplicates = receiver::duplicates(hits);
    let deliveries = hits.len() - duplicates;
    anyhow::ensure!(deliveries == want, "{deliveries} deliveries received, expected {want}");
    let first = hits.iter().map(|h| h.at).min().context("no POST")?;
    let last = hits.iter().map(|h| h.at).max().context("no POST")?;
    Ok(Throughput {
        messages: opts.messages,
        deliveries,
        duplicates,
        deliveries_per_sec: deliveries as f64 / last.duration_since(first).as_secs_f64(),
        ..Throughput::default()
    })
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} deliveries/s first to last POST ({} deliveries, {} duplicates, {:.2} s in all); stored at {:.0} msg/s; {} warnings",
            self.deliveries_per_sec,
            self.deliveries,
            self.duplicates,
            self.total_secs,
            self.ingest_per_sec,
            self.warnings
        )
    }
}

/// One role of the binary, on `db_url`, until dropped; waits for `ready` in its log, and
/// keeps its unexpected WARN and ERROR lines.
pub(crate) struct Role {
    child: std::process::Child,
    warnings: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Role {
    pub(crate) fn start(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
        ready: &str,
    ) -> anyhow::Result<(Role, String)> {
        use std::io::BufRead as _;
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = warnings.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if unexpected(&line) {
                    kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line.clone());
                }
                if let Some(rest) = line.split(ready.as_str()).nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let shown = rx.recv_timeout(Duration::from_secs(30)).context("the role did not start")?;
        Ok((Role { child, warnings }, shown))
    }

    /// `postagent api` on `db_url` with the lab's shared domain and mail hostname, plus
    /// `extra` flags; the role and its address.
    pub(crate) fn api(
        bin: &Path,
        db_url: &str,
        dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<(Role, String)> {
        let mut args = vec![
            "api",
            "--api-listen",
            "127.0.0.1:0",
            "--database-url",
            db_url,
            "--shared-domain",
            crate::AGENT_DOMAIN,
            "--mail-hostname",
            crate::HOSTNAME,
        ];
        args.extend_from_slice(extra);
        Role::start(bin, &args, &[], dir, "API listening on")
    }

    /// The process id (to read its memory from /proc).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (a) backlog: `postagent api` and `postagent lmtp` store the messages with their pending
/// deliveries (no worker runs yet); then `postagent worker` starts alone and drains them.
pub(super) async fn backlog(opts: &Opts, zone: &SampleZone) -> anyhow::Result<Throughput> {
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
    let (key, _) = seed(&db_url, 0).await?;
    let bin_path = std::fs::canonicalize(&opts.postagent)?;
    let bin = bin_path.as_path();
    let dns = zone.dns().addr().to_string();
    let concurrency = opts.concurrency.to_string();
    let common = [
        "--database-url",
        db_url.as_str(),
        "--webhook-mode",
        "development",
        "--dns-server",
        dns.as_str(),
        "--mail-hostname",
        crate::HOSTNAME,
    ];
    let env = [("POSTAGENT_WEBHOOK_CONCURRENCY", concurrency.as_str())];
    let lmtp_listen = format!("127.0.0.1:{}", postagent_lab::free_port()?);
    let (api_role, api) = Role::start(
        bin,
        &[&["api", "--api-listen", "127.0.0.1:0"][..], &common].concat(),
        &env,
        dir.path(),
        "API listening on",
    )?;
    let (lmtp_role, _) = Role::start(
        bin,
        &[&["lmtp", "--lmtp-listen", lmtp_listen.as_str(), "--shared-domain", AGENT_DOMAIN][..], &common]
            .concat(),
        &env,
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
    inject(lmtp_listen.parse()?, SESSIONS, opts.messages, "load").await?;
    let ingest = f64::from(opts.messages) / t0.elapsed().as_secs_f64();
    let mut warnings = [lmtp_role.warnings(), api_role.warnings()].concat();
    drop(lmtp_role);
    drop(api_role);
    let want = opts.messages as usize * opts.subscriptions as usize;
    let started = Instant::now();
    let (worker, _) =
        Role::start(bin, &[&["worker"][..], &common].concat(), &env, dir.path(), "webhook worker started")?;
    let meter = CpuMeter::start(worker.child.id());
    rx.wait_count(want, LIMIT).await;
    let cpu = meter.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hits = rx.take();
    warnings.extend(worker.warnings());
    let mut t = throughput(opts, &hits, want)?;
    t.ingest_per_sec = ingest;
    let last = hits.iter().map(|h| h.at).max().context("no POST")?;
    t.total_secs = last.duration_since(started).as_secs_f64();
    t.warnings = show("(a) backlog", &warnings, 0);
    t.cpu = cpu;
    Ok(t)
}

/// The run with the median deliveries/s (the lower middle one of an even count).
pub(super) fn median_run(runs: &[Throughput]) -> Throughput {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec));
    sorted.get(sorted.len().saturating_sub(1) / 2).cloned().unwrap_or_default()
}

/// The deliveries/s of every run, in order, for the report.
pub(super) fn rates(runs: &[Throughput]) -> String {
    runs.iter().map(|t| format!("{:.0}", t.deliveries_per_sec)).collect::<Vec<_>>().join(", ")
}
