//! `bench/restart`: what a crash of postagent costs mail already queued in Postfix, with
//! Postfix's default retry settings (`queue_run_delay` and `minimal_backoff_time` 300 s).
//!
//! `messages` 1 KB messages are queued for the agent through `smtp-source`; once a tenth are
//! stored, postagent is killed (`kill -9`) in the middle of delivering the rest, and started
//! again `restart_after` later, as systemd's `RestartSec` would. Measured from the kill: the
//! time until every message is stored, and how many were stored within 30 s.
//!
//! - **before**: Postfix's stock `lmtp` transport, postagent binding its own LMTP socket, as
//!   before `postfix setup` managed the transport: the restart finds the destination marked
//!   dead (a crash fails every session at once) and the queue deferred.
//! - **after**: the `postagent` transport `postfix setup` adds, with
//!   `postagent_destination_concurrency_failed_cohort_limit = 10`, and the LMTP socket held
//!   for postagent as the shipped `postagent-lmtp.socket` unit holds it (socket activation):
//!   Postfix's connections made while postagent is down wait in the backlog.

use crate::probe;
use anyhow::Context as _;
use postagent_lab::mail_lab::{SENDER_DOMAIN, Wiring};
use postagent_lab::{PostfixInstance, free_port};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT_DOMAIN: &str = "agents.bench.test";
const AGENT: &str = "bot@agents.bench.test";
const HOSTNAME: &str = "mx.bench.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Before,
    After,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::Before => "before: stock `lmtp` transport, postagent binds its socket",
            Self::After => {
                "after: `postagent` transport (failed cohort limit 10), socket held (socket activation)"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    pub messages: u32,
    pub restart_after: Duration,
    /// Give up waiting for the last message after this long.
    pub limit: Duration,
    pub variants: Vec<Variant>,
    /// Postfix's retry settings (its defaults, 300 s, unless a smoke test shortens them).
    pub retry: Duration,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub variant: Variant,
    /// Stored when postagent was killed.
    pub at_kill: i64,
    /// From the kill until every message was stored (`None`: not within the limit).
    pub all_stored: Option<Duration>,
    /// Stored within 30 s of the kill.
    pub within_30s: i64,
    /// Postfix's `status=deferred` lines for the agent.
    pub deferred: usize,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub opts: Opts,
    pub outcomes: Vec<Outcome>,
    pub environment: String,
}

/// Runs each variant once, in order.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    postagent_lab::mail_lab::check_can_run_postfix()?;
    let mut outcomes = Vec::new();
    for &variant in &opts.variants {
        let o = one(opts, variant).await?;
        eprintln!(
            "  {variant:?}: {} stored at the kill, {} within 30 s, all in {:?}, {} deferrals",
            o.at_kill, o.within_30s, o.all_stored, o.deferred
        );
        outcomes.push(o);
    }
    Ok(Report { opts: opts.clone(), outcomes, environment: crate::report::environment() })
}

async fn one(opts: &Opts, variant: Variant) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
    probe::seed(&db_url, AGENT_DOMAIN, AGENT).await?;
    let lmtp_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    // After: held here, as systemd holds it, for every postagent started.
    let held = match variant {
        Variant::After => Some(TcpListener::bind(lmtp_addr).context("bind the LMTP socket")?),
        Variant::Before => None,
    };
    let postfix = start_postfix(variant, lmtp_addr, opts.retry).await?;
    let start = |n: u32| spawn(&opts.postagent, dir.path(), &db_url, lmtp_addr, held.as_ref(), n);
    let mut pa = start(1)?;
    wait_listening(lmtp_addr)?;
    let mut source = Command::new("/usr/sbin/smtp-source")
        .args(["-s", "20", "-m", &opts.messages.to_string(), "-l", "1024"])
        .args(["-f", &format!("alice@{SENDER_DOMAIN}"), "-t", AGENT, "-M", &format!("mail.{SENDER_DOMAIN}")])
        .arg(postfix.smtp_addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run smtp-source")?;
    let tenth = i64::from(opts.messages / 10).max(1);
    probe::wait_stored(&db_url, tenth, Duration::from_secs(120)).await?;
    pa.kill()?;
    let killed = Instant::now();
    pa.wait()?;
    let at_kill = probe::stored(&db_url).await?;
    tokio::time::sleep(opts.restart_after).await;
    let mut pa = start(2)?;
    let status = tokio::task::spawn_blocking(move || source.wait()).await??;
    anyhow::ensure!(status.success(), "smtp-source failed: {status}");
    let want = i64::from(opts.messages);
    let mut within_30s = None;
    let all_stored = loop {
        let n = probe::stored(&db_url).await?;
        if within_30s.is_none() && killed.elapsed() >= Duration::from_secs(30) {
            within_30s = Some(n);
        }
        if n >= want {
            break Some(killed.elapsed());
        }
        if killed.elapsed() > opts.limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let within_30s = match within_30s {
        Some(n) => n,
        None => probe::stored(&db_url).await?,
    };
    let log = postfix.read_log();
    let deferred = log.lines().filter(|l| l.contains("status=deferred")).count();
    if all_stored.is_none() {
        // What became of the messages still missing: every line of each deferred queue id.
        let ids: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("status=deferred"))
            .filter_map(|l| l.split(": ").nth(1).filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric())))
            .collect();
        for line in log.lines().filter(|l| ids.iter().any(|id| l.contains(id))) {
            eprintln!("  {variant:?} postfix: {line}");
        }
    }
    let _ = pa.kill();
    let _ = pa.wait();
    drop(postfix);
    Ok(Outcome { variant, at_kill, all_stored, within_30s, deferred })
}

/// A Postfix with its default retry timing (the lab shortens it) and the variant's transport.
async fn start_postfix(
    variant: Variant,
    lmtp: SocketAddr,
    retry: Duration,
) -> anyhow::Result<PostfixInstance> {
    let transport = match variant {
        Variant::Before => format!("lmtp:inet:{lmtp}"),
        Variant::After => format!("postagent:inet:{lmtp}"),
    };
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter: None,
        lmtp: transport,
        smtp_port: None,
        originating_port: None,
    };
    let secs = format!("{}s", retry.as_secs().max(1));
    let mut builder = wiring
        .builder()?
        .main_cf("queue_run_delay", &secs)
        .main_cf("minimal_backoff_time", &secs)
        .main_cf("maximal_backoff_time", "4000s");
    if variant == Variant::After {
        builder = builder
            .master_cf_service("postagent unix - - n - - lmtp")
            .main_cf("postagent_destination_concurrency_failed_cohort_limit", "10");
    }
    tokio::task::spawn_blocking(move || builder.start()).await?
}

fn spawn(
    bin: &Path,
    dir: &Path,
    db_url: &str,
    lmtp: SocketAddr,
    held: Option<&TcpListener>,
    n: u32,
) -> anyhow::Result<Child> {
    let lmtp = lmtp.to_string();
    let args = [
        "lmtp",
        "--database-url",
        db_url,
        "--lmtp-listen",
        &lmtp,
        "--shared-domain",
        AGENT_DOMAIN,
        "--mail-hostname",
        HOSTNAME,
        "--metrics-listen",
        "",
    ];
    let log = std::fs::File::create(dir.join(format!("postagent-{n}.log")))?;
    let configure = |cmd: &mut Command| {
        cmd.env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    };
    Ok(match held {
        Some(l) => postagent_lab::activation::spawn(bin, &args, &[("lmtp", l)], configure)?,
        None => {
            let mut cmd = Command::new(bin);
            cmd.args(args);
            configure(&mut cmd);
            cmd.spawn()?
        }
    })
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            let mut line = String::new();
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            if std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut line).is_ok()
                && line.starts_with("220")
            {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "postagent's LMTP never answered on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Report {
    pub fn markdown(&self, command: &str) -> String {
        let o = &self.opts;
        let mut out = format!(
            "# bench/restart\n\n`{command}`\n\n{env}\n\n\
             {m} messages of 1 KB queued for one agent (`smtp-source -s 20`); postagent (the `lmtp` role, \
             SQLite) is killed with `kill -9` once a tenth are stored and started again {r:?} later. Postfix keeps \
             its default retry timing: `queue_run_delay` and `minimal_backoff_time` {retry} s. Times are from the kill.\n\n\
             | | stored at the kill | stored within 30 s | all {m} stored after | Postfix deferrals |\n|---|---|---|---|---|\n",
            env = self.environment,
            m = o.messages,
            r = o.restart_after,
            retry = o.retry.as_secs(),
        );
        for x in &self.outcomes {
            let all = match x.all_stored {
                Some(d) => format!("**{:.1} s**", d.as_secs_f64()),
                None => format!("not within {} s", o.limit.as_secs()),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {all} | {} |\n",
                x.variant.label(),
                x.at_kill,
                x.within_30s,
                x.deferred
            ));
        }
        out
    }
}

impl crate::Markdown for Report {
    fn markdown(&self, command: &str) -> String {
        Report::markdown(self, command)
    }
}
