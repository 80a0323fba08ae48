//! `bench/inbound`'s throughput batch: real DKIM-signed mail through a private Postfix in six
//! set-ups measured in turns, so a slow spell of the machine hits them all alike:
//!
//! - **(a)** bare Postfix → `smtp-sink` as LMTP server: the machine's ceiling;
//! - **(b)** Postfix + postagent (milter on a unix socket, LMTP → SQLite), one `serve`;
//! - **(b-pg)** the same on PostgreSQL;
//! - **(b-2)** two `serve` processes on one PostgreSQL behind one Postfix: the milter of the
//!   first, and the LMTP hop chosen at random per message between both (`randmap`);
//! - **(c)** Postfix + Debian's OpenDKIM (verify) + OpenDMARC on unix sockets → `smtp-sink`;
//! - **(d)** Postfix + `bench-nullmilter` (takes headers and body, does nothing) → `smtp-sink`:
//!   the least any milter that verifies DKIM can cost.
//!
//! Every message of (b) is checked in the database for `dkim=pass` and `dmarc=pass`; (c)'s in
//! a checking run whose sink keeps the messages, read for OpenDKIM's and OpenDMARC's
//! Authentication-Results. CPU per message is taken per process from /proc: the Postfix
//! instance (master and every child, reaped ones included), the milter processes, the sink.

use crate::peer::{NullMilter, PeerStack};
use crate::signed::{BenchZone, KeyType, SIGNED_SENDER};
use crate::{AGENT, AGENT_DOMAIN, HOSTNAME, Opts, Postagent, RUN_LIMIT, SMTP_SOURCE, Sink, probe};
use anyhow::Context as _;
use postagent_lab::PostfixInstance;
use postagent_lab::mail_lab::Wiring;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One set-up of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Bare,
    Postagent,
    PostagentPg,
    Replicas,
    Peer,
    Null,
}

impl Setup {
    pub fn key(self) -> &'static str {
        match self {
            Setup::Bare => "a",
            Setup::Postagent => "b",
            Setup::PostagentPg => "b-pg",
            Setup::Replicas => "b-2",
            Setup::Peer => "c",
            Setup::Null => "d",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Setup::Bare => "bare Postfix → smtp-sink",
            Setup::Postagent => "Postfix + postagent (unix milter, LMTP → SQLite)",
            Setup::PostagentPg => "Postfix + postagent on PostgreSQL",
            Setup::Replicas => "Postfix + 2 postagent replicas on one PostgreSQL",
            Setup::Peer => "Postfix + OpenDKIM + OpenDMARC (unix) → smtp-sink",
            Setup::Null => "Postfix + null indymilter (unix) → smtp-sink",
        }
    }
}

/// What one set-up measured for one kind of message.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// msg/s of each timed run.
    pub rates: Vec<f64>,
    /// CPU ms per message over all timed runs, per process group, in the order of the
    /// set-up's process list (Postfix first).
    pub cpu: Vec<(String, f64)>,
}

/// One kind of message (size and key) across the set-ups.
#[derive(Debug, Clone)]
pub struct Row {
    pub size: u32,
    pub key: KeyType,
    pub by: Vec<(Setup, Measured)>,
}

impl Row {
    pub fn median(&self, setup: Setup) -> Option<f64> {
        self.by.iter().find(|(s, _)| *s == setup).map(|(_, m)| crate::report::median(&m.rates))
    }
}

/// A running set-up: its Postfix, the processes whose CPU is counted, and the database whose
/// rows are counted and checked (none for the sink set-ups).
struct Stand {
    setup: Setup,
    postfix: PostfixInstance,
    procs: Vec<(&'static str, Counted)>,
    db: Option<String>,
}

/// How a process group's CPU is read.
enum Counted {
    /// The stand's Postfix instance: its master's process tree.
    Postfix,
    /// The shared `smtp-sink`, for the set-ups that deliver to it.
    Sink,
    /// These processes alone.
    Processes(Vec<u32>),
    /// These processes and everything they forked (PostgreSQL's backends).
    Trees(Vec<u32>),
}

/// Everything the batch started; dropped in reverse order at the end.
struct Running {
    stands: Vec<Stand>,
    _postagents: Vec<Postagent>,
    _peer: PeerStack,
    _null: NullMilter,
    /// Dropped last: the replicas above use it.
    _pg: Option<postagent_lab::pg::PgCluster>,
}

/// The batch: every row, every set-up, `opts.runs` timed runs each after a warm-up.
pub(crate) async fn batch(opts: &Opts, zone: &BenchZone, sink: &Sink) -> anyhow::Result<Vec<Row>> {
    let running = start(opts, zone, sink).await?;
    let mut kinds: Vec<(u32, KeyType)> = opts.sizes.iter().map(|&s| (s, KeyType::Rsa2048)).collect();
    kinds.extend(opts.ed25519_sizes.iter().map(|&s| (s, KeyType::Ed25519)));
    let warm = Opts { messages: opts.messages.min(500), ..opts.clone() };
    let first = zone.message(kinds.first().map_or(1024, |k| k.0), KeyType::Rsa2048)?;
    for stand in &running.stands {
        throughput(stand, &warm, &first, sink).await?;
    }
    let mut rows = Vec::new();
    for (size, key) in kinds {
        let file = zone.message(size, key)?;
        let mut by: Vec<(Setup, Measured, Vec<u64>)> =
            running.stands.iter().map(|s| (s.setup, Measured::default(), Vec::new())).collect();
        for run in 1..=opts.runs {
            let mut line = format!("  {size} B {} run {run}:", key.label());
            for (stand, (_, m, ticks)) in running.stands.iter().zip(by.iter_mut()) {
                let (rate, used) = throughput(stand, opts, &file, sink).await?;
                m.rates.push(rate);
                if ticks.is_empty() {
                    *ticks = vec![0; used.len()];
                }
                for (t, u) in ticks.iter_mut().zip(used) {
                    *t += u;
                }
                line.push_str(&format!(" ({}) {rate:.0}", stand.setup.key()));
            }
            eprintln!("{line} msg/s");
        }
        let messages = f64::from(opts.messages * opts.runs);
        let by = running
            .stands
            .iter()
            .zip(by)
            .map(|(stand, (setup, mut m, ticks))| {
                let names = stand.procs.iter().map(|(n, _)| (*n).to_owned());
                // Ticks are 10 ms (USER_HZ 100).
                m.cpu = names.zip(ticks).map(|(n, t)| (n, t as f64 * 10.0 / messages)).collect();
                (setup, m)
            })
            .collect();
        rows.push(Row { size, key, by });
    }
    for stand in &running.stands {
        if let Some(db) = &stand.db {
            let (total, pass) = verdicts(db).await?;
            anyhow::ensure!(
                total > 0 && pass == total,
                "({}) {pass} of {total} stored messages have dkim=pass and dmarc=pass",
                stand.setup.key()
            );
            eprintln!("  ({}) all {total} stored messages: dkim=pass, dmarc=pass", stand.setup.key());
        }
    }
    drop(running);
    Ok(rows)
}

async fn start(opts: &Opts, zone: &BenchZone, sink: &Sink) -> anyhow::Result<Running> {
    let dns = zone.dns().addr();
    let mut stands = vec![stand(Setup::Bare, None, sink, vec![]).await?];
    let mut postagents = Vec::new();
    let mut dbs = vec![(Setup::Postagent, None)];
    // Durable, as SQLite is (a WAL flush at every commit): the comparison is the point.
    let cluster = if opts.postgres { Some(postagent_lab::pg::PgCluster::start_durable()?) } else { None };
    if let Some(cluster) = &cluster {
        dbs.push((Setup::PostagentPg, Some(cluster.create_database()?)));
        dbs.push((Setup::Replicas, Some(cluster.create_database()?)));
    }
    for (setup, url) in dbs {
        let one = Postagent::start_unix(&opts.postagent, dns, url.as_deref(), None).await?;
        let mut pids = vec![one.pid()];
        let mut hops = vec![one.lmtp];
        if setup == Setup::Replicas {
            // The second replica shares the database and the HMAC secret the first's milter
            // signs with.
            let two = Postagent::start_unix(&opts.postagent, dns, url.as_deref(), Some(&one)).await?;
            pids.push(two.pid());
            hops.push(two.lmtp);
            postagents.push(two);
        }
        let mut s = stand(setup, Some(one.milter_unix()), sink, hops).await?;
        s.procs.push((if pids.len() > 1 { "postagent ×2" } else { "postagent" }, Counted::Processes(pids)));
        if let Some(pid) = cluster.as_ref().filter(|_| url.is_some()).and_then(|c| c.server_pid()) {
            // The server's backends do the database work postagent's SQLite does in-process.
            s.procs.push(("PostgreSQL", Counted::Trees(vec![pid])));
        }
        s.db = Some(one.db_url.clone());
        stands.push(s);
        postagents.push(one);
    }
    eprintln!("  started (a) and postagent's set-ups");
    let peer = PeerStack::start(HOSTNAME)?;
    check_peer(&peer, opts, zone).await?;
    let mut s = stand(Setup::Peer, Some(peer.smtpd_milters()), sink, vec![]).await?;
    let [dkim, dmarc] = peer.pids();
    s.procs.push(("opendkim", Counted::Processes(vec![dkim])));
    s.procs.push(("opendmarc", Counted::Processes(vec![dmarc])));
    stands.push(s);
    let null = NullMilter::start(&opts.nullmilter)?;
    let mut s = stand(Setup::Null, Some(null.smtpd_milter()), sink, vec![]).await?;
    s.procs.push(("null milter", Counted::Processes(vec![null.pid()])));
    stands.push(s);
    // The set-ups without a database deliver to the sink: its work is theirs.
    for s in stands.iter_mut().filter(|s| s.db.is_none()) {
        s.procs.push(("smtp-sink", Counted::Sink));
    }
    Ok(Running { stands, _postagents: postagents, _peer: peer, _null: null, _pg: cluster })
}

/// A Postfix for `setup`: `milter` on `smtpd_milters` (none for (a)), the agent domain to
/// `lmtp` (one hop, or a random one of several), or to the sink when `lmtp` is empty.
async fn stand(
    setup: Setup,
    milter: Option<String>,
    sink: &Sink,
    lmtp: Vec<std::net::SocketAddr>,
) -> anyhow::Result<Stand> {
    let first = lmtp.first().copied().unwrap_or(sink.addr);
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter: milter.clone(),
        lmtp: format!("lmtp:inet:{first}"),
        smtp_port: None,
        originating_port: None,
    };
    let mut builder = wiring.builder()?;
    if lmtp.len() > 1 {
        builder = builder.main_cf("transport_maps", &crate::random_lmtp_hop(&lmtp));
    }
    if milter.is_some() {
        // The fragment's non_smtpd_milters would also filter bounces Postfix makes itself;
        // no such mail here, and (c) and (d) must be configured as (b) is.
        builder = builder.main_cf("non_smtpd_milters", "");
    }
    let postfix = tokio::task::spawn_blocking(move || builder.start()).await??;
    Ok(Stand { setup, postfix, procs: vec![("Postfix", Counted::Postfix)], db: None })
}

/// Runs `smtp-source` once with `file`: msg/s from its start until Postfix's queue is empty
/// and every message is stored; and the CPU ticks each process group used meanwhile (the
/// sink's last).
async fn throughput(stand: &Stand, opts: &Opts, file: &Path, sink: &Sink) -> anyhow::Result<(f64, Vec<u64>)> {
    stand.postfix.wait_queue_empty(RUN_LIMIT).await?;
    let before = match &stand.db {
        Some(db) => probe::stored(db).await?,
        None => 0,
    };
    let ticks0 = ticks(stand, sink);
    let t0 = Instant::now();
    let mut source = Command::new(SMTP_SOURCE)
        .args(["-s", &opts.sessions.to_string(), "-m", &opts.messages.to_string()])
        .arg("-F")
        .arg(file)
        .args(["-f", SIGNED_SENDER, "-t", AGENT, "-M", "mail.sender.example"])
        .arg(stand.postfix.smtp_addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot run smtp-source")?;
    let status = tokio::task::spawn_blocking(move || source.wait()).await??;
    anyhow::ensure!(status.success(), "smtp-source failed: {status}");
    stand.postfix.wait_queue_empty(RUN_LIMIT).await?;
    if let Some(db) = &stand.db {
        let want = before + i64::from(opts.messages);
        let got = probe::wait_stored(db, want, RUN_LIMIT).await?;
        anyhow::ensure!(got == want, "({}) {got} messages stored, expected {want}", stand.setup.key());
    } else {
        let sent = stand.postfix.read_log().matches("status=sent").count();
        anyhow::ensure!(sent > 0, "({}) nothing was delivered", stand.setup.key());
    }
    let rate = f64::from(opts.messages) / t0.elapsed().as_secs_f64();
    let used = ticks(stand, sink).iter().zip(ticks0).map(|(b, a)| b.saturating_sub(a)).collect();
    Ok((rate, used))
}

/// CPU ticks so far of each process group of `stand`.
fn ticks(stand: &Stand, sink: &Sink) -> Vec<u64> {
    stand
        .procs
        .iter()
        .map(|(_, counted)| match counted {
            Counted::Postfix => stand.postfix.master_pid().map_or(0, crate::cpu::tree_ticks),
            Counted::Sink => crate::cpu::proc_ticks(sink.pid()),
            Counted::Processes(pids) => pids.iter().map(|&p| crate::cpu::proc_ticks(p)).sum(),
            Counted::Trees(pids) => pids.iter().map(|&p| crate::cpu::tree_ticks(p)).sum(),
        })
        .collect()
}

/// (c)'s check, before the timing: 20 messages of each key through the peer into a sink that
/// keeps them; each must carry OpenDKIM's `dkim=pass` and OpenDMARC's `dmarc=pass`.
async fn check_peer(peer: &PeerStack, opts: &Opts, zone: &BenchZone) -> anyhow::Result<()> {
    let dump = crate::world_traversable_tempdir()?;
    // smtp-sink writes as user postfix.
    std::fs::set_permissions(dump.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let keeper = Sink::start_keeping(dump.path())?;
    let stand = stand(Setup::Peer, Some(peer.smtpd_milters()), &keeper, vec![]).await?;
    let check = Opts { messages: 20, sessions: 4, ..opts.clone() };
    for key in [KeyType::Rsa2048, KeyType::Ed25519] {
        throughput(&stand, &check, &zone.message(1024, key)?, &keeper).await?;
    }
    drop(stand);
    drop(keeper);
    let mut checked = 0;
    for entry in std::fs::read_dir(dump.path())? {
        let text = std::fs::read_to_string(entry?.path())?;
        let results: Vec<String> =
            unfold(&text).into_iter().filter(|l| l.starts_with("Authentication-Results:")).collect();
        anyhow::ensure!(
            results.iter().any(|l| l.contains("dkim=pass"))
                && results.iter().any(|l| l.contains("dmarc=pass")),
            "(c) delivered a message without dkim=pass and dmarc=pass: {results:?}"
        );
        checked += 1;
    }
    anyhow::ensure!(checked == 40, "(c) the checking sink kept {checked} messages, not 40");
    eprintln!("  (c) 40 messages checked: OpenDKIM dkim=pass, OpenDMARC dmarc=pass (RSA-2048 and Ed25519)");
    Ok(())
}

/// The header fields of a message, each on one line (folded lines joined).
fn unfold(message: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for line in message.lines().take_while(|l| !l.is_empty()) {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => fields.push(line.to_owned()),
        }
    }
    fields
}

/// (stored messages, those whose stored verdict has every DKIM signature and DMARC pass).
async fn verdicts(db: &str) -> anyhow::Result<(usize, usize)> {
    use postagent_core::auth::Authentication;
    let rows = probe::authentications(db).await?;
    let pass = rows
        .iter()
        .filter_map(|a| a.as_deref().and_then(|a| serde_json::from_str::<Authentication>(a).ok()))
        .filter(|a| {
            !a.dkim.is_empty()
                && a.dkim.iter().all(|d| d.status.as_str() == "pass")
                && a.dmarc.status.as_str() == "pass"
        })
        .count();
    Ok((rows.len(), pass))
}
