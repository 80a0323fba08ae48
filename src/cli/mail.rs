//! `send`, `reply`, `forward`, `messages` and `attachments`: the agent's mail. A send ends in
//! the exit code a script branches on: 0 accepted (or sent, with `--wait`), 3 held for
//! review, 7 failed.

use super::account::idempotency_key;
use super::http::{Answer, Call, seg};
use super::output::{Col, clean, list, s, when};
use super::{CliError, Exit, Outcome, Session};
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// At most this many files per message (the API's limit).
const MAX_ATTACHMENTS: usize = 10;
/// Largest attachment read from disk, and all of them together (the API takes 40 MiB of
/// request in all, base64 included).
const MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;
const MAX_ATTACHMENTS_TOTAL: u64 = 28 * 1024 * 1024;
/// Largest body read from a file or stdin (the API's limit per part).
const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Largest attachment downloaded.
const MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

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
    /// Attach a file (repeatable; at most 10).
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
    /// The message forwarded (`msg_…`).
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
    let agent = session.agent()?;
    let mut body = json!({"to": a.to, "subject": a.subject});
    fill(&mut body, &a.body, &a.common, true)?;
    submit(session, &a.common, format!("/v1/agents/{}/messages", seg(&agent)), body, &agent).await
}

pub async fn reply(session: &Session, a: ReplyArgs) -> Outcome {
    let agent = session.agent()?;
    let mut body = json!({});
    if a.reply_all {
        body["reply_all"] = true.into();
    }
    fill(&mut body, &a.body, &a.common, true)?;
    let path = format!("/v1/agents/{}/messages/{}/reply", seg(&agent), seg(&a.id));
    submit(session, &a.common, path, body, &agent).await
}

pub async fn forward(session: &Session, a: ForwardArgs) -> Outcome {
    let agent = session.agent()?;
    let mut body = json!({"to": a.to});
    fill(&mut body, &a.body, &a.common, false)?;
    if body.get("text").is_none() {
        body["text"] = "".into();
    }
    let path = format!("/v1/agents/{}/messages/{}/forward", seg(&agent), seg(&a.id));
    submit(session, &a.common, path, body, &agent).await
}

/// Adds the body parts, attachments and common fields to a request.
fn fill(req: &mut Value, b: &Body, c: &Common, body_required: bool) -> Result<(), CliError> {
    fill_body(req, b)?;
    if body_required && req.get("text").is_none() {
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
    let read = if path == Path::new("-") {
        std::io::stdin().lock().take(MAX_BODY_BYTES + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_BODY_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_BODY_BYTES {
        return Err(CliError::usage(format!("{} is larger than {MAX_BODY_BYTES} bytes", path.display())));
    }
    String::from_utf8(bytes).map_err(|_| CliError::usage(format!("{} is not UTF-8 text", path.display())))
}

fn read_attachments(paths: &[PathBuf]) -> Result<Vec<Value>, CliError> {
    if paths.len() > MAX_ATTACHMENTS {
        return Err(CliError::usage(format!("at most {MAX_ATTACHMENTS} attachments (got {})", paths.len())));
    }
    let mut total = 0;
    let mut out = Vec::new();
    for p in paths {
        let bad = |e: std::io::Error| CliError::usage(format!("cannot read {}: {e}", p.display()));
        let size = std::fs::metadata(p).map_err(bad)?.len();
        total += size;
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
        // The send result says that it failed; the message says why (Postfix's reply).
        let m = session.api.get(format!("/v1/agents/{}/messages/{}", seg(agent), seg(&id))).await?;
        r["delivery_detail"] = m["delivery_detail"].clone();
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
    let deadline = Instant::now() + limit;
    let poll = async {
        loop {
            let m = session.api.get(path.clone()).await?;
            let status = m["delivery_status"].as_str().unwrap_or_default();
            let detail = m["delivery_detail"].as_str().unwrap_or_default();
            match status {
                "sent" | "delivered" | "deferred" | "bounced" | "complained" => {
                    let mut r = json!({"status": "sent", "message_id": id, "method": "smtp", "delivery_status": status});
                    if let Some(q) = queue_id(detail) {
                        r["provider_message_id"] = q.into();
                    }
                    return Ok(r);
                }
                "failed" => {
                    return Ok(json!({"status": "failed", "message_id": id, "delivery_detail": detail}));
                }
                _ if Instant::now() >= deadline => {
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

/// `250 2.0.0 Ok: queued as 4dQ1xk0sYzz9sWL` → the queue id.
fn queue_id(detail: &str) -> Option<String> {
    let rest = detail.split("queued as ").nth(1)?;
    let id: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
    (!id.is_empty()).then_some(id)
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
        println!("{line}");
    }
    Ok(exit)
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Direction {
    Inbound,
    Outbound,
    All,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ReadStatus {
    Unread,
    Read,
    All,
}

#[derive(Subcommand, Debug)]
pub enum MessagesCmd {
    /// List messages, newest first.
    List {
        /// inbound (the default), outbound or all.
        #[arg(long, value_enum)]
        direction: Option<Direction>,
        /// Only messages since this RFC 3339 time, or this long ago (`2h`, `7d`).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only this conversation.
        #[arg(long, alias = "conversation-id", value_name = "ID")]
        conversation: Option<String>,
        /// unread, read or all (inbound mail; default: the API's, unread).
        #[arg(long, value_enum)]
        read_status: Option<ReadStatus>,
        /// Only senders containing this.
        #[arg(long, value_name = "TEXT")]
        from: Option<String>,
        /// Only subjects containing this.
        #[arg(long, value_name = "TEXT")]
        subject_contains: Option<String>,
        /// Only messages with all these labels (comma-separated).
        #[arg(long, value_name = "LABELS")]
        labels: Option<String>,
        /// Oldest first.
        #[arg(long)]
        oldest_first: bool,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one message (an unread inbound message becomes read).
    Get {
        id: String,
        /// Print only the text body.
        #[arg(long, conflicts_with_all = ["raw", "html"])]
        text: bool,
        /// Print only the HTML body.
        #[arg(long, conflicts_with = "raw")]
        html: bool,
        /// Print the raw MIME message as received or sent.
        #[arg(long)]
        raw: bool,
    },
}

const MESSAGE_COLS: &[Col] = &[
    Col { head: "ID", get: |v| s(&v["id"]) },
    Col { head: "DIR", get: |v| if v["direction"] == "outbound" { "out".into() } else { "in".into() } },
    Col { head: "FROM", get: |v| s(&v["header_from"]) },
    Col { head: "TO", get: |v| list(&v["to"]) },
    Col { head: "SUBJECT", get: |v| s(&v["subject"]) },
    Col { head: "STATUS", get: status },
    Col { head: "DATE", get: |v| when(&v["created_at"]) },
];

/// Inbound: read state (and flags); outbound: the review or delivery state.
fn status(v: &Value) -> String {
    if v["direction"] == "outbound" {
        if v["review_status"] == "pending_review" {
            return "pending_review".into();
        }
        return s(&v["delivery_status"]);
    }
    let mut st = s(&v["read_status"]);
    if v["flagged"] == true {
        st.push_str(",flagged");
    }
    st
}

/// `--since` as RFC 3339: given so, or `now - duration`.
fn since(v: &str) -> Result<String, CliError> {
    if postagent_core::time::Timestamp::parse_rfc3339(v).is_some() {
        return Ok(v.to_owned());
    }
    let d = postagent_core::config::parse_duration(v).ok_or_else(|| {
        CliError::usage(format!("--since {v:?} is neither an RFC 3339 time nor a duration like 2h"))
    })?;
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Ok(postagent_core::time::Timestamp::now().plus_secs(-secs).to_rfc3339())
}

/// `spf=pass dkim=pass(example.org) dmarc=pass(p=reject)`, from the stored verdict.
pub fn verdict(auth: &Value) -> String {
    if !auth.is_object() {
        return "-".into();
    }
    let dkim: Vec<String> = auth["dkim"]
        .as_array()
        .map(|sigs| sigs.iter().map(|d| format!("{}({})", s(&d["status"]), s(&d["domain"]))).collect())
        .unwrap_or_default();
    let dkim = if dkim.is_empty() { "none".into() } else { dkim.join(",") };
    format!(
        "spf={} dkim={dkim} dmarc={}(p={})",
        s(&auth["spf"]["status"]),
        s(&auth["dmarc"]["status"]),
        s(&auth["dmarc"]["policy"])
    )
}

/// A message for people: its envelope and verdict, then the text.
pub fn show_message(session: &Session, m: &Value) {
    let out = &session.out;
    if out.json {
        return out.json_line(m);
    }
    let mut pairs =
        vec![("id", s(&m["id"])), ("direction", s(&m["direction"])), ("from", s(&m["header_from"]))];
    if m["direction"] == "inbound" {
        pairs.push(("envelope from", s(&m["envelope_from"])));
        pairs.push(("verified domain", s(&m["verified_domain"])));
        pairs.push(("authentication", verdict(&m["authentication"])));
    }
    pairs.extend([
        ("to", list(&m["to"])),
        ("cc", list(&m["cc"])),
        ("subject", s(&m["subject"])),
        ("date", s(&m["created_at"])),
        ("conversation", s(&m["conversation_id"])),
        ("labels", list(&m["labels"])),
        ("status", status(m)),
    ]);
    let hold = &m["hold_reason"];
    if hold.is_object() {
        pairs.push(("held", format!("{}: {}", s(&hold["code"]), s(&hold["summary"]))));
    }
    let files: Vec<String> = m["attachments"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    format!("[{}] {} ({} bytes)", s(&f["index"]), s(&f["filename"]), s(&f["size_bytes"]))
                })
                .collect()
        })
        .unwrap_or_default();
    if !files.is_empty() {
        pairs.push(("attachments", files.join(", ")));
    }
    out.fields(m, &pairs);
    println!();
    out.text(&body_text(m));
}

fn body_text(m: &Value) -> String {
    m["parsed"]["text"]
        .as_str()
        .or_else(|| m["body"]["text"].as_str())
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

pub async fn messages(session: &Session, cmd: MessagesCmd) -> Outcome {
    let agent = session.agent()?;
    match cmd {
        MessagesCmd::List {
            direction,
            since: since_arg,
            conversation,
            read_status,
            from,
            subject_contains,
            labels,
            oldest_first,
            limit,
        } => {
            let call = Call::new(Method::GET, format!("/v1/agents/{}/messages", seg(&agent)))
                .query_opt("direction", direction.map(|d| format!("{d:?}").to_ascii_lowercase()))
                .query_opt("read_status", read_status.map(|r| format!("{r:?}").to_ascii_lowercase()))
                .query_opt("since", since_arg.as_deref().map(since).transpose()?)
                .query_opt("conversation_id", conversation)
                .query_opt("from", from)
                .query_opt("subject_contains", subject_contains)
                .query_opt("labels", labels)
                .query_opt("sort", oldest_first.then_some("asc"));
            session.out.table(&session.api.list(call, limit).await?, MESSAGE_COLS);
        }
        MessagesCmd::Get { id, text, html, raw } => {
            let m = session.api.get(format!("/v1/agents/{}/messages/{}", seg(&agent), seg(&id))).await?;
            if raw {
                let Some(b64) = m["raw_message"].as_str() else {
                    return Err(CliError::new(
                        Exit::Request,
                        format!("{id} has no raw message (a draft held for review)"),
                    ));
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| CliError::new(Exit::Error, format!("the raw message is not base64: {e}")))?;
                use std::io::Write;
                let _ = std::io::stdout().lock().write_all(&bytes);
            } else if text {
                session.out.text(&body_text(&m));
            } else if html {
                let h =
                    m["parsed"]["html"].as_str().or_else(|| m["body"]["html"].as_str()).unwrap_or_default();
                session.out.text(h);
            } else {
                show_message(session, &m);
            }
        }
    }
    Ok(Exit::Ok)
}

#[derive(Subcommand, Debug)]
pub enum AttachmentsCmd {
    /// List a message's attachments.
    List { id: String },
    /// Save one attachment (by its index in `list`).
    Get {
        id: String,
        index: u32,
        /// Where to write it (`-`: stdout; default: its own file name, in this directory).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

const ATTACHMENT_COLS: &[Col] = &[
    Col { head: "INDEX", get: |v| s(&v["index"]) },
    Col { head: "FILENAME", get: |v| s(&v["filename"]) },
    Col { head: "TYPE", get: |v| s(&v["content_type"]) },
    Col { head: "SIZE", get: |v| s(&v["size_bytes"]) },
];

/// A file name from a message, safe to create in the current directory.
fn safe_name(name: Option<&str>, index: u32) -> PathBuf {
    let base = name.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String =
        clean(base.to_owned(), true).trim().trim_start_matches('.').chars().take(200).collect();
    if cleaned.is_empty() { PathBuf::from(format!("attachment-{index}")) } else { PathBuf::from(cleaned) }
}

pub async fn attachments(session: &Session, cmd: AttachmentsCmd) -> Outcome {
    let agent = session.agent()?;
    match cmd {
        AttachmentsCmd::List { id } => {
            let m = session.api.get(format!("/v1/agents/{}/messages/{}", seg(&agent), seg(&id))).await?;
            session.out.table(m["attachments"].as_array().map_or(&[][..], Vec::as_slice), ATTACHMENT_COLS);
        }
        AttachmentsCmd::Get { id, index, output, force } => {
            let path = format!("/v1/agents/{}/messages/{}/attachments/{index}", seg(&agent), seg(&id));
            let a = session.api.get(path).await?;
            let url = a["download_url"]
                .as_str()
                .ok_or_else(|| CliError::new(Exit::Error, "the API gave no download_url"))?;
            let bytes = session.api.download(url, MAX_DOWNLOAD_BYTES).await?;
            let target = output.unwrap_or_else(|| safe_name(a["filename"].as_str(), index));
            if target == Path::new("-") {
                use std::io::Write;
                let _ = std::io::stdout().lock().write_all(&bytes);
                return Ok(Exit::Ok);
            }
            write_new(&target, &bytes, force)?;
            let shown = json!({"path": target.display().to_string(), "size_bytes": bytes.len(),
                "filename": a["filename"], "content_type": a["content_type"]});
            session.out.fields(
                &shown,
                &[("saved", target.display().to_string()), ("bytes", bytes.len().to_string())],
            );
        }
    }
    Ok(Exit::Ok)
}

fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<(), CliError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let f = opts.open(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists { " (--force overwrites)" } else { "" };
        CliError::usage(format!("cannot write {}: {e}{hint}", path.display()))
    })?;
    let mut f = f;
    f.write_all(bytes)
        .map_err(|e| CliError::new(Exit::Error, format!("cannot write {}: {e}", path.display())))
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
    fn queue_ids_and_names() {
        assert_eq!(queue_id("250 2.0.0 Ok: queued as 4dQ1xk0sYzz9sWL").as_deref(), Some("4dQ1xk0sYzz9sWL"));
        assert_eq!(queue_id("451 try later"), None);
        assert_eq!(safe_name(Some("../../etc/passwd"), 0), PathBuf::from("passwd"));
        assert_eq!(safe_name(Some("..\\boot.ini"), 1), PathBuf::from("boot.ini"));
        assert_eq!(safe_name(Some(".bashrc"), 2), PathBuf::from("bashrc"));
        assert_eq!(safe_name(Some("a\nb.txt"), 3), PathBuf::from("a b.txt"));
        assert_eq!(safe_name(None, 4), PathBuf::from("attachment-4"));
        assert_eq!(content_type("Report.PDF"), "application/pdf");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn verdicts_in_one_line() {
        let auth = json!({"spf": {"status": "pass"}, "dkim": [{"status": "pass", "domain": "example.org"}],
            "dmarc": {"status": "pass", "policy": "reject"}});
        assert_eq!(verdict(&auth), "spf=pass dkim=pass(example.org) dmarc=pass(p=reject)");
        assert_eq!(verdict(&Value::Null), "-");
    }
}
