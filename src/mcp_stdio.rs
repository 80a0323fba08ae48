//! `postagent mcp`: the MCP server over stdio, for hosts that launch a local process (Claude
//! Desktop, Cursor). Each JSON-RPC line read on stdin is POSTed to a running postagent's
//! `/mcp` with the API key, and each answer is written back as one line on stdout; nothing
//! else is ever written to stdout (logs go to stderr).

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Longest line read from the host (attachments travel inline, base64).
const MAX_LINE_BYTES: usize = 48 * 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// The postagent base URL [env: E2A_URL; default: the client file's `url`, else
    /// http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The API key the tools act with, account- or agent-scoped [env: E2A_API_KEY; default:
    /// the client file's `api_key`].
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

/// The JSON-RPC messages of an SSE body (`data:` lines), or the one JSON body.
fn answers(content_type: &str, body: &str) -> Vec<Value> {
    if content_type.starts_with("text/event-stream") {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(body).into_iter().collect()
    }
}

/// Forwards one line; the answers to write back.
async fn forward(http: &reqwest::Client, endpoint: &str, key: &str, line: &str) -> Vec<Value> {
    let msg: Option<Value> = serde_json::from_str(line).ok();
    let id = msg.as_ref().and_then(|m| m.get("id")).cloned().unwrap_or(Value::Null);
    let is_request = msg.as_ref().is_some_and(|m| m.get("method").is_some() && m.get("id").is_some());
    let sent = http
        .post(endpoint)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(line.to_owned())
        .send()
        .await;
    let res = match sent {
        Ok(r) => r,
        Err(e) => {
            let error =
                json!({"code": -32603, "message": format!("cannot reach postagent at {endpoint}: {e}")});
            return if is_request {
                vec![json!({"jsonrpc": "2.0", "id": id, "error": error})]
            } else {
                Vec::new()
            };
        }
    };
    let content_type =
        res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = res.text().await.unwrap_or_default();
    let mut out = answers(&content_type, &body);
    // Transport errors carry `id: null` (HTTP answers before the body is read): over stdio
    // they answer the request they belong to.
    for a in &mut out {
        if a.get("id") == Some(&Value::Null) && a.get("error").is_some() && is_request {
            a["id"] = id.clone();
        }
    }
    if !is_request {
        out.retain(|a| a.get("id") != Some(&Value::Null));
    }
    out
}

pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    // The client's own settings (flags, E2A_* variables, the client file), like every client
    // command: a host launching this process has no server configuration to read.
    let conn = postagent::cli::Conn { url: args.url, api_key: args.api_key, ..Default::default() };
    let settings = postagent::cli::config::Settings::load(&conn).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = settings.url.value.unwrap_or_else(|| postagent::cli::DEFAULT_URL.into());
    let key = settings.api_key.value.context(
        "no API key: pass --api-key, set E2A_API_KEY, or run `postagent config set api_key <key>`",
    )?;
    let endpoint = format!("{}/mcp", base.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot build the HTTP client")?;
    tracing::info!(endpoint = %endpoint, "mcp over stdio: forwarding to postagent");
    let mut lines = BufReader::with_capacity(64 * 1024, tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            let error = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "message too large"}});
            stdout.write_all(format!("{error}\n").as_bytes()).await?;
            stdout.flush().await?;
            continue;
        }
        for answer in forward(&http, &endpoint, &key, line).await {
            stdout.write_all(format!("{answer}\n").as_bytes()).await?;
        }
        stdout.flush().await?;
    }
    Ok(())
}
