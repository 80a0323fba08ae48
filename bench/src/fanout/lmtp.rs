//! Messages straight to postagent's LMTP port (no Postfix), for the backlog and the WebSocket
//! pushes, and webhook subscriptions over the API.

#![allow(unused_imports)]
use super::*;

pub(crate) async fn subscribe(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    url: &str,
) -> anyhow::Result<String> {
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
pub(super) struct Lmtp {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Lmtp {
    pub(super) async fn connect(addr: SocketAddr) -> anyhow::Result<Lmtp> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Lmtp { r: BufReader::new(r), w };
        c.expect("220").await?;
        c.w.write_all(b"LHLO bench.test\r\n").await?;
        c.expect("250").await?;
        Ok(c)
    }

    pub(super) async fn expect(&mut self, code: &str) -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            anyhow::ensure!(self.r.read_line(&mut line).await? > 0, "LMTP closed, wanted {code}");
            anyhow::ensure!(line.starts_with(code), "wanted {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    /// One 1 KB message to `rcpt` (commands pipelined, as Postfix's LMTP client does);
    /// returns the time the final `.` was written, once the message is stored (250).
    pub(super) async fn deliver(&mut self, rcpt: &str, subject: &str) -> anyhow::Result<Instant> {
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
pub(super) async fn inject(lmtp: SocketAddr, sessions: u32, total: u32, tag: &str) -> anyhow::Result<()> {
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
