//! Running a tool: validate its arguments, find its agent, and call its `/v1` operation on the
//! API's own router in this process (no socket, no second copy of any rule: the handler, its
//! checks and its error envelope are the REST ones). Results and errors are shaped as e2a's
//! server shapes them (mcp.md §4.0, §4.11, §5).

use super::schema;
use super::tools::{Address, Keyed, Output, Special, Tier, Tool};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;
use tower::ServiceExt;

/// Largest REST response read back for a tool (attachments inline stay far below).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Longest message text in an error result; longer ones end in `…`.
const MAX_ERROR_TEXT: usize = 500;
/// `details` larger than this (as JSON) are left out of `structuredContent`.
const MAX_DETAILS_JSON: usize = 2000;
/// Pages the legacy `list_pending_messages` follows at most.
const MAX_PAGES: usize = 100;

/// Who calls: the bearer (passed on to the API unchanged), the tier and the key's agent.
#[derive(Debug, Clone)]
pub struct Caller {
    pub bearer: String,
    pub tier: Tier,
    pub agent: Option<String>,
}

/// `(method, path)` of every operation in the route table, by operationId.
fn operations() -> &'static HashMap<&'static str, (&'static str, &'static str, bool)> {
    static OPS: OnceLock<HashMap<&'static str, (&'static str, &'static str, bool)>> = OnceLock::new();
    OPS.get_or_init(|| {
        crate::routes::table::table()
            .into_iter()
            .map(|(op, _)| (op.id, (op.method, op.path, op.implemented)))
            .collect()
    })
}

/// Whether the tool's operation is served here (else it answers `not_implemented`).
pub fn served(tool: &Tool) -> bool {
    operations().get(tool.op).is_some_and(|(_, _, implemented)| *implemented)
}

fn text_result(text: String, structured: Option<Value>, is_error: bool) -> Value {
    let mut result = json!({"content": [{"type": "text", "text": text}]});
    if let Some(s) = structured {
        result["structuredContent"] = s;
    }
    if is_error {
        result["isError"] = json!(true);
    }
    result
}

fn success(value: &Value) -> Value {
    text_result(serde_json::to_string_pretty(value).unwrap_or_default(), None, false)
}

/// Control characters become one space, the text is trimmed and cut at 500 characters.
fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_control = false;
    for c in text.chars() {
        if c.is_control() && (c as u32) < 0x80 {
            if !in_control {
                out.push(' ');
            }
            in_control = true;
        } else {
            out.push(c);
            in_control = false;
        }
    }
    let out = out.trim();
    if out.chars().count() > MAX_ERROR_TEXT {
        format!("{}…", out.chars().take(MAX_ERROR_TEXT).collect::<String>())
    } else {
        out.to_owned()
    }
}

/// An error raised by the MCP layer itself (mcp.md §5.4).
pub fn layer_error(message: &str) -> Value {
    text_result(
        format!("e2a error: {}", sanitize(message)),
        Some(json!({"code": "invalid_request", "retryable": false})),
        true,
    )
}

/// Arguments that do not fit the tool's schema, or a tool this caller cannot see (§5.3).
pub fn protocol_error(text: String) -> Value {
    text_result(text, None, true)
}

fn retryable(code: Option<&str>, status: u16) -> bool {
    const FINAL: [&str; 18] = [
        "unauthorized",
        "forbidden",
        "blocked_by_policy",
        "not_found",
        "gone",
        "conflict",
        "message_not_pending",
        "webhook_cooldown",
        "webhook_disabled",
        "invalid_request",
        "bad_request",
        "unprocessable_entity",
        "domain_not_verified",
        "recipient_suppressed",
        "limit_exceeded",
        "template_limit_reached",
        "webhook_limit_reached",
        "idempotency_key_reuse",
    ];
    match code {
        Some("rate_limited" | "idempotency_in_flight") => return true,
        Some("not_implemented" | "events_log_disabled") => return false,
        Some(c)
            if FINAL.contains(&c)
                || c.ends_with("_not_found")
                || c.ends_with("_taken")
                || c.ends_with("_exists")
                || c.starts_with("invalid_") =>
        {
            return false;
        }
        _ => {}
    }
    matches!(status, 408 | 429 | 500..=599)
}

fn synthesized_code(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request",
        401 => "unauthorized",
        402 => "limit_exceeded",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        429 => "rate_limited",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

/// One answer of the API.
struct Answer {
    status: StatusCode,
    body: Value,
    request_id: Option<String>,
    retry_after: Option<u64>,
}

/// An API error as a tool result (mcp.md §5.2).
fn api_error(a: &Answer) -> Value {
    let status = a.status.as_u16();
    let envelope = a.body.get("error");
    let own_code = envelope.and_then(|e| e.get("code")).and_then(Value::as_str);
    let code = own_code.unwrap_or_else(|| synthesized_code(status)).to_owned();
    let message = envelope
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("e2a API error ({status})"), str::to_owned);
    let retry = retryable(own_code, status);
    let mut s = json!({"code": code, "retryable": retry, "status": status});
    let request_id =
        a.request_id.clone().or_else(|| envelope.and_then(|e| e["request_id"].as_str()).map(str::to_owned));
    if let Some(id) = request_id {
        s["request_id"] = json!(id);
    }
    let details = envelope.and_then(|e| e.get("details")).filter(|d| !d.is_null());
    let retry_after = a.retry_after.or_else(|| details.and_then(|d| d["retry_after_seconds"].as_u64()));
    if let Some(secs) = retry_after {
        s["retry_after_seconds"] = json!(secs);
    }
    if let Some(d) = details.filter(|d| serde_json::to_string(d).is_ok_and(|t| t.len() <= MAX_DETAILS_JSON)) {
        s["details"] = d.clone();
    }
    let marker = if retry { " (retryable)" } else { "" };
    text_result(format!("e2a error [{code}]{marker}: {}", sanitize(&message)), Some(s), true)
}

fn encode_path(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// One request to the API.
struct Call<'a> {
    op: &'static str,
    params: Vec<(&'static str, String)>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    idempotency_key: Option<String>,
    caller: &'a Caller,
}

impl Call<'_> {
    async fn send(&self, api: &Router) -> Result<Answer, Value> {
        let (method, path, _) = operations()
            .get(self.op)
            .copied()
            .ok_or_else(|| layer_error(&format!("operation {} is unknown", self.op)))?;
        let mut path = path.to_owned();
        for (name, value) in &self.params {
            path = path.replace(&format!("{{{name}}}"), &encode_path(value));
        }
        if !self.query.is_empty() {
            path.push('?');
            path.push_str(&serde_urlencoded::to_string(&self.query).unwrap_or_default());
        }
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.caller.bearer));
        if let Some(key) = &self.idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let req = match &self.body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(b).unwrap_or_default())),
            None => req.body(Body::empty()),
        }
        .map_err(|e| layer_error(&format!("cannot build the request: {e}")))?;
        let res = api.clone().oneshot(req).await.map_err(|e| layer_error(&format!("{e}")))?;
        let status = res.status();
        let (request_id, retry_after) = {
            let header =
                |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            (header("x-request-id"), header("retry-after").and_then(|v| v.trim().parse().ok()))
        };
        let bytes = axum::body::to_bytes(res.into_body(), MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| layer_error(&format!("cannot read the answer: {e}")))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body, request_id, retry_after })
    }
}

/// One `/v1` operation for the protocol layer (resources): the body, or the error's text.
pub async fn rest(
    api: &Router,
    caller: &Caller,
    op: &'static str,
    params: &[(&'static str, String)],
    query: &[(&str, String)],
) -> Result<Value, String> {
    let text = |v: Value| v["content"][0]["text"].as_str().unwrap_or("error").to_owned();
    let call = Call {
        op,
        params: params.to_vec(),
        query: query.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        body: None,
        idempotency_key: None,
        caller,
    };
    let answer = call.send(api).await.map_err(text)?;
    if answer.status.is_success() { Ok(answer.body) } else { Err(text(api_error(&answer))) }
}

/// The agent a per-agent tool acts on (mcp.md §3.2).
fn address(tool: &Tool, args: &Map<String, Value>, caller: &Caller) -> Result<Option<String>, Value> {
    let arg = match tool.address {
        Address::None => return Ok(None),
        Address::AgentEmail => "agent_email",
        _ => "email",
    };
    if let Some(e) = args.get(arg).and_then(Value::as_str).filter(|e| !e.is_empty()) {
        return Ok(Some(e.to_owned()));
    }
    if tool.address != Address::EmailRequired
        && caller.tier == Tier::Runtime
        && let Some(own) = &caller.agent
    {
        return Ok(Some(own.clone()));
    }
    Err(layer_error(&format!(
        "{arg} is required: pass the agent's address, or use an API key bound to one agent (list_agents shows the agents)"
    )))
}

/// Runs `tool` for `caller` with `args` (already an object).
pub async fn run(api: &Router, caller: &Caller, tool: &Tool, args: &Map<String, Value>) -> Value {
    if let Some(issues) = schema::validate(&tool.fields, args) {
        let pretty = serde_json::to_string_pretty(&issues).unwrap_or_default();
        return protocol_error(format!(
            "MCP error -32602: Input validation error: Invalid arguments for tool {}: {pretty}",
            tool.name
        ));
    }
    match run_valid(api, caller, tool, args).await {
        Ok(v) | Err(v) => v,
    }
}

async fn run_valid(
    api: &Router,
    caller: &Caller,
    tool: &Tool,
    args: &Map<String, Value>,
) -> Result<Value, Value> {
    let agent = address(tool, args, caller)?;
    let mut params: Vec<(&'static str, String)> = Vec::new();
    if let Some(a) = &agent {
        params.push(("email", a.clone()));
    }
    let text = |k: &str| args.get(k).and_then(query_value);
    if let Some(id) = tool.id_arg.and_then(text) {
        params.push(("id", id));
    }
    for p in ["index", "domain", "alias"] {
        let arg = if p == "index" { "attachment_index" } else { p };
        if let Some(v) = text(arg) {
            params.push((p, v));
        }
    }
    let mut query: Vec<(String, String)> =
        tool.query.iter().filter_map(|(q, arg)| text(arg).map(|v| ((*q).to_owned(), v))).collect();
    if tool.confirm {
        query.push(("confirm".into(), "DELETE".into()));
    }
    let inline = match tool.special {
        Special::InlineAlways => true,
        Special::InlineIfAsked => args.get("inline") == Some(&Value::Bool(true)),
        _ => false,
    };
    if inline {
        query.push(("inline".into(), "true".into()));
    }
    let mut body = (!tool.body.is_empty()).then(|| {
        let mut b = Map::new();
        for (key, arg) in &tool.body {
            if let Some(v) = args.get(*arg) {
                b.insert((*key).to_owned(), v.clone());
            }
        }
        b
    });
    if let Some(b) = body.as_mut() {
        match tool.special {
            Special::ForwardText => {
                b.entry("text").or_insert(json!(""));
            }
            Special::AgentKey => {
                b.insert("scope".into(), json!("agent"));
            }
            _ => {}
        }
    }
    let idempotency_key = match tool.keyed {
        Keyed::No => None,
        Keyed::FromArg => {
            Some(args.get("idempotency_key").and_then(Value::as_str).map_or_else(uuid_v4, str::to_owned))
        }
        Keyed::Minted => Some(uuid_v4()),
    };
    let mut call =
        Call { op: tool.op, params, query, body: body.map(Value::Object), idempotency_key, caller };
    if tool.special == Special::ProtectionOverlay {
        call.body = Some(overlaid_protection(api, &call, args).await?);
    }
    if tool.output == Output::AllReviews {
        return all_reviews(api, call).await;
    }
    let answer = call.send(api).await?;
    if !answer.status.is_success() {
        return Err(api_error(&answer));
    }
    shape(tool, answer.body).map(|v| success(&v))
}

/// `update_protection`: the stored configuration with the supplied leaves written over it.
async fn overlaid_protection(
    api: &Router,
    put: &Call<'_>,
    args: &Map<String, Value>,
) -> Result<Value, Value> {
    let get = Call {
        op: "getAgentProtection",
        params: put.params.clone(),
        query: Vec::new(),
        body: None,
        idempotency_key: None,
        caller: put.caller,
    };
    let current = get.send(api).await?;
    if !current.status.is_success() {
        return Err(api_error(&current));
    }
    // The request schema's leaves, as stored (an absent or null leaf stays out).
    let c = &current.body;
    let mut config =
        json!({"inbound": {"gate": {}, "scan": {}}, "outbound": {"gate": {}, "scan": {}}, "holds": {}});
    let mut keep = |path: &[&str]| {
        let value = path.iter().fold(c, |v, k| &v[*k]);
        if !value.is_null() {
            let (leaf, parents) = path.split_last().unwrap_or((&"", &[]));
            let slot = parents.iter().fold(&mut config, |v, k| &mut v[*k]);
            slot[*leaf] = value.clone();
        }
    };
    // The inbound gate's automatic-mail rule has no tool argument; it is kept as it is.
    keep(&["inbound", "gate", "automatic"]);
    for side in ["inbound", "outbound"] {
        for leaf in ["policy", "allowlist", "action"] {
            keep(&[side, "gate", leaf]);
        }
        keep(&[side, "scan", "sensitivity"]);
    }
    for leaf in ["ttl_seconds", "on_expiry", "suppress_notifications"] {
        keep(&["holds", leaf]);
    }
    for (arg, path) in [
        ("inbound_gate_policy", ["inbound", "gate", "policy"]),
        ("inbound_gate_allowlist", ["inbound", "gate", "allowlist"]),
        ("inbound_gate_action", ["inbound", "gate", "action"]),
        ("inbound_scan_sensitivity", ["inbound", "scan", "sensitivity"]),
        ("outbound_gate_policy", ["outbound", "gate", "policy"]),
        ("outbound_gate_allowlist", ["outbound", "gate", "allowlist"]),
        ("outbound_gate_action", ["outbound", "gate", "action"]),
        ("outbound_scan_sensitivity", ["outbound", "scan", "sensitivity"]),
    ] {
        if let Some(v) = args.get(arg) {
            config[path[0]][path[1]][path[2]] = v.clone();
        }
    }
    for (arg, key) in [
        ("holds_ttl_seconds", "ttl_seconds"),
        ("holds_on_expiry", "on_expiry"),
        ("holds_suppress_notifications", "suppress_notifications"),
    ] {
        if let Some(v) = args.get(arg) {
            config["holds"][key] = v.clone();
        }
    }
    Ok(config)
}

/// The legacy `list_pending_messages`: every page of the review queue.
async fn all_reviews(api: &Router, mut call: Call<'_>) -> Result<Value, Value> {
    let mut messages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        call.query = vec![("limit".into(), "100".into())];
        if let Some(c) = &cursor {
            call.query.push(("cursor".into(), c.clone()));
        }
        let page = call.send(api).await?;
        if !page.status.is_success() {
            return Err(api_error(&page));
        }
        messages.extend(page.body["items"].as_array().cloned().unwrap_or_default());
        cursor = page.body["next_cursor"].as_str().filter(|c| !c.is_empty()).map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(success(&json!({"messages": messages})))
}

/// The tool's view of a successful answer.
fn shape(tool: &Tool, body: Value) -> Result<Value, Value> {
    Ok(match tool.output {
        Output::Rest | Output::AllReviews => body,
        Output::List(plural) => {
            let mut out = Map::new();
            out.insert(plural.to_owned(), body.get("items").cloned().unwrap_or_else(|| json!([])));
            if let Some(c) = body.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty()) {
                out.insert("next_cursor".into(), json!(c));
            }
            Value::Object(out)
        }
        Output::Trimmed { hold_reason } => trimmed(&body, hold_reason),
        Output::Attachment => {
            let mut out = Map::new();
            for k in ["index", "filename", "content_type", "size_bytes", "download_url", "expires_at"] {
                if let Some(v) = body.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
            if let Some(d) = body.get("data").filter(|d| d.as_str().is_some_and(|s| !s.is_empty())) {
                out.insert("data".into(), d.clone());
            }
            Value::Object(out)
        }
        Output::AttachmentData => {
            if body.get("data").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(layer_error("the attachment has no inline data (too large to inline?)"));
            }
            let mut out = Map::new();
            for k in ["filename", "content_type", "size_bytes", "data"] {
                out.insert(k.into(), body.get(k).cloned().unwrap_or(Value::Null));
            }
            Value::Object(out)
        }
    })
}

/// The trimmed message shape of mcp.md §4.11.
fn trimmed(m: &Value, hold_reason: bool) -> Value {
    let mut out = Map::new();
    let mut copy = |key: &str, value: Option<&Value>| {
        if let Some(v) = value {
            out.insert(key.to_owned(), v.clone());
        }
    };
    for k in [
        "id",
        "conversation_id",
        "direction",
        "header_from",
        "envelope_from",
        "verified_domain",
        "authentication",
        "delivered_to",
        "to",
        "cc",
        "reply_to",
        "subject",
        "read_status",
        "labels",
        "flagged",
        "flag_reason",
        "protection",
    ] {
        copy(k, m.get(k));
    }
    copy("truncated", m.get("parsed").and_then(|p| p.get("truncated")));
    for part in ["text", "html"] {
        let parsed = m.get("parsed").and_then(|p| p.get(part)).filter(|v| !v.is_null());
        copy(part, parsed.or_else(|| m.get("body").and_then(|b| b.get(part))));
    }
    for k in ["delivery_status", "delivery_detail", "review_status", "sent_as", "size_bytes", "deleted_at"] {
        copy(k, m.get(k));
    }
    copy("received_at", m.get("created_at"));
    let attachments: Vec<Value> = m
        .get("attachments")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|a| json!({"index": a["index"], "filename": a["filename"], "content_type": a["content_type"], "size_bytes": a["size_bytes"]}))
                .collect()
        })
        .unwrap_or_default();
    out.insert("attachments".into(), Value::Array(attachments));
    if hold_reason && let Some(r) = m.get("hold_reason") {
        out.insert("hold_reason".into(), r.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_classify_and_sanitize_as_e2a_does() {
        assert!(retryable(Some("rate_limited"), 429));
        assert!(!retryable(Some("not_implemented"), 501));
        assert!(!retryable(Some("agent_not_found"), 404));
        assert!(retryable(None, 503) && !retryable(None, 404));
        assert_eq!(sanitize("a\r\n\tb  "), "a b");
        let long = "x".repeat(600);
        assert_eq!(sanitize(&long).chars().count(), 501);
        let a = Answer {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": {"code": "not_found", "message": "message not found", "request_id": "req_1"}}),
            request_id: None,
            retry_after: None,
        };
        let r = api_error(&a);
        assert_eq!(r["content"][0]["text"], "e2a error [not_found]: message not found");
        assert_eq!(
            r["structuredContent"],
            json!({"code": "not_found", "retryable": false, "status": 404, "request_id": "req_1"})
        );
        assert_eq!(r["isError"], true);
    }

    #[test]
    fn the_trimmed_message_renames_and_drops() {
        let m = json!({"id": "msg_1", "created_at": "2026-01-01T00:00:00Z", "raw_message": "xx",
            "parsed": {"text": null, "html": "<p>x</p>", "truncated": false}, "body": {"text": "t"},
            "attachments": [{"index": 0, "filename": "a", "content_type": "text/plain", "size_bytes": 1, "content_id": "c"}],
            "hold_reason": "gate"});
        let t = trimmed(&m, false);
        assert_eq!(t["received_at"], "2026-01-01T00:00:00Z");
        assert_eq!(t["text"], "t");
        assert_eq!(t["html"], "<p>x</p>");
        assert!(t.get("raw_message").is_none() && t.get("hold_reason").is_none());
        assert!(t["attachments"][0].get("content_id").is_none());
        assert_eq!(trimmed(&m, true)["hold_reason"], "gate");
        assert_eq!(uuid_v4().len(), 36);
    }
}
