//! `bench/inbound`: what postagent costs a Postfix that receives agent mail.
//!
//! Postfix's own load generator (`smtp-source`) sends into a private Postfix (the lab's,
//! `postagent_lab::mail_lab`), in two configurations measured in the same run:
//!
//! - **(a) baseline**: Postfix relays the agent domain to Postfix's `smtp-sink` as an LMTP
//!   server; no milter. This is the ceiling of the machine.
//! - **(b) postagent**: the postagent milter on `smtpd_milters` (SPF, DMARC, signed headers)
//!   and postagent's LMTP server storing every message in SQLite, both from one
//!   `postagent serve` (a release build), logging at `info` as in production; the agent
//!   domain in static tables.
//! - **(c) postagent with maps**: (b), with `relay_domains`, `transport_maps` and
//!   `relay_recipient_maps` asked of postagent's socketmap, as `postfix setup` configures it.
//!   (c) against (b) is what the live tables cost per message.
//!
//! Then the socketmap's lookup latency on its own: `postmap -q` in a loop (a process per
//! lookup, as an operator checks by hand) and a connection kept open as Postfix keeps it.
//!
//! Throughput is end to end: from the first connection until Postfix's queue is empty (and,
//! for (b), every message is in the database), over `messages` messages in `sessions`
//! parallel sessions, one message per connection. Each size runs `runs` times; the median is
//! reported. Latency is DATA-to-stored: a probe client takes the time right after writing
//! the final `.` of a message and compares it with the row's `created_at` (same clock): at
//! idle, under a steady load the system keeps up with, and while a full-speed `smtp-source`
//! run saturates it (then Postfix's queue grows, and the figure is mostly queueing).

pub mod console;
pub mod data;
pub mod fanout;
pub mod hostile;
mod maps;
pub mod metrics;
mod probe;
mod report;
pub mod restart;

use anyhow::Context as _;
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone, Wiring};
use postagent_lab::{PostfixInstance, free_port};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use report::{Latency, Lookups, Report, Row};

/// A benchmark's report as the `bench-*` binaries print and write it.
pub trait Markdown {
    fn markdown(&self, command: &str) -> String;
}

impl Markdown for Report {
    fn markdown(&self, command: &str) -> String {
        Report::markdown(self, command)
    }
}

impl Markdown for fanout::Report {
    fn markdown(&self, command: &str) -> String {
        fanout::Report::markdown(self, command)
    }
}

impl Markdown for hostile::Report {
    fn markdown(&self, command: &str) -> String {
        hostile::Report::markdown(self, command)
    }
}

/// A `bench-*` binary's `main`: a usage error (from its argument parser) exits 2, anything
/// else goes to [`main_with`].
pub fn cli<O, T: Markdown, Fut: std::future::Future<Output = anyhow::Result<T>>>(
    name: &str,
    command_env: &str,
    parsed: Result<(O, Option<PathBuf>), String>,
    run: impl FnOnce(O) -> Fut,
) -> std::process::ExitCode {
    match parsed {
        Ok((opts, out)) => main_with(name, command_env, out, run(opts)),
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The command line of a `bench-*` binary, read flag by flag: each binary matches its own
/// flags and hands any other to [`Flags::common`] (`--out FILE`, `--help`, the unknown).
pub struct Flags {
    usage: &'static str,
    args: std::iter::Skip<std::env::Args>,
    flag: String,
    /// Where `--out` asked the report to be written.
    pub out: Option<PathBuf>,
}

impl Flags {
    pub fn new(usage: &'static str) -> Self {
        Self { usage, args: std::env::args().skip(1), flag: String::new(), out: None }
    }

    /// The next flag.
    pub fn next_flag(&mut self) -> Option<String> {
        self.flag = self.args.next()?;
        Some(self.flag.clone())
    }

    /// The current flag's value (the next argument).
    pub fn value(&mut self) -> Result<String, String> {
        self.args.next().ok_or_else(|| format!("{} needs a value\n{}", self.flag, self.usage))
    }

    pub fn number(&mut self) -> Result<u32, String> {
        let v = self.value()?;
        v.parse::<u32>().map_err(|_| format!("{}: {v:?} is not a number", self.flag))
    }

    pub fn path(&mut self) -> Result<PathBuf, String> {
        self.value().map(PathBuf::from)
    }

    /// The flags every binary takes; anything else is a usage error.
    pub fn common(&mut self, flag: &str) -> Result<(), String> {
        match flag {
            "--out" => self.out = Some(self.path()?),
            "-h" | "--help" => return Err(self.usage.into()),
            other => return Err(format!("unknown argument {other:?}\n{}", self.usage)),
        }
        Ok(())
    }
}

/// What the `bench-*` binaries share after parsing their arguments: run the benchmark on a
/// runtime, print its report and write it to `out`. `name` prefixes errors; the command shown
/// in the report is `$<command_env>` (the `run` script's invocation) or this binary's own.
pub fn main_with<T: Markdown>(
    name: &str,
    command_env: &str,
    out: Option<PathBuf>,
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(report) => {
            let command =
                std::env::var(command_env).unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
            let text = report.markdown(command.trim_end());
            print!("{text}");
            if let Some(path) = out
                && let Err(e) = std::fs::write(&path, &text)
            {
                eprintln!("{name}: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const AGENT_DOMAIN: &str = "agents.bench.test";
const AGENT: &str = "bot@agents.bench.test";
const HOSTNAME: &str = "mx.bench.test";
const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
/// TTL of the sample zone's records (see [`run`]).
pub const DNS_TTL: u32 = 300;
/// How long any one run may take before the benchmark gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Opts {
    /// The postagent binary to measure (a release build for real figures).
    pub postagent: PathBuf,
    pub messages: u32,
    pub sessions: u32,
    pub runs: u32,
    /// Message sizes in bytes (`smtp-source -l`).
    pub sizes: Vec<u32>,
    /// Probe messages for the idle latency figure.
    pub probes: u32,
    /// The steady load of the second latency figure (msg/s, well under what (b) sustains)
    /// and how long it lasts.
    pub paced_rate: u32,
    pub paced_seconds: u32,
}

/// The debug `postagent` binary next to the tests' target dir (built by `cargo test
/// --workspace`), for the smoke tests; `None` after a SKIP (fails in CI) when it is missing.
pub fn debug_postagent(target_tmpdir: &str) -> Option<PathBuf> {
    let target = PathBuf::from(target_tmpdir);
    let bin = target.parent()?.join("debug").join("postagent");
    postagent_lab::require_that(
        bin.exists(),
        &format!("{} is not built", bin.display()),
        "run cargo test --workspace",
    )
    .then_some(bin)
}

/// Runs both configurations and the latency probes.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    postagent_lab::mail_lab::check_can_run_postfix()?;
    for tool in [SMTP_SOURCE, SMTP_SINK] {
        anyhow::ensure!(Path::new(tool).exists(), "{tool} is missing: apt install postfix");
    }
    let zone = SampleZone::start().await?;
    // A real sender domain's records live minutes to hours, and the milter's resolver
    // caches them: every message from one domain does not cost fresh DNS round trips.
    zone.dns().set_ttl(DNS_TTL);
    let mut rows: Vec<Row> = opts.sizes.iter().map(|&size| Row { size, ..Row::default() }).collect();

    // Both configurations run side by side (two private Postfix instances, idle when not
    // measured) and their runs alternate, a then b, so a slow spell of the machine hits both
    // alike and the ratio stays meaningful.
    let sink = Sink::start()?;
    let baseline = start_postfix(None, sink.addr).await?;
    let pa = Postagent::start(&opts.postagent, &zone).await?;
    let postfix = start_postfix(Some(pa.milter), pa.lmtp).await?;
    let mapped = start_postfix_mapped(&pa).await?;
    // One uncounted warm-up each: the first run after start is slower (process start-up,
    // cold caches) and would only add noise.
    let warm_up = Opts { messages: opts.messages.min(500), ..opts.clone() };
    throughput(&baseline, &warm_up, 1024, None).await?;
    throughput(&postfix, &warm_up, 1024, Some(&pa)).await?;
    throughput(&mapped, &warm_up, 1024, Some(&pa)).await?;
    for row in &mut rows {
        for run in 1..=opts.runs {
            let a = throughput(&baseline, opts, row.size, None).await?;
            let b = throughput(&postfix, opts, row.size, Some(&pa)).await?;
            let c = throughput(&mapped, opts, row.size, Some(&pa)).await?;
            eprintln!("  {} B run {run}: (a) {a:.0} msg/s, (b) {b:.0} msg/s, (c) {c:.0} msg/s", row.size);
            row.baseline.push(a);
            row.postagent.push(b);
            row.mapped.push(c);
        }
    }
    let lookups = maps::lookups(&mapped, pa.socketmap, opts.probes).await?;
    drop(mapped);
    drop(baseline);
    drop(sink);
    let idle = probe::idle(&postfix, &pa.db_url, opts.probes).await?;
    eprintln!("  latency at idle: {idle}");
    let paced = probe::under_load(&postfix, &pa.db_url, || paced_source(&postfix, opts)).await?;
    eprintln!("  latency at about {} msg/s: {paced}", opts.paced_rate);
    let loaded = probe::under_load(&postfix, &pa.db_url, || smtp_source(&postfix, opts, 1024)).await?;
    eprintln!("  latency saturated: {loaded}");
    drop(postfix);
    pa.stop()?;
    Ok(Report { opts: opts.clone(), rows, idle, paced, loaded, lookups, environment: report::environment() })
}

/// One `smtp-source` run: msg/s from its start until the queue is empty (and, with
/// postagent, until every message is stored).
async fn throughput(
    postfix: &PostfixInstance,
    opts: &Opts,
    size: u32,
    postagent: Option<&Postagent>,
) -> anyhow::Result<f64> {
    postfix.wait_queue_empty(RUN_LIMIT).await?;
    let stored_before = match postagent {
        Some(pa) => probe::stored(&pa.db_url).await?,
        None => 0,
    };
    let t0 = Instant::now();
    let mut source = smtp_source(postfix, opts, size)?;
    let status = tokio::task::spawn_blocking(move || source.wait()).await??;
    anyhow::ensure!(status.success(), "smtp-source failed: {status}");
    postfix.wait_queue_empty(RUN_LIMIT).await?;
    if let Some(pa) = postagent {
        let want = stored_before + i64::from(opts.messages);
        let got = probe::wait_stored(&pa.db_url, want, RUN_LIMIT).await?;
        anyhow::ensure!(got == want, "{got} messages stored, expected {want}: some were lost or duplicated");
    }
    Ok(f64::from(opts.messages) / t0.elapsed().as_secs_f64())
}

/// Starts `smtp-source` against the instance (one message per connection, as senders on
/// the internet do).
fn smtp_source(postfix: &PostfixInstance, opts: &Opts, size: u32) -> anyhow::Result<Child> {
    let addr = postfix.smtp_addr();
    Command::new(SMTP_SOURCE)
        .args(["-s", &opts.sessions.to_string(), "-m", &opts.messages.to_string(), "-l", &size.to_string()])
        .args(["-f", &format!("alice@{SENDER_DOMAIN}"), "-t", AGENT, "-M", &format!("mail.{SENDER_DOMAIN}")])
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run smtp-source")
}

/// `smtp-source` at about `paced_rate` msg/s for `paced_seconds`: that many sessions, each
/// sending one 1 KB message a second (`-w 1`).
fn paced_source(postfix: &PostfixInstance, opts: &Opts) -> anyhow::Result<Child> {
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

pub(crate) async fn start_postfix(
    milter: Option<SocketAddr>,
    lmtp: SocketAddr,
) -> anyhow::Result<PostfixInstance> {
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter: milter.map(|m| format!("inet:{m}")),
        lmtp: format!("lmtp:inet:{lmtp}"),
        smtp_port: None,
        originating_port: None,
    };
    let builder = wiring.builder()?;
    tokio::task::spawn_blocking(move || builder.start()).await?
}

/// (b)'s Postfix asking postagent's socketmap for its tables instead, as `postfix setup`
/// writes them.
async fn start_postfix_mapped(pa: &Postagent) -> anyhow::Result<PostfixInstance> {
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter: Some(format!("inet:{}", pa.milter)),
        lmtp: format!("lmtp:inet:{}", pa.lmtp),
        smtp_port: None,
        originating_port: None,
    };
    let table = |name: &str| format!("socketmap:inet:{}:{name}", pa.socketmap);
    let builder = wiring
        .builder()?
        // The transport the map answers, as `postfix setup` adds it.
        .master_cf_service("postagent unix - - n - - lmtp")
        .main_cf("relay_domains", &table("domains"))
        .main_cf("transport_maps", &table("transport"))
        .main_cf("relay_recipient_maps", &table("recipients"));
    tokio::task::spawn_blocking(move || builder.start()).await?
}

/// Postfix's `smtp-sink` as an LMTP server (`-L`), the baseline's next hop.
struct Sink {
    child: Child,
    addr: SocketAddr,
}

impl Sink {
    fn start() -> anyhow::Result<Sink> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        // -u is mandatory as root; 256 is the listen backlog (postfix-lab.md §3).
        let child = Command::new(SMTP_SINK)
            .args(["-L", "-u", "postfix", &addr.to_string(), "256"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run smtp-sink")?;
        let sink = Sink { child, addr };
        wait_listening(addr)?;
        Ok(sink)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `postagent serve` with its milter and LMTP on loopback and SQLite in a temp dir.
pub(crate) struct Postagent {
    child: Child,
    milter: SocketAddr,
    lmtp: SocketAddr,
    socketmap: SocketAddr,
    api: String,
    db_url: String,
    _dir: tempfile::TempDir,
}

impl Postagent {
    async fn start(bin: &Path, zone: &SampleZone) -> anyhow::Result<Postagent> {
        let dir = tempfile::tempdir()?;
        let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
        probe::seed(&db_url, AGENT_DOMAIN, AGENT).await?;
        Self::start_in(bin, zone, dir, db_url, &[], &[]).await
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log (stderr), as written so far.
    fn log(&self) -> PathBuf {
        self._dir.path().join("postagent.log")
    }

    /// Starts on an already seeded database in `dir`, with `extra` flags.
    async fn start_in(
        bin: &Path,
        zone: &SampleZone,
        dir: tempfile::TempDir,
        db_url: String,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Postagent> {
        let milter = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let lmtp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let socketmap = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--api-listen", "127.0.0.1:0", "--milter-listen", &milter.to_string()])
            .args(["--lmtp-listen", &lmtp.to_string(), "--shared-domain", AGENT_DOMAIN])
            .args(["--socketmap-listen", &socketmap.to_string()])
            .args(["--mail-hostname", HOSTNAME, "--dns-server", &zone.dns().addr().to_string()])
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        // Its log goes to a file, like mail.log; wait for the last listener's line.
        let stderr = child.stderr.take().context("stderr")?;
        let mut log = std::fs::File::create(dir.path().join("postagent.log"))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("API listening on ").nth(1) {
                    let _ = ready_tx.send(addr.trim().to_owned());
                }
                let _ = std::io::Write::write_all(&mut log, format!("{line}\n").as_bytes());
            }
        });
        let api = ready_rx.recv_timeout(Duration::from_secs(30)).context("postagent serve did not start")?;
        Ok(Postagent { child, milter, lmtp, socketmap, api: format!("http://{api}"), db_url, _dir: dir })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill failed");
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "postagent serve exited with {status}");
        Ok(())
    }
}

impl Drop for Postagent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
