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
mod cpu;
pub mod data;
pub mod fanout;
pub mod faults;
pub mod hostile;
pub mod inbound;
mod maps;
pub mod metrics;
mod peer;
mod probe;
mod report;
pub mod restart;
pub mod signed;

use anyhow::Context as _;
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone, Wiring};
use postagent_lab::{PostfixInstance, free_port};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use report::{Latency, Lookups, Report};

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

impl Markdown for faults::Report {
    fn markdown(&self, command: &str) -> String {
        faults::Report::markdown(self, command)
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
    /// `bench-nullmilter`, set-up (d).
    pub nullmilter: PathBuf,
    /// Body sizes in bytes of the RSA-2048-signed messages, one row each.
    pub sizes: Vec<u32>,
    /// Body sizes of the Ed25519-signed rows.
    pub ed25519_sizes: Vec<u32>,
    /// Also measure PostgreSQL: one `serve`, and two replicas on one database.
    pub postgres: bool,
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

/// The throughput batch ([`inbound::batch`]), then (b)'s latency probes and socketmap lookups.
pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    postagent_lab::mail_lab::check_can_run_postfix()?;
    for tool in [SMTP_SOURCE, SMTP_SINK] {
        anyhow::ensure!(Path::new(tool).exists(), "{tool} is missing: apt install postfix");
    }
    // A real sender domain's records live minutes to hours, and every resolver caches them.
    let zone = signed::BenchZone::start(DNS_TTL).await?;
    let sink = Sink::start()?;
    let rows = inbound::batch(opts, &zone, &sink).await?;
    drop(sink);
    let pa = Postagent::start_unix(&opts.postagent, zone.dns().addr(), None, None).await?;
    let postfix = start_postfix(Some(pa.milter_unix()), pa.lmtp).await?;
    let mapped = start_postfix_mapped(&pa).await?;
    let lookups = maps::lookups(&mapped, pa.socketmap, opts.probes).await?;
    drop(mapped);
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

/// Starts `smtp-source` against the instance (one message per connection, as senders on
/// the internet do).
fn smtp_source(postfix: &PostfixInstance, opts: &Opts, size: u32) -> anyhow::Result<Child> {
    smtp_source_n(postfix, opts.sessions, opts.messages, size)
}

/// `smtp-source`: `messages` unsigned messages of `size` bytes from the lab's sample sender
/// to the bench agent, `sessions` connections at a time, one message per connection.
pub(crate) fn smtp_source_n(
    postfix: &PostfixInstance,
    sessions: u32,
    messages: u32,
    size: u32,
) -> anyhow::Result<Child> {
    let addr = postfix.smtp_addr();
    Command::new(SMTP_SOURCE)
        .args(["-s", &sessions.to_string(), "-m", &messages.to_string(), "-l", &size.to_string()])
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
    milter: Option<String>,
    lmtp: SocketAddr,
) -> anyhow::Result<PostfixInstance> {
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter,
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
        milter: Some(pa.milter_unix()),
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
        Self::spawn(None)
    }

    /// A sink that writes every message it receives into `dir` (one file each), for checks;
    /// never used while timing.
    fn start_keeping(dir: &Path) -> anyhow::Result<Sink> {
        Self::spawn(Some(dir))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(keep: Option<&Path>) -> anyhow::Result<Sink> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let keep =
            keep.map(|d| vec!["-d".to_owned(), format!("{}/%H%M%S.", d.display())]).unwrap_or_default();
        // -u is mandatory as root; 256 is the listen backlog (postfix-lab.md §3).
        let child = Command::new(SMTP_SINK)
            .args(["-L", "-u", "postfix"])
            .args(&keep)
            .args([&addr.to_string(), "256"])
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

pub(crate) fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Where `serve`'s milter listens.
enum MilterAt {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A temporary directory Postfix's processes (user `postfix`) can enter, for sockets.
pub(crate) fn world_traversable_tempdir() -> anyhow::Result<tempfile::TempDir> {
    postagent_lab::traversable_tempdir("bench")
}

/// `transport_maps` sending every message to one of `hops` (LMTP servers) at random:
/// Postfix's randmap (3.0+) answers any key with one of its results (no braces around them:
/// randmap keeps those in the result).
pub(crate) fn random_lmtp_hop(hops: &[SocketAddr]) -> String {
    let hops: Vec<String> = hops.iter().map(|a| format!("lmtp:inet:{a}")).collect();
    format!("randmap:{{{}}}", hops.join(", "))
}

/// `postagent serve` with its milter and LMTP on loopback and SQLite in a temp dir.
pub(crate) struct Postagent {
    child: Child,
    milter: SocketAddr,
    /// The unix milter socket, when started with one (then `milter` is unused).
    milter_socket: Option<PathBuf>,
    lmtp: SocketAddr,
    socketmap: SocketAddr,
    api: String,
    db_url: String,
    _dir: tempfile::TempDir,
}

impl Postagent {
    /// `serve` with its milter on a unix socket (as Debian ships the peer's), resolving at
    /// `dns`, on SQLite in its directory or on the PostgreSQL database `pg`. With `replica_of`,
    /// it shares that one's database (already seeded) and HMAC secret.
    async fn start_unix(
        bin: &Path,
        dns: SocketAddr,
        pg: Option<&str>,
        replica_of: Option<&Postagent>,
    ) -> anyhow::Result<Postagent> {
        let dir = world_traversable_tempdir()?;
        let socket = dir.path().join("milter.sock");
        let db_url = match pg {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}", dir.path().join("postagent.db").display()),
        };
        let mut extra = vec!["--unix-socket-group".to_owned(), "postfix".to_owned()];
        match replica_of {
            Some(first) => {
                extra.push("--hmac-secret-file".into());
                extra.push(first._dir.path().join("hmac.secret").display().to_string());
            }
            None => drop(probe::seed(&db_url, AGENT_DOMAIN, AGENT).await?),
        }
        if pg.is_some() {
            extra.push("--database-url".into());
            extra.push(db_url.clone());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let milter = MilterAt::Unix(socket.clone());
        let mut pa = Self::start_with(bin, dns, milter, dir, db_url, &extra, &[]).await?;
        pa.milter_socket = Some(socket);
        Ok(pa)
    }

    /// `smtpd_milters` for its unix socket.
    fn milter_unix(&self) -> String {
        self.milter_socket
            .as_ref()
            .map_or_else(|| format!("inet:{}", self.milter), |p| format!("unix:{}", p.display()))
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
        let milter = MilterAt::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)));
        Self::start_with(bin, zone.dns().addr(), milter, dir, db_url, extra, env).await
    }

    async fn start_with(
        bin: &Path,
        dns: SocketAddr,
        milter_at: MilterAt,
        dir: tempfile::TempDir,
        db_url: String,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Postagent> {
        let (milter, milter_listen) = match milter_at {
            MilterAt::Tcp(a) => (a, a.to_string()),
            MilterAt::Unix(p) => {
                (SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), format!("unix:{}", p.display()))
            }
        };
        let lmtp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let socketmap = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--api-listen", "127.0.0.1:0", "--milter-listen", &milter_listen])
            .args(["--lmtp-listen", &lmtp.to_string(), "--shared-domain", AGENT_DOMAIN])
            .args(["--socketmap-listen", &socketmap.to_string()])
            .args(["--mail-hostname", HOSTNAME, "--dns-server", &dns.to_string()])
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
        Ok(Postagent {
            child,
            milter,
            milter_socket: None,
            lmtp,
            socketmap,
            api: format!("http://{api}"),
            db_url,
            _dir: dir,
        })
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
