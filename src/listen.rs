//! `postagent listen`: an agent without a public URL follows its inbox over the WebSocket
//! stream. One line per message (or the whole envelope with `--json`), or each envelope
//! POSTed to a local URL with `--forward`. Reconnects with backoff (1 s doubling to 30 s,
//! reset by any frame) on network errors and transient closes, like the e2a SDK's
//! `listen()`; stops on 1000, on 4000 `replaced` and on handshake refusals (401/403/404).
//! Events are delivered at least once: a reconnect re-sends unread mail, so lines are
//! deduplicated by event id.

use futures_util::{SinkExt, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{
    self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};

#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    /// The agent's address.
    #[arg(long)]
    pub agent: String,
    /// Print each event's whole JSON envelope instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// POST each envelope (unchanged) to this URL, e.g. http://127.0.0.1:3000/inbox.
    #[arg(long)]
    pub forward: Option<String>,
    /// The postagent API base URL (default: the configured public_url).
    #[arg(long, env = "E2A_API_URL")]
    pub url: Option<String>,
    /// An API key for the agent (account- or agent-scoped).
    #[arg(long, env = "E2A_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

/// How a connection ended.
enum Ended {
    /// Stop: with this error, or cleanly.
    Stop(Option<String>),
    /// Reconnect; `progress` when a frame arrived (the backoff restarts).
    Retry { reason: String, progress: bool },
}

/// Remembers recent event ids to drop redeliveries.
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    const KEEP: usize = 4096;

    fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

pub async fn run(args: ListenArgs, default_base: String) -> anyhow::Result<()> {
    // rustls needs a process-wide crypto provider for wss://; ring, as everywhere else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = args.url.clone().unwrap_or(default_base);
    let ws_url = ws_url(&base, &args.agent)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut seen = Seen { order: VecDeque::new(), set: HashSet::new() };
    let mut backoff = Duration::from_secs(1);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let ended = tokio::select! {
            _ = &mut stop => return Ok(()),
            e = connect_once(&ws_url, &args, &http, &mut seen) => e,
        };
        match ended {
            Ended::Stop(None) => return Ok(()),
            Ended::Stop(Some(e)) => anyhow::bail!(e),
            Ended::Retry { reason, progress } => {
                if progress {
                    backoff = Duration::from_secs(1);
                }
                eprintln!("postagent listen: {reason}; reconnecting in {}s", backoff.as_secs());
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// `ws(s)://HOST/v1/agents/<percent-encoded email>/ws` from the API base URL.
pub fn ws_url(base: &str, agent: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        anyhow::bail!("the API URL must start with http:// or https:// (got {base:?})");
    };
    let quoted: String = agent
        .trim()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{rest}/v1/agents/{quoted}/ws"))
}

async fn connect_once(url: &str, args: &ListenArgs, http: &reqwest::Client, seen: &mut Seen) -> Ended {
    let mut req = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Stop(Some(format!("bad URL {url}: {e}"))),
    };
    match format!("Bearer {}", args.api_key).parse() {
        Ok(v) => {
            req.headers_mut().insert("authorization", v);
        }
        Err(_) => return Ended::Stop(Some("the API key is not a valid header value".into())),
    }
    let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(c) => c,
        Err(tungstenite::Error::Http(res)) => {
            let status = res.status();
            let body =
                res.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let why = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.to_string());
            if status.is_server_error() {
                return Ended::Retry { reason: format!("server answered {status}: {why}"), progress: false };
            }
            return Ended::Stop(Some(format!("refused ({status}): {why}")));
        }
        Err(e) => return Ended::Retry { reason: format!("cannot connect: {e}"), progress: false },
    };
    eprintln!("postagent listen: connected to {url}");
    let mut progress = false;
    while let Some(frame) = ws.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                progress = true;
                handle(text.as_str(), args, http, seen).await;
            }
            Ok(Message::Ping(p)) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Ok(Message::Close(frame)) => {
                let (code, reason) =
                    frame.map_or((CloseCode::Status, String::new()), |f| (f.code, f.reason.to_string()));
                return match u16::from(code) {
                    1000 => Ended::Stop(None),
                    4000 => Ended::Stop(Some("replaced: another connection for this agent took over".into())),
                    1008 => Ended::Stop(Some(format!("closed by policy: {reason}"))),
                    c @ 4001..=4999 => Ended::Stop(Some(format!("closed ({c}): {reason}"))),
                    c => Ended::Retry { reason: format!("closed ({c} {reason})"), progress },
                };
            }
            Ok(_) => progress = true,
            Err(e) => return Ended::Retry { reason: format!("connection lost: {e}"), progress },
        }
    }
    Ended::Retry { reason: "connection closed".into(), progress }
}

async fn handle(text: &str, args: &ListenArgs, http: &reqwest::Client, seen: &mut Seen) {
    let Ok(event) = serde_json::from_str::<serde_json::Value>(text) else {
        eprintln!("postagent listen: skipping a frame that is not JSON");
        return;
    };
    let id = event["id"].as_str().unwrap_or_default();
    if !seen.first_time(id) {
        return;
    }
    if let Some(target) = &args.forward {
        let sent = http
            .post(target)
            .header("content-type", "application/json")
            .header("x-e2a-event-type", event["type"].as_str().unwrap_or(""))
            .body(text.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!("postagent listen: {target} answered {} for {id}", r.status()),
            Err(e) => eprintln!("postagent listen: cannot forward {id} to {target}: {e}"),
        }
        return;
    }
    let line = if args.json { text.to_owned() } else { summary(&event) };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `2026-12-02T10:00:00Z email.received msg_… from=alice@example.org verified=example.org "Subject"`
pub fn summary(event: &serde_json::Value) -> String {
    let d = &event["data"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    format!(
        "{} {} {} from={} verified={} {:?}",
        s(&event["created_at"]),
        s(&event["type"]),
        s(&d["message_id"]),
        s(&d["header_from"]),
        s(&d["verified_domain"]),
        d["subject"].as_str().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080/", "a+b@x.test").expect("url"),
            "ws://127.0.0.1:8080/v1/agents/a%2Bb%40x.test/ws"
        );
        assert_eq!(
            ws_url("https://api.example.org", "a@x.test").expect("url"),
            "wss://api.example.org/v1/agents/a%40x.test/ws"
        );
        assert!(ws_url("ftp://x", "a@x.test").is_err());
    }

    #[test]
    fn redeliveries_are_dropped() {
        let mut seen = Seen { order: VecDeque::new(), set: HashSet::new() };
        assert!(seen.first_time("evt_1"));
        assert!(!seen.first_time("evt_1"));
        for i in 0..Seen::KEEP + 1 {
            seen.first_time(&format!("x{i}"));
        }
        assert!(seen.first_time("evt_1"), "old ids are forgotten, memory stays bounded");
    }
}
