//! The socketmap's lookup latency on its own, for bench/inbound's report.

use crate::report::{Latency, Lookups};
use crate::{AGENT, AGENT_DOMAIN};
use postagent_lab::PostfixInstance;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POSTMAP: &str = "/usr/sbin/postmap";

/// `n` lookups each of: `postmap -q` (a process per lookup), and over one kept connection a
/// repeated key (the cache) and distinct keys (each one asks the store).
pub async fn lookups(
    postfix: &PostfixInstance,
    socketmap: SocketAddr,
    n: u32,
) -> anyhow::Result<Vec<Lookups>> {
    let table = format!("socketmap:inet:{socketmap}:recipients");
    let config = postfix.config_dir().to_path_buf();
    let mut spawned = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let out = Command::new(POSTMAP).arg("-c").arg(&config).args(["-q", AGENT, &table]).output()?;
        spawned.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(out.status.success(), "postmap -q {AGENT} {table} found nothing");
    }
    let mut conn = tokio::net::TcpStream::connect(socketmap).await?;
    conn.set_nodelay(true)?;
    let mut ask = async |key: &str| -> anyhow::Result<f64> {
        let request = format!("recipients {key}");
        let t0 = Instant::now();
        conn.write_all(format!("{}:{request},", request.len()).as_bytes()).await?;
        let mut buf = [0u8; 512];
        let got = conn.read(&mut buf).await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let reply = String::from_utf8_lossy(&buf[..got]);
        anyhow::ensure!(reply.contains(":OK "), "{key}: {reply}");
        Ok(ms)
    };
    let mut cached = Vec::new();
    let mut fresh = Vec::new();
    for i in 0..n * 10 {
        cached.push(ask(AGENT).await?);
        // An extension the cache has not seen: the store is asked (the whole address, then
        // the agent's).
        fresh.push(ask(&format!("bot+{i}@{AGENT_DOMAIN}")).await?);
    }
    Ok(vec![
        Lookups { what: "`postmap -q` (a new process each)".into(), latency: Latency::from_samples(spawned) },
        Lookups { what: "kept connection, answer cached".into(), latency: Latency::from_samples(cached) },
        Lookups {
            what: "kept connection, new key (two store lookups, SQLite)".into(),
            latency: Latency::from_samples(fresh),
        },
    ])
}
