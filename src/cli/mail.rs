//! `send`, `reply` and `forward`: the agent's outgoing mail. A send ends in the exit code a
//! script branches on: 0 accepted (or sent, with `--wait`), 3 held for review, 7 failed.

use super::account::idempotency_key;
use super::http::{Answer, Call, seg};
use super::output::s;
use super::{CliError, Exit, Outcome, Session};
use base64::Engine as _;
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The API's own limits, checked before anything is read or uploaded.
use postagent_core::mail::outbound::{
    MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS, MAX_ATTACHMENTS_TOTAL, MAX_BODY_BYTES,
};

#[derive(Args, Debug)]
pub struct Body {
    /// The text body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the text body from a file (`-`: stdin).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// An HTML body from a file; without --body the text part is derived from it.
    #[arg(long, value_name = "FILE")]
    pub html_file: Option<PathBuf>,
    /// Attach a file (repeatable; at most 10, 10 MiB each, 25 MiB in all).
    #[arg(long = "attach", value_name = "FILE")]
    pub attach: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct Common {
    /// A Cc recipient (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub cc: Vec<String>,
    /// A Bcc recipient (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub bcc: Vec<String>,
    /// The Reply-To address.
    #[arg(long, value_name = "ADDRESS")]
    pub reply_to: Option<String>,
    /// Put the message in this conversation.
    #[arg(long, alias = "conversation", value_name = "ID")]
    pub conversation_id: Option<String>,
    /// Makes a retried command send once (default: a fresh key per run).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait until Postfix has queued the message and print its queue id (exit 7 if it fails).
    #[arg(long)]
    pub wait: bool,
    /// Longest --wait.
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    pub wait_timeout: String,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// A recipient (repeatable).
    #[arg(long, required = true, value_name = "ADDRESS")]
    pub to: Vec<String>,
    #[arg(long)]
    pub subject: String,
    #[command(flatten)]
    pub body: Body,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ReplyArgs {
    /// The message answered (`msg_…`).
    pub id: String,
    /// Also to everyone the message was addressed to.
    #[arg(long)]
    pub reply_all: bool,
    #[command(flatten)]
    pub body: Body,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// The message forwarded (`msg_…`); the text written above it is required.
    pub id: String,
    /// A recipient (repeatable).
    #[arg(long, required = true, value_name = "ADDRESS")]
    pub to: Vec<String>,
    #[command(flatten)]
    pub body: Body,
    #[command(flatten)]
    pub common: Common,
}

pub async fn send(session: &Session, a: SendArgs) -> Outcome {
    let agent = session.agent().await?;
    let mut body = json!({"to": a.to, "subject": a.subject});
    fill(&mut body, &a.body, &a.common)?;
    submit(session, &a.common, format!("/v1/agents/{}/messages", seg(&agent)), body, &agent).await
}

pub async fn reply(session: &Session, a: ReplyArgs) -> Outcome {
    let agent = session.agent().await?;
    let mut body = json!({});
    if a.reply_all {
        body["reply_all"] = true.into();
    }
    fill(&mut body, &a.body, &a.common)?;
    let path = format!("/v1/agents/{}/messages/{}/reply", seg(&agent), seg(&a.id));
    submit(session, &a.common, path, body, &agent).await
}

pub async fn forward(session: &Session, a: ForwardArgs) -> Outcome {
    let agent = session.agent().await?;
    let mut body = json!({"to": a.to});
    fill(&mut body, &a.body, &a.common)?;
    let path = format!("/v1/agents/{}/messages/{}/forward", seg(&agent), seg(&a.id));
    submit(session, &a.common, path, body, &agent).await
}

/// Adds the body parts (a text is required: the API's send, reply and forward all need
/// one), attachments and common fields to a request.
fn fill(req: &mut Value, b: &Body, c: &Common) -> Result<(), CliError> {
    fill_body(req, b)?;
    if req.get("text").is_none() {
        return Err(CliError::usage("a body is needed: --body, --body-file or --html-file"));
    }
    if !c.cc.is_empty() {
        req["cc"] = c.cc.clone().into();
    }
    if !c.bcc.is_empty() {
        req["bcc"] = c.bcc.clone().into();
    }
    if let Some(r) = &c.reply_to {
        req["reply_to"] = r.clone().into();
    }
    if let Some(id) = &c.conversation_id {
        req["conversation_id"] = id.clone().into();
    }
    Ok(())
}

/// The text (given, or derived from the HTML), the HTML and the attachments, when given.
pub fn fill_body(req: &mut Value, b: &Body) -> Result<(), CliError> {
    let html = b.html_file.as_deref().map(read_text).transpose()?;
    let text = match (&b.body, &b.body_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(read_text(f)?),
        (None, None) => html.as_deref().map(text_of_html),
    };
    if let Some(t) = text {
        req["text"] = t.into();
    }
    if let Some(h) = html {
        req["html"] = h.into();
    }
    if !b.attach.is_empty() {
        req["attachments"] = read_attachments(&b.attach)?.into();
    }
    Ok(())
}

/// A text file (or stdin for `-`), capped.
fn read_text(path: &Path) -> Result<String, CliError> {
    let mut bytes = Vec::new();
    let cap = MAX_BODY_BYTES as u64 + 1;
    let read = if path == Path::new("-") {
        std::io::stdin().lock().take(cap).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(cap).read_to_end(&mut bytes))
    };
    read.map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(CliError::usage(format!("{} is larger than {MAX_BODY_BYTES} bytes", path.display())));
    }
    String::from_utf8(bytes).map_err(|_| CliError::usage(format!("{} is not UTF-8 text", path.display())))
}

fn read_attachments(paths: &[PathBuf]) -> Result<Vec<Value>, CliError> {
    if paths.len() > MAX_ATTACHMENTS {
        return Err(CliError::usage(format!("at most {MAX_ATTACHMENTS} attachments (got {})", paths.len())));
    }
    let mut total: usize = 0;
    let mut out = Vec::new();
    for p in paths {
        let bad = |e: std::io::Error| CliError::usage(format!("cannot read {}: {e}", p.display()));
        let size = usize::try_from(std::fs::metadata(p).map_err(bad)?.len()).unwrap_or(usize::MAX);
        total = size.saturating_add(total);
        if size > MAX_ATTACHMENT_BYTES || total > MAX_ATTACHMENTS_TOTAL {
            return Err(CliError::usage(format!(
                "{} is too large: at most {MAX_ATTACHMENT_BYTES} bytes a file and {MAX_ATTACHMENTS_TOTAL} in all",
                p.display()
            )));
        }
        let bytes = std::fs::read(p).map_err(bad)?;
        let name = p.file_name().map_or_else(|| "attachment".into(), |n| n.to_string_lossy().into_owned());
        out.push(json!({
            "filename": name,
            "content_type": content_type(&name),
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        }));
    }
    Ok(out)
}

/// The media type for a file name's extension (what a mail client would label it).
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "ics" => "text/calendar",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "eml" => "message/rfc822",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// A plain-text rendering of HTML for the text part: scripts and styles dropped, blocks on
/// their own lines, tags removed, the common entities decoded.
pub fn text_of_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        if lower[i..].starts_with("<script") || lower[i..].starts_with("<style") {
            let close = if lower[i..].starts_with("<script") { "</script>" } else { "</style>" };
            i = lower[i..].find(close).map_or(html.len(), |j| i + j + close.len());
            continue;
        }
        if html[i..].starts_with('<') {
            let end = html[i..].find('>').map_or(html.len(), |j| i + j + 1);
            let tag = lower[i..end].trim_start_matches(['<', '/']);
            if ["br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"].iter().any(
                |t| tag.starts_with(t) && !tag[t.len()..].starts_with(|c: char| c.is_ascii_alphanumeric()),
            ) {
                out.push('\n');
            }
            i = end;
            continue;
        }
        let ch = html[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let lines: Vec<&str> = decoded.lines().map(str::trim).collect();
    lines.join("\n").split("\n\n\n").collect::<Vec<_>>().join("\n\n").trim().to_owned()
}

/// Posts a send, reply or forward and turns the answer into an exit code.
async fn submit(session: &Session, c: &Common, path: String, body: Value, agent: &str) -> Outcome {
    let wait_for = postagent_core::config::parse_duration(&c.wait_timeout)
        .ok_or_else(|| CliError::usage(format!("--wait-timeout {:?} is not a duration", c.wait_timeout)))?;
    let key = c.idempotency_key.clone().unwrap_or_else(idempotency_key);
    let call =
        Call::new(Method::POST, path).body(body).idempotent(key).query_opt("wait", c.wait.then_some("sent"));
    let started = Instant::now();
    let answer = if c.wait {
        progress(session, "waiting for Postfix", session.api.call(call)).await?
    } else {
        session.api.call(call).await?
    };
    let Answer { body: mut r, .. } = answer;
    let id = s(&r["message_id"]);
    if c.wait && r["status"] == "accepted" {
        // The API waits about 15 s; a busy queue takes longer, so keep asking.
        let remaining = wait_for.saturating_sub(started.elapsed());
        r = wait_queued(session, agent, &id, remaining).await?;
    }
    if r["status"] == "failed" && r.get("delivery_detail").is_none() {
        // The send result says that it failed; the message says why (Postfix's reply). The
        // outcome is known either way, so a failed look does not change the exit code.
        if let Ok(m) = session.api.get(format!("/v1/agents/{}/messages/{}", seg(agent), seg(&id))).await {
            r["delivery_detail"] = m["delivery_detail"].clone();
        }
    }
    report_send(session, &r)
}

/// Runs `fut` with a progress line ticking on a terminal.
async fn progress<T>(session: &Session, what: &str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            v = &mut fut => {
                session.out.progress_done();
                return v;
            }
            _ = tick.tick() => session.out.progress(&format!("{what}… {}s", started.elapsed().as_secs())),
        }
    }
}

/// Polls the message until Postfix took it or refused it; the send result it ended in.
async fn wait_queued(session: &Session, agent: &str, id: &str, limit: Duration) -> Result<Value, CliError> {
    let path = format!("/v1/agents/{}/messages/{}", seg(agent), seg(id));
    // A limit too far to represent is no limit.
    let deadline = Instant::now().checked_add(limit);
    let poll = async {
        loop {
            let m = session.api.get(path.clone()).await?;
            let status = m["delivery_status"].as_str().unwrap_or_default();
            let detail = m["delivery_detail"].as_str().unwrap_or_default();
            match status {
                "sent" | "delivered" | "deferred" | "bounced" | "complained" => {
                    let mut r = json!({"status": "sent", "message_id": id, "method": "smtp", "delivery_status": status});
                    if let Some(q) = postagent_delivery::submit::queue_id_of(detail) {
                        r["provider_message_id"] = q.into();
                    }
                    return Ok(r);
                }
                "failed" => {
                    return Ok(json!({"status": "failed", "message_id": id, "delivery_detail": detail}));
                }
                _ if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(CliError::new(
                        Exit::Error,
                        format!(
                            "{id} is still {status} after {}s: Postfix has not taken it yet",
                            limit.as_secs()
                        ),
                    ));
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    };
    progress(session, &format!("waiting for Postfix to queue {id}"), poll).await
}

fn report_send(session: &Session, r: &Value) -> Outcome {
    let id = s(&r["message_id"]);
    let out = &session.out;
    let (line, exit) = match r["status"].as_str().unwrap_or_default() {
        "accepted" => (format!("{} {id} (queued for Postfix)", out.green("accepted")), Exit::Ok),
        "sent" => {
            let queue = r["provider_message_id"]
                .as_str()
                .map(|q| format!(", Postfix queue id {q}"))
                .unwrap_or_default();
            (format!("{} {id}{queue}", out.green("sent")), Exit::Ok)
        }
        "review_approved" => (format!("{} {id}", out.green("approved")), Exit::Ok),
        "pending_review" => (
            format!(
                "{} {id}: held for review until {}; nothing was delivered",
                out.yellow("held"),
                s(&r["approval_expires_at"])
            ),
            Exit::Held,
        ),
        "failed" => {
            let why = r["delivery_detail"].as_str().map(|d| format!(": {d}")).unwrap_or_default();
            (format!("{} {id}{why}", out.red("failed")), Exit::SendFailed)
        }
        other => (format!("{id}: unrecognised outcome {other:?}; inspect the message"), Exit::SendFailed),
    };
    if out.json {
        out.json_line(r);
    } else {
        super::output::line(&line);
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_readable_text() {
        let html = "<html><style>p{}</style><p>Hello&nbsp;<b>Alice</b></p><p>Total: 3 &lt; 4 &amp; ok</p><script>x()</script><br>Bye";
        assert_eq!(text_of_html(html), "Hello Alice\n\nTotal: 3 < 4 & ok\n\nBye");
        assert_eq!(text_of_html("<bold>x</bold>"), "x", "only block tags break lines");
    }

    #[test]
    fn media_types() {
        assert_eq!(content_type("Report.PDF"), "application/pdf");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
