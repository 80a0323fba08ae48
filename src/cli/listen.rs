//! `postagent listen`: an agent without a public URL follows its inbox over the WebSocket
//! stream. Each message is printed (a summary line, the full message with `--json`, its text
//! with `--text`), POSTed to a local URL with `--forward`, or answered by a model through an
//! OpenAI Responses endpoint (the bridge, [`super::bridge`]). `--once` makes it the blocking
//! wait of a script: the first (matching) message ends it, `--until` bounds the wait (exit 6).
//!
//! Reconnects with backoff (1 s doubling to 30 s, reset by any frame) on network errors and
//! transient closes, like the e2a SDK's `listen()`. Events are delivered at least once (a
//! reconnect re-sends unread mail), so they are deduplicated by event id.

use super::bridge::{Answered, Bridge, refused};
use super::http::{refusal, seg};
use super::output::{self, line, s};
use super::{CliError, Exit, Outcome, Session};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{
    self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};

#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    /// POST each message (the full message as JSON) to this URL. A URL whose path ends in
    /// /v1/responses (or any URL with --responses) is an OpenAI Responses endpoint instead:
    /// each message is answered with the model's output, as a reply in its conversation.
    #[arg(long, value_name = "URL")]
    pub forward: Option<String>,
    /// Bearer token sent to the --forward URL [env: E2A_FORWARD_TOKEN, which keeps it out of
    /// the process list].
    #[arg(long, value_name = "TOKEN")]
    pub forward_token: Option<String>,
    /// Treat the --forward URL as an OpenAI Responses endpoint whatever its path.
    #[arg(long, requires = "forward")]
    pub responses: bool,
    /// The model named in Responses requests (default: what e2a's CLI sends, for OpenClaw).
    #[arg(long, default_value = DEFAULT_MODEL, requires = "forward")]
    pub model: String,
    /// More instructions for the model, from a file (added to the standing ones).
    #[arg(long, value_name = "FILE", requires = "forward")]
    pub instructions_file: Option<PathBuf>,
    /// Let the model answer mail whose sender DMARC did not verify (the reply goes to whoever
    /// the From header names, so by default such mail is not answered).
    #[arg(long, requires = "forward")]
    pub answer_unverified: bool,
    /// Print or forward each event's envelope (what a webhook receives) instead of the full
    /// message; the message is not fetched, so it stays unread.
    #[arg(long, conflicts_with_all = ["responses", "text", "pattern"])]
    pub envelope: bool,
    /// Only messages in this conversation.
    #[arg(long, alias = "conversation-id", value_name = "ID")]
    pub conversation: Option<String>,
    /// Only messages whose sender, subject or text match this regular expression (each
    /// message tested is fetched, so it becomes read).
    #[arg(long = "match", value_name = "REGEX")]
    pub pattern: Option<String>,
    /// Stop after the first (matching) message: exit 0, or the outcome of its forward.
    #[arg(long)]
    pub once: bool,
    /// With --once: stop waiting at this RFC 3339 time, or after this long (`90s`, `5m`);
    /// prints TIMEOUT and exits 6.
    #[arg(long, requires = "once", value_name = "WHEN")]
    pub until: Option<String>,
    /// With --once: print only the message's text.
    #[arg(long, requires = "once")]
    pub text: bool,
}

/// The model a Responses request names unless told otherwise: what e2a's CLI sends.
const DEFAULT_MODEL: &str = "openclaw";
/// Longest wait for the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence on the stream before it is taken for dead (the server pings every 30 s
/// by default), so a connection a NAT dropped without a word is replaced.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(90);
/// Tries of a POST to the --forward URL that failed for a transient reason.
const FORWARD_ATTEMPTS: u32 = 3;

/// How a connection ended.
enum Ended {
    /// Stop with this outcome.
    Done(Outcome),
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

    fn new() -> Self {
        Seen { order: VecDeque::new(), set: HashSet::new() }
    }

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

/// Longest pattern accepted (the regex engine bounds its own work by the input's length).
const MAX_PATTERN: usize = 1000;

struct Listener {
    session: Session,
    args: ListenArgs,
    agent: String,
    pattern: Option<regex_lite::Regex>,
    bridge: Option<Bridge>,
    token: Option<String>,
    json: bool,
    seen: Seen,
    /// Whether a connection was ever made, and why the last one failed: a deadline that
    /// passes without either is a dead server, not a quiet inbox.
    connected: bool,
    last_error: Option<String>,
}

pub async fn run(session: Session, args: ListenArgs) -> Outcome {
    let agent = session.agent().await?;
    let deadline = args.until.as_deref().map(deadline).transpose()?;
    let pattern = match &args.pattern {
        Some(p) if p.len() > MAX_PATTERN => {
            return Err(CliError::usage(format!("--match is longer than {MAX_PATTERN} characters")));
        }
        Some(p) => Some(regex_lite::Regex::new(p).map_err(|e| CliError::usage(format!("--match: {e}")))?),
        None => None,
    };
    let responses = args.forward.as_deref().is_some_and(|url| args.responses || is_responses(url));
    if responses && args.envelope {
        return Err(CliError::usage(
            "--envelope cannot go to a Responses endpoint: the model needs the message",
        ));
    }
    if !responses
        && (args.instructions_file.is_some() || args.answer_unverified || args.model != DEFAULT_MODEL)
    {
        return Err(CliError::usage(
            "--model, --instructions-file and --answer-unverified are for a Responses endpoint \
             (a --forward URL ending in /v1/responses, or --responses)",
        ));
    }
    let token = args
        .forward_token
        .clone()
        .or_else(|| std::env::var("E2A_FORWARD_TOKEN").ok().filter(|t| !t.is_empty()));
    let bridge = match &args.forward {
        Some(url) if responses => {
            let extra = match &args.instructions_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", f.display())))?,
                ),
                None => None,
            };
            Some(Bridge::new(url, token.clone(), args.model.clone(), extra, args.answer_unverified)?)
        }
        _ => None,
    };
    let ws_url = ws_url(session.api.base(), &agent)?;
    let json = session.out.json;
    let mut me = Listener {
        session,
        args,
        agent,
        pattern,
        bridge,
        token,
        json,
        seen: Seen::new(),
        connected: false,
        last_error: None,
    };
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let expired = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    eprintln!("postagent listen: listening for mail to {}", me.agent);
    let mut backoff = Duration::from_secs(1);
    loop {
        let ended = tokio::select! {
            _ = &mut stop => return Ok(Exit::Ok),
            () = &mut expired => return me.expired(),
            e = me.connect_once(&ws_url) => e,
        };
        match ended {
            Ended::Done(outcome) => return outcome,
            Ended::Retry { reason, progress } => {
                me.last_error = Some(reason.clone());
                if progress {
                    backoff = Duration::from_secs(1);
                }
                eprintln!("postagent listen: {reason}; reconnecting in {}s", backoff.as_secs());
                tokio::select! {
                    _ = &mut stop => return Ok(Exit::Ok),
                    () = &mut expired => return me.expired(),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

impl Listener {
    /// The `--until` deadline passed: TIMEOUT (exit 6) when the stream was followed and
    /// nothing matched; exit 1 when the server was never reached.
    fn expired(&self) -> Outcome {
        if !self.connected {
            let why = self.last_error.clone().unwrap_or_else(|| "no connection".into());
            return Err(CliError::new(
                Exit::Error,
                format!("the deadline passed without reaching the server: {why}"),
            ));
        }
        output::line("TIMEOUT");
        Ok(Exit::Timeout)
    }
}

/// `--until`: an RFC 3339 time, or a duration from now.
fn deadline(v: &str) -> Result<tokio::time::Instant, CliError> {
    let now = tokio::time::Instant::now();
    let far = |d: Duration| {
        now.checked_add(d).ok_or_else(|| CliError::usage(format!("--until {v:?} is too far away")))
    };
    if let Some(d) = postagent_core::config::parse_duration(v) {
        return far(d);
    }
    let at =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(|_| {
            CliError::usage(format!("--until {v:?} is neither an RFC 3339 time nor a duration like 90s"))
        })?;
    let left = at - time::OffsetDateTime::now_utc();
    far(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// e2a's rule: a --forward URL whose path ends in `/v1/responses` is a Responses endpoint.
fn is_responses(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.path().trim_end_matches('/').ends_with("/v1/responses"))
}

/// `ws(s)://HOST/v1/agents/<percent-encoded email>/ws` from the API base URL.
pub fn ws_url(base: &str, agent: &str) -> Result<String, CliError> {
    let base = base.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        return Err(CliError::usage(format!(
            "the API URL must start with http:// or https:// (got {base:?})"
        )));
    };
    Ok(format!("{rest}/v1/agents/{}/ws", seg(agent)))
}

impl Listener {
    async fn connect_once(&mut self, url: &str) -> Ended {
        let mut req = match url.into_client_request() {
            Ok(r) => r,
            Err(e) => return Ended::Done(Err(CliError::usage(format!("bad URL {url}: {e}")))),
        };
        match format!("Bearer {}", self.session.api.key()).parse() {
            Ok(v) => {
                req.headers_mut().insert("authorization", v);
            }
            Err(_) => return Ended::Done(Err(CliError::usage("the API key is not a valid header value"))),
        }
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(req)).await;
        let Ok(handshake) = handshake else {
            return Ended::Retry { reason: "the handshake timed out".into(), progress: false };
        };
        let (mut ws, _) = match handshake {
            Ok(c) => c,
            Err(tungstenite::Error::Http(res)) => {
                let status = res.status();
                let body: serde_json::Value =
                    res.body().as_ref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
                if status.is_server_error() {
                    return Ended::Retry { reason: format!("server answered {status}"), progress: false };
                }
                let mut e = refusal(status, &body);
                e.message = format!("refused ({status}): {}", e.message);
                return Ended::Done(Err(e));
            }
            Err(e) => return Ended::Retry { reason: format!("cannot connect: {e}"), progress: false },
        };
        eprintln!("postagent listen: connected to {url}");
        self.connected = true;
        let mut progress = false;
        loop {
            let Ok(next) = tokio::time::timeout(SILENCE_TIMEOUT, ws.next()).await else {
                return Ended::Retry {
                    reason: format!("no frame for {}s", SILENCE_TIMEOUT.as_secs()),
                    progress,
                };
            };
            let Some(frame) = next else { break };
            match frame {
                Ok(Message::Text(text)) => {
                    progress = true;
                    if let Some(outcome) = self.handle(text.as_str()).await {
                        let _ = ws.close(None).await;
                        return Ended::Done(outcome);
                    }
                }
                Ok(Message::Ping(p)) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) =
                        frame.map_or((CloseCode::Status, String::new()), |f| (f.code, f.reason.to_string()));
                    let stop = |exit, why: String| Ended::Done(Err(CliError::new(exit, why)));
                    return match u16::from(code) {
                        // The stream ended for good: a supervisor should restart a listener.
                        1000 => stop(Exit::Error, format!("the server closed the stream ({reason})")),
                        4000 => {
                            stop(Exit::Request, "replaced: another listener for this agent took over".into())
                        }
                        1008 => stop(Exit::Auth, format!("closed by policy: {reason}")),
                        c @ 4001..=4999 => stop(Exit::Request, format!("closed ({c}): {reason}")),
                        c => Ended::Retry { reason: format!("closed ({c} {reason})"), progress },
                    };
                }
                Ok(_) => progress = true,
                Err(e) => return Ended::Retry { reason: format!("connection lost: {e}"), progress },
            }
        }
        Ended::Retry { reason: "connection closed".into(), progress }
    }

    /// Handles one frame; `Some` when the listener is done (`--once`).
    async fn handle(&mut self, text: &str) -> Option<Outcome> {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(text) else {
            eprintln!("postagent listen: skipping a frame that is not JSON");
            return None;
        };
        let id = event["id"].as_str().unwrap_or_default();
        if !self.seen.first_time(id) {
            return None;
        }
        if event["type"] != "email.received" {
            return None;
        }
        let data = &event["data"];
        if let Some(want) = &self.args.conversation
            && data["conversation_id"].as_str() != Some(want.as_str())
        {
            return None;
        }
        // A summary line needs only the event; fetching the message would mark it read.
        let fetch = self.pattern.is_some() || self.args.text || self.json || self.args.forward.is_some();
        let outcome = if self.args.envelope || !fetch {
            self.envelope(text, &event).await
        } else {
            match self.message(data).await {
                Ok(Some(m)) => self.deliver(&event, &m).await,
                Ok(None) => return None,
                Err(e) => Err(e),
            }
        };
        match outcome {
            _ if self.args.once => Some(outcome),
            Ok(_) => None,
            Err(e) => {
                eprintln!("postagent listen: {e}");
                None
            }
        }
    }

    /// The full message, when it passes `--match`.
    async fn message(&self, data: &serde_json::Value) -> Result<Option<serde_json::Value>, CliError> {
        let id = s(&data["message_id"]);
        let m =
            self.session.api.get(format!("/v1/agents/{}/messages/{}", seg(&self.agent), seg(&id))).await?;
        if let Some(p) = &self.pattern {
            let haystack = format!(
                "From: {}\nSubject: {}\n\n{}",
                s(&m["header_from"]),
                s(&m["subject"]),
                m["parsed"]["text"].as_str().unwrap_or_default()
            );
            if !p.is_match(&haystack) {
                return Ok(None);
            }
        }
        Ok(Some(m))
    }

    /// `--envelope` (or a plain summary line): the event as it came.
    async fn envelope(&self, text: &str, event: &serde_json::Value) -> Outcome {
        if let Some(target) = &self.args.forward {
            return self.post(target, event, text.to_owned()).await;
        }
        if self.json {
            line(text)
        } else {
            line(&summary(event))
        }
        Ok(Exit::Ok)
    }

    /// Prints, forwards or answers one message.
    async fn deliver(&self, event: &serde_json::Value, m: &serde_json::Value) -> Outcome {
        let id = s(&m["id"]);
        if let Some(bridge) = &self.bridge {
            return match bridge.answer(&self.session, &self.agent, m).await {
                Ok(Answered::Replied(r)) => {
                    eprintln!(
                        "postagent listen: answered {id} with {} ({})",
                        s(&r["message_id"]),
                        s(&r["status"])
                    );
                    Ok(if r["status"] == "pending_review" { Exit::Held } else { Exit::Ok })
                }
                Ok(Answered::Skipped(why)) => {
                    eprintln!("postagent listen: {why}");
                    Ok(Exit::Ok)
                }
                Err(e) if e.api.is_some() => Err(CliError { message: refused(&e), ..e }),
                Err(e) => Err(e),
            };
        }
        if let Some(target) = &self.args.forward {
            return self.post(target, event, m.to_string()).await;
        }
        if self.args.text {
            self.session.out.text(m["parsed"]["text"].as_str().unwrap_or_default().trim_end());
        } else if self.json {
            line(&m.to_string());
        } else {
            line(&output::clean(summary(event), true));
        }
        Ok(Exit::Ok)
    }

    /// POSTs `body` to the `--forward` URL, trying again (1 s, 2 s) when the local service
    /// is down, answers 5xx or 429: the message was fetched, and so marked read.
    async fn post(&self, target: &str, event: &serde_json::Value, body: String) -> Outcome {
        let id = s(&event["data"]["message_id"]);
        let note = |e: &CliError| eprintln!("postagent listen: {}; trying again", e.message);
        super::http::retrying(FORWARD_ATTEMPTS, Duration::from_secs(1), note, || async {
            let mut req = self
                .session
                .api
                .http()
                .post(target)
                .header("content-type", "application/json")
                .header("x-e2a-event-type", event["type"].as_str().unwrap_or(""))
                .header("x-e2a-event-id", event["id"].as_str().unwrap_or(""))
                .body(body.clone());
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    eprintln!("postagent listen: forwarded {id} to {target}");
                    Ok(Exit::Ok)
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let e = CliError::new(
                        super::http::class(status, ""),
                        format!("{target} answered {status} for {id}"),
                    );
                    Err((e, None))
                }
                Err(e) => Err((
                    CliError::new(
                        Exit::Error,
                        format!("cannot forward {id} to {target}: {}", e.without_url()),
                    ),
                    None,
                )),
            }
        })
        .await
    }
}

/// `2026-12-02T10:00:00Z email.received msg_… from=alice@example.org verified=example.org "Subject"`
pub fn summary(event: &serde_json::Value) -> String {
    let d = &event["data"];
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
        let mut seen = Seen::new();
        assert!(seen.first_time("evt_1"));
        assert!(!seen.first_time("evt_1"));
        for i in 0..Seen::KEEP + 1 {
            seen.first_time(&format!("x{i}"));
        }
        assert!(seen.first_time("evt_1"), "old ids are forgotten, memory stays bounded");
    }

    #[test]
    fn responses_urls_and_deadlines() {
        assert!(is_responses("http://127.0.0.1:18789/v1/responses"));
        assert!(is_responses("https://api.openai.com/v1/responses/"));
        assert!(!is_responses("http://127.0.0.1:3000/inbound"));
        assert!(!is_responses("http://x/v1/responses-not?u=/v1/responses"));
        let now = tokio::time::Instant::now();
        assert!(deadline("90s").expect("duration") >= now + Duration::from_secs(89));
        assert!(deadline("2000-01-01T00:00:00Z").expect("past") <= tokio::time::Instant::now());
        assert_eq!(deadline("tomorrow").expect_err("bad").exit, Exit::Usage);
        assert_eq!(
            deadline("99999999999999d").map_err(|e| e.exit).err(),
            Some(Exit::Usage),
            "no overflow panic"
        );
    }
}
