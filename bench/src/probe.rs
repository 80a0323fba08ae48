//! DATA-to-stored latency: probe messages with known Message-IDs, timed by the client right
//! after the final `.` and matched with the row's `created_at` (microseconds, same clock).

use crate::report::Latency;
use postagent_core::service;
use postagent_core::store::SqlStore;
use postagent_lab::PostfixInstance;
use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message, unique_token};
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Gap between probes: light enough not to be a load of their own.
const PROBE_GAP: Duration = Duration::from_millis(20);

/// The account and the agent every message goes to; the account's API key.
pub async fn seed(db_url: &str, shared_domain: &str, agent: &str) -> anyhow::Result<String> {
    let store = SqlStore::open(db_url, 1).await?;
    let (account, key) = service::bootstrap_account(&store, "bench@example.org").await?;
    service::create_agent(&store, &account.id, agent, "Bench", shared_domain).await?;
    store.close().await;
    Ok(key)
}

async fn pool(db_url: &str) -> anyhow::Result<sqlx::SqlitePool> {
    Ok(sqlx::SqlitePool::connect(db_url).await?)
}

/// A pool on either backend, for the counts the benchmarks take of SQLite and PostgreSQL.
async fn any_pool(db_url: &str) -> anyhow::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new().max_connections(1).connect(db_url).await?)
}

/// One integer of each query (`SELECT COUNT(*) …`), on either backend.
pub async fn counts(db_url: &str, queries: &[&str]) -> anyhow::Result<Vec<i64>> {
    let pool = any_pool(db_url).await?;
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        out.push(sqlx::query_scalar::<_, i64>(q).fetch_one(&pool).await?);
    }
    pool.close().await;
    Ok(out)
}

/// The stored `authentication` verdict of every message (JSON, `None` when unsigned).
pub async fn authentications(db_url: &str) -> anyhow::Result<Vec<Option<String>>> {
    let pool = any_pool(db_url).await?;
    let rows = sqlx::query_scalar("SELECT authentication FROM messages").fetch_all(&pool).await?;
    pool.close().await;
    Ok(rows)
}

/// Messages stored so far.
pub async fn stored(db_url: &str) -> anyhow::Result<i64> {
    let pool = any_pool(db_url).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&pool).await?;
    pool.close().await;
    Ok(n)
}

/// Waits until `want` messages are stored (polling every 50 ms, as the queue is); returns
/// the count, which may exceed `want` if something was stored twice.
pub async fn wait_stored(db_url: &str, want: i64, limit: Duration) -> anyhow::Result<i64> {
    let pool = any_pool(db_url).await?;
    let deadline = Instant::now() + limit;
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&pool).await?;
        if n >= want || Instant::now() > deadline {
            pool.close().await;
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn micros_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Sends one 1 KB probe; returns its Message-ID and the time the final dot was written.
async fn send_probe(postfix: &PostfixInstance, n: u32, token: &str) -> anyhow::Result<(String, i64)> {
    let (id, t0, _) = send_probe_at(postfix, n, token).await?;
    Ok((id, t0))
}

/// [`send_probe`], also with the monotonic time the final dot was written. The subject is
/// `probe <n> <token>`.
pub(crate) async fn send_probe_at(
    postfix: &PostfixInstance,
    n: u32,
    token: &str,
) -> anyhow::Result<(String, i64, Instant)> {
    send_smtp(postfix.smtp_addr(), &format!("probe {n} {token}"), &format!("probe-{n}-{token}")).await
}

/// One 1 KB message to the bench agent over SMTP (one connection, as a sender on the
/// internet would): returns its Message-ID (`<local>@` the sender domain) and the wall-clock
/// (µs) and monotonic times right after the final dot was written.
pub(crate) async fn send_smtp(
    addr: SocketAddr,
    subject: &str,
    local: &str,
) -> anyhow::Result<(String, i64, Instant)> {
    let body = "x".repeat(76) + "\r\n";
    let message = sample_message(crate::AGENT, subject, local, &body.repeat(10));
    let id = format!("{local}@{SENDER_DOMAIN}");
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, "220").await?;
    w.write_all(format!("EHLO mail.{SENDER_DOMAIN}\r\n").as_bytes()).await?;
    expect(&mut r, "250").await?;
    w.write_all(format!("MAIL FROM:<alice@{SENDER_DOMAIN}>\r\n").as_bytes()).await?;
    expect(&mut r, "250").await?;
    w.write_all(format!("RCPT TO:<{}>\r\n", crate::AGENT).as_bytes()).await?;
    expect(&mut r, "250").await?;
    w.write_all(b"DATA\r\n").await?;
    expect(&mut r, "354").await?;
    w.write_all(message.as_bytes()).await?;
    w.write_all(b".\r\n").await?;
    w.flush().await?;
    let (t0, at) = (micros_now(), Instant::now());
    expect(&mut r, "250").await?;
    w.write_all(b"QUIT\r\n").await?;
    Ok((id, t0, at))
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, code: &str) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        anyhow::ensure!(r.read_line(&mut line).await? > 0, "connection closed, wanted {code}");
        anyhow::ensure!(line.starts_with(code), "wanted {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

/// Latencies of the probes, once all are stored.
async fn measure(db_url: &str, sent: &[(String, i64)]) -> anyhow::Result<Latency> {
    let pool = pool(db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut millis = Vec::with_capacity(sent.len());
    for (id, t0) in sent {
        loop {
            let row: Option<i64> =
                sqlx::query_scalar("SELECT created_at FROM messages WHERE rfc_message_id = ?")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await?;
            if let Some(stored) = row {
                millis.push((stored - t0) as f64 / 1000.0);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "probe {id} was never stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    pool.close().await;
    Ok(Latency::from_samples(millis))
}

/// `count` probes one after another on an otherwise idle system.
pub async fn idle(postfix: &PostfixInstance, db_url: &str, count: u32) -> anyhow::Result<Latency> {
    postfix.wait_queue_empty(Duration::from_secs(120)).await?;
    let token = unique_token()?;
    let mut sent = Vec::new();
    for n in 0..count {
        sent.push(send_probe(postfix, n, &token).await?);
        tokio::time::sleep(PROBE_GAP).await;
    }
    measure(db_url, &sent).await
}

/// Probes every [`PROBE_GAP`] for as long as the load generator `start_load` runs.
pub async fn under_load(
    postfix: &PostfixInstance,
    db_url: &str,
    start_load: impl FnOnce() -> anyhow::Result<Child>,
) -> anyhow::Result<Latency> {
    postfix.wait_queue_empty(Duration::from_secs(120)).await?;
    let token = unique_token()?;
    let mut load = start_load()?;
    let mut sent = Vec::new();
    // At least one probe, however quickly the load finishes.
    for n in 0.. {
        sent.push(send_probe(postfix, n, &token).await?);
        if load.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(PROBE_GAP).await;
    }
    postfix.wait_queue_empty(Duration::from_secs(600)).await?;
    measure(db_url, &sent).await
}
