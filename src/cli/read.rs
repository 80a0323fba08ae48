//! `messages` and `attachments`: reading the agent's mail. What came from a sender is shown
//! to a person without its control characters, and an attachment is saved only under a name
//! that cannot leave the current directory or overwrite a file.

use super::http::{Call, seg};
use super::output::{self, Col, clean, list, s, when};
use super::{CliError, Exit, Outcome, Session};
use base64::Engine as _;
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Largest attachment downloaded.
const MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Longest file name written, in bytes (file systems allow 255).
const MAX_NAME_BYTES: usize = 200;

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
    super::output::line("");
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
    let agent = session.agent().await?;
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
                if output::stdout_is_terminal() {
                    // A sender's bytes never drive the terminal; a pipe gets them exactly.
                    session.out.text(&String::from_utf8_lossy(&bytes));
                } else {
                    output::bytes(&bytes);
                }
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

/// A file name from a message, safe to create in the current directory: no directory, no
/// leading dot or dash (hidden files, `-` for stdout, option look-alikes), at most
/// [`MAX_NAME_BYTES`] with its extension kept.
fn safe_name(name: Option<&str>, index: u32) -> PathBuf {
    let base = name.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned = clean(base.to_owned(), true);
    let cleaned = cleaned.trim().trim_start_matches(['.', '-']);
    if cleaned.is_empty() {
        return PathBuf::from(format!("attachment-{index}"));
    }
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 16 => (stem, format!(".{ext}")),
        _ => (cleaned, String::new()),
    };
    let mut out = String::new();
    for c in stem.chars() {
        if out.len() + c.len_utf8() + ext.len() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    PathBuf::from(out + &ext)
}

pub async fn attachments(session: &Session, cmd: AttachmentsCmd) -> Outcome {
    let agent = session.agent().await?;
    match cmd {
        AttachmentsCmd::List { id } => {
            let m = session.api.get(format!("/v1/agents/{}/messages/{}", seg(&agent), seg(&id))).await?;
            session.out.table(m["attachments"].as_array().map_or(&[][..], Vec::as_slice), ATTACHMENT_COLS);
        }
        AttachmentsCmd::Get { id, index, output: chosen, force } => {
            let path = format!("/v1/agents/{}/messages/{}/attachments/{index}", seg(&agent), seg(&id));
            let a = session.api.get(path).await?;
            let url = a["download_url"]
                .as_str()
                .ok_or_else(|| CliError::new(Exit::Error, "the API gave no download_url"))?;
            let bytes = session.api.download(url, MAX_DOWNLOAD_BYTES).await?;
            // Only the user's own `-o -` means stdout, never a sender's file name.
            if chosen.as_deref() == Some(Path::new("-")) {
                if output::stdout_is_terminal() {
                    return Err(CliError::usage(
                        "refusing to write an attachment to a terminal: redirect it or pass -o FILE",
                    ));
                }
                output::bytes(&bytes);
                return Ok(Exit::Ok);
            }
            let target = chosen.unwrap_or_else(|| safe_name(a["filename"].as_str(), index));
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
    fn attachment_names_stay_here() {
        assert_eq!(safe_name(Some("../../etc/passwd"), 0), PathBuf::from("passwd"));
        assert_eq!(safe_name(Some("..\\boot.ini"), 1), PathBuf::from("boot.ini"));
        assert_eq!(safe_name(Some(".bashrc"), 2), PathBuf::from("bashrc"));
        assert_eq!(safe_name(Some("a\nb.txt"), 3), PathBuf::from("a b.txt"));
        assert_eq!(safe_name(None, 4), PathBuf::from("attachment-4"));
        assert_eq!(
            safe_name(Some("-"), 5),
            PathBuf::from("attachment-5"),
            "never stdout by a sender's choice"
        );
        assert_eq!(safe_name(Some("--force.txt"), 6), PathBuf::from("force.txt"));
        let long = format!("{}.pdf", "é".repeat(300));
        let name = safe_name(Some(&long), 7);
        let name = name.to_str().expect("utf-8");
        assert!(name.len() <= MAX_NAME_BYTES && name.ends_with(".pdf"), "{name}");
    }

    #[test]
    fn verdicts_in_one_line() {
        let auth = json!({"spf": {"status": "pass"}, "dkim": [{"status": "pass", "domain": "example.org"}],
            "dmarc": {"status": "pass", "policy": "reject"}});
        assert_eq!(verdict(&auth), "spf=pass dkim=pass(example.org) dmarc=pass(p=reject)");
        assert_eq!(verdict(&Value::Null), "-");
    }
}
