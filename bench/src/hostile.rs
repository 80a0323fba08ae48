//! `bench/hostile`: what a message built to be expensive costs postagent, and how forwarding
//! scales with the attachments it carries.
//!
//! - **(a) one stored message**: a fresh `postagent serve` (release build, SQLite) per case,
//!   warmed with one small message; then one message straight to its LMTP port. Reported: the
//!   process's peak RSS above its warm resident size (`VmHWM` − `VmRSS` before), the time to
//!   the LMTP `250`, the attachment rows and the `email.received` payload bytes stored for it.
//!   Cases: a 10 MB message of 400,000 empty MIME parts (the hostile one), the 2.8 MB,
//!   100,000-part message of the trust-chain issue, a 10 MB header of 2,000,000 tiny fields,
//!   and an ordinary 10 MB message with one attachment for scale.
//! - **(b) forward**: messages with 1 to 10 attachments of 100 KB (10 is what a send may
//!   carry), each forwarded `runs` times over the API; the median time per request. It must
//!   grow linearly with the attachments (one parse per forward, not one per attachment).
//!   Then a message of 4,000 attachments, which a forward refuses (400) before parsing.

use crate::{AGENT, AGENT_DOMAIN, Postagent, probe};
use anyhow::Context as _;
use postagent_lab::mail_lab::{SENDER_DOMAIN, SampleZone};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone)]
pub struct Opts {
    pub postagent: PathBuf,
    /// Empty MIME parts of the hostile message (its size follows: 25 bytes a part).
    pub parts: u32,
    /// Attachment counts of the forward series.
    pub forward_counts: Vec<u32>,
    /// Bytes of each forwarded attachment.
    pub forward_bytes: u32,
    /// Forwards timed per count (median reported).
    pub runs: u32,
}

/// One stored message.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub case: String,
    pub bytes: usize,
    pub peak_rss_kib: u64,
    pub store_ms: f64,
    pub attachment_rows: i64,
    pub event_bytes: usize,
    pub truncated: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub stored: Vec<Stored>,
    /// (attachments, median ms, every run's ms).
    pub forward: Vec<(u32, f64, Vec<f64>)>,
    /// (attachments of the original, ms, HTTP status) of a refused forward.
    pub refused: Option<(u32, f64, u16)>,
}

/// The boundary of every generated message: 18 characters, so an empty part (`--B`, CRLF,
/// an empty header block, an empty line) is 26 bytes and 400,000 of them make 10 MB.
const B: &str = "hostile-boundary-x";

/// A multipart message: `text`, then `attachments` parts of `attachment_bytes` (base64), then
/// `empty` empty parts.
pub fn message(subject: &str, attachments: u32, attachment_bytes: u32, empty: u32) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <alice@{SENDER_DOMAIN}>\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{}@{SENDER_DOMAIN}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary={B}\r\n\r\n--{B}\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
        subject.replace(' ', "-"),
    )
    .into_bytes();
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    let lines = (attachment_bytes as usize).div_ceil(57);
    for i in 0..attachments {
        m.extend_from_slice(
            format!(
                "--{B}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"f{i}.bin\"\r\n\r\n"
            )
            .as_bytes(),
        );
        for _ in 0..lines {
            m.extend_from_slice(line.as_bytes());
        }
    }
    for _ in 0..empty {
        m.extend_from_slice(format!("--{B}\r\n\r\n\r\n").as_bytes());
    }
    m.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    m
}

/// A small message whose header carries `fields` tiny fields (`a:x`) after its own.
pub fn header_flood(fields: u32) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <alice@{SENDER_DOMAIN}>\r\nTo: {AGENT}\r\nSubject: header flood\r\n\
         Message-ID: <header-flood@{SENDER_DOMAIN}>\r\n"
    )
    .into_bytes();
    for _ in 0..fields {
        m.extend_from_slice(b"a:x\r\n");
    }
    m.extend_from_slice(b"\r\nhello\r\n");
    m
}

/// One LMTP transaction; the time to the recipient's reply.
async fn lmtp(addr: SocketAddr, rcpt: &str, message: &[u8]) -> anyhow::Result<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let reply = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, want: &str| -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            anyhow::ensure!(r.read_line(&mut line).await? > 0, "LMTP closed, wanted {want}");
            anyhow::ensure!(line.starts_with(want), "wanted {want}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    reply(&mut r, "220").await?;
    w.write_all(b"LHLO bench.test\r\n").await?;
    reply(&mut r, "250").await?;
    w.write_all(format!("MAIL FROM:<alice@{SENDER_DOMAIN}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes())
        .await?;
    reply(&mut r, "250").await?;
    reply(&mut r, "250").await?;
    reply(&mut r, "354").await?;
    let started = Instant::now();
    // No line of these messages starts with a dot, so nothing needs stuffing.
    w.write_all(message).await?;
    w.write_all(b".\r\n").await?;
    reply(&mut r, "250").await?;
    let took = started.elapsed();
    w.write_all(b"QUIT\r\n").await?;
    Ok(took)
}

fn proc_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

async fn fresh(opts: &Opts, zone: &SampleZone) -> anyhow::Result<Postagent> {
    let dir = tempfile::tempdir()?;
    let db_url = format!("sqlite://{}", dir.path().join("postagent.db").display());
    probe::seed(&db_url, AGENT_DOMAIN, AGENT).await?;
    let env = [("POSTAGENT_SUBMISSION_RELAY", "127.0.0.1:9")];
    Postagent::start_in(&opts.postagent, zone, dir, db_url, &[], &env).await
}

async fn one_stored(opts: &Opts, zone: &SampleZone, case: &str, raw: Vec<u8>) -> anyhow::Result<Stored> {
    let pa = fresh(opts, zone).await?;
    lmtp(pa.lmtp, AGENT, &message("warm up", 1, 1000, 0)).await?;
    let before = proc_kib(pa.pid(), "VmRSS:")?;
    let store = lmtp(pa.lmtp, AGENT, &raw).await?;
    let peak = proc_kib(pa.pid(), "VmHWM:")?;
    let pool = sqlx::SqlitePool::connect(&pa.db_url).await?;
    let (id, rows): (String, i64) = sqlx::query_as(
        "SELECT m.id, (SELECT COUNT(*) FROM attachments a WHERE a.message_id = m.id) FROM messages m \
         ORDER BY m.created_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let payload: String =
        sqlx::query_scalar("SELECT payload FROM events WHERE message_id = $1 AND type = 'email.received'")
            .bind(&id)
            .fetch_one(&pool)
            .await?;
    pool.close().await;
    let http = reqwest::Client::new();
    let key = api_key(&pa).await?;
    let view: Value = http
        .get(format!("{}/v1/agents/{AGENT}/messages/{id}", pa.api))
        .bearer_auth(&key)
        .send()
        .await?
        .json()
        .await?;
    pa.stop()?;
    Ok(Stored {
        case: case.to_owned(),
        bytes: raw.len(),
        peak_rss_kib: peak.saturating_sub(before),
        store_ms: store.as_secs_f64() * 1000.0,
        attachment_rows: rows,
        event_bytes: payload.len(),
        truncated: view["parsed"]["truncated"].as_bool().unwrap_or(false),
    })
}

/// An account key made for the bench (the seed's key is not kept).
async fn api_key(pa: &Postagent) -> anyhow::Result<String> {
    let store = postagent_core::store::SqlStore::open(&pa.db_url, 1).await?;
    use postagent_core::store::AccountStore as _;
    let account = store.find_account_by_email("bench@example.org").await?.context("the bench account")?;
    let (_, key) = postagent_core::service::create_api_key(
        &store,
        &account.id,
        "bench",
        postagent_core::apikey::KeyScope::Account,
        None,
        None,
    )
    .await?;
    store.close().await;
    Ok(key)
}

async fn newest_id(db_url: &str) -> anyhow::Result<String> {
    let pool = sqlx::SqlitePool::connect(db_url).await?;
    let id: String = sqlx::query_scalar("SELECT id FROM messages ORDER BY created_at DESC LIMIT 1")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(id)
}

async fn forward(http: &reqwest::Client, pa: &Postagent, key: &str, id: &str) -> anyhow::Result<(f64, u16)> {
    let started = Instant::now();
    let r = http
        .post(format!("{}/v1/agents/{AGENT}/messages/{id}/forward", pa.api))
        .bearer_auth(key)
        .json(&json!({"to": ["someone@example.org"], "text": "fyi"}))
        .send()
        .await?;
    let status = r.status().as_u16();
    let _ = r.bytes().await?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, status))
}

pub async fn run(opts: &Opts) -> anyhow::Result<Report> {
    let zone = SampleZone::start().await?;
    let mut report = Report::default();
    for (case, raw) in [
        (format!("{} empty MIME parts", opts.parts), message("hostile", 0, 0, opts.parts)),
        ("100,000 empty MIME parts (the issue's 2.8 MB)".to_owned(), message("issue", 0, 0, 100_000)),
        ("2,000,000 header fields `a:x`".to_owned(), header_flood(2_000_000)),
        ("one 7.5 MB attachment (ordinary, for scale)".to_owned(), message("ordinary", 1, 7_500_000, 0)),
    ] {
        let s = one_stored(opts, &zone, &case, raw).await?;
        eprintln!(
            "(a) {}: {} bytes, peak RSS +{} KiB, stored in {:.0} ms, {} attachment rows, event {} bytes, truncated {}",
            s.case, s.bytes, s.peak_rss_kib, s.store_ms, s.attachment_rows, s.event_bytes, s.truncated
        );
        report.stored.push(s);
    }
    let pa = fresh(opts, &zone).await?;
    let key = api_key(&pa).await?;
    let http = reqwest::Client::new();
    for &n in &opts.forward_counts {
        lmtp(pa.lmtp, AGENT, &message(&format!("forward {n}"), n, opts.forward_bytes, 0)).await?;
        let id = newest_id(&pa.db_url).await?;
        let (_, status) = forward(&http, &pa, &key, &id).await?;
        anyhow::ensure!(status == 202, "forward of {n} attachments answered {status}");
        let mut runs = Vec::new();
        for _ in 0..opts.runs.max(1) {
            runs.push(forward(&http, &pa, &key, &id).await?.0);
        }
        let median = crate::report::median(&runs);
        eprintln!("(b) {n} attachments: {median:.1} ms");
        report.forward.push((n, median, runs));
    }
    lmtp(pa.lmtp, AGENT, &message("forward many", 4000, 10, 0)).await?;
    let id = newest_id(&pa.db_url).await?;
    let (ms, status) = forward(&http, &pa, &key, &id).await?;
    eprintln!("(b) 4000 attachments: {status} in {ms:.1} ms");
    report.refused = Some((4000, ms, status));
    pa.stop()?;
    Ok(report)
}

impl Report {
    pub fn markdown(&self, command: &str) -> String {
        let mut out = format!(
            "# bench/hostile\n\n`{command}`\n\n{}\n\n## (a) One stored message\n\n\
             | message | bytes | peak RSS above warm | LMTP DATA to 250 | attachment rows | `email.received` payload | `parsed.truncated` |\n|---|---|---|---|---|---|---|\n",
            crate::report::environment()
        );
        for s in &self.stored {
            out.push_str(&format!(
                "| {} | {} | {:.1} MiB | {:.0} ms | {} | {} bytes | {} |\n",
                s.case,
                s.bytes,
                s.peak_rss_kib as f64 / 1024.0,
                s.store_ms,
                s.attachment_rows,
                s.event_bytes,
                s.truncated
            ));
        }
        out.push_str(
            "\nEach message is stored once, whole (its bytes as received); rows and events stay within \
             `max_attachments` (100) whatever the message holds.\n\n## (b) Forward time against attachment count\n\n\
             | attachments (100 KB each) | median ms | ms per attachment | runs (ms) |\n|---|---|---|---|\n",
        );
        for (n, median, runs) in &self.forward {
            let all: Vec<String> = runs.iter().map(|r| format!("{r:.1}")).collect();
            out.push_str(&format!(
                "| {n} | {median:.1} | {:.2} | {} |\n",
                median / f64::from((*n).max(1)),
                all.join(", ")
            ));
        }
        if let Some((n, ms, status)) = self.refused {
            out.push_str(&format!(
                "\nA message of {n} attachments: the forward is answered {status} in {ms:.1} ms, from the attachment \
                 rows, before the message is parsed.\n"
            ));
        }
        out
    }
}
