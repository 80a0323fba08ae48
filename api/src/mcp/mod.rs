//! `/mcp`: the MCP server on the API listener, wire-compatible with e2a's (`../shared/e2a/mcp.md`).
//!
//! MCP Streamable HTTP, stateless as e2a's: every `POST /mcp` stands alone and its answers come
//! back as one SSE frame per request. `initialize` also answers a signed `Mcp-Session-Id`,
//! used only for resource notifications ([`session`]): `GET /mcp` with it is the notification
//! stream, `DELETE` ends it; without one, `GET`, `HEAD` and `DELETE` are 405. The bearer is an API
//! key as on `/v1`: an account key sees every tool, an agent key the runtime tools with its
//! agent as the default address. Tools run the `/v1` handlers in this process ([`call`]).
//!
//! The protocol layer is written here rather than taken from `rmcp`: e2a's wire behaviour
//! (argument errors and unknown tools as `isError` results with e2a's texts, the exact
//! annotation objects and draft-07 schemas, stateless 405 bodies, the 401 challenge) is the
//! contract hosts are built against, and it is a few hundred lines.

mod call;
pub mod protocol;
mod resources;
pub mod schema;
mod session;
pub mod tools;

pub use call::Caller;

use crate::AppState;
use crate::auth::Principal;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use postagent_core::apikey::KeyScope;
use protocol::{INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, VERSIONS};
use serde_json::{Value, json};
use tools::Tier;

/// Largest `POST /mcp` body: attachments (25 MB decoded) fit after base64.
const MAX_BODY_BYTES: usize = 40 * 1024 * 1024;
/// Requests in one batch at most.
const MAX_BATCH: usize = 100;

#[derive(Clone)]
struct Mcp {
    state: AppState,
    /// The `/v1` router tools call into.
    api: Router,
    sessions: session::Sessions,
}

/// Comment lines on an idle notification stream, so proxies keep it open.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(25);

/// The MCP routes; `api` is the `/v1` router the tools call.
pub fn routes(state: AppState, api: Router) -> Router {
    Router::new()
        .route("/mcp", post(post_mcp).get(get_mcp).head(not_allowed).delete(delete_mcp))
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Mcp { sessions: session::Sessions::start(state.store.clone()), state, api })
}

/// The tier a principal's key gives.
pub fn caller_for(who: &Principal, bearer: &str) -> Caller {
    let (tier, agent) = match who.scope {
        KeyScope::Account => (Tier::Admin, None),
        KeyScope::Agent => (Tier::Runtime, who.agent_email.clone()),
    };
    Caller { bearer: bearer.to_owned(), tier, agent }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map_or_else(|| format!("mcpreq_{}", hex::encode(rand::random::<[u8; 6]>())), str::to_owned)
}

fn rpc_error(status: StatusCode, request_id: &str, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message, "data": {"request_id": request_id}}});
    with_request_id((status, axum::Json(body)).into_response(), request_id)
}

fn with_request_id(mut res: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// The host part of a `Host` header or an origin, lowercased, without the port.
fn host_of(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    let a =
        a.split_once("://").map_or(a.as_str(), |(_, rest)| rest).split('/').next().unwrap_or("").to_owned();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_owned();
    }
    a.split(':').next().unwrap_or("").to_owned()
}

/// The DNS-rebinding guard: a browser tricked into calling `/mcp` sends a foreign `Host` (or
/// `Origin`). Admitted: loopback names, the host of `public_url`, and the address the API
/// listens on.
fn host_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let mut allowed = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    allowed.push(host_of(&state.settings.public_url_or_default()));
    allowed.push(host_of(&state.settings.api_listen));
    let ok = |value: &str| allowed.contains(&host_of(value));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    host.is_some_and(ok) && origin.is_none_or(ok)
}

fn misdirected(request_id: &str) -> Response {
    with_request_id(StatusCode::MISDIRECTED_REQUEST.into_response(), request_id)
}

fn base_url(state: &AppState) -> String {
    state.settings.public_url_or_default()
}

fn unauthorized(state: &AppState, request_id: &str, invalid: bool) -> Response {
    let mut challenge = format!(
        "Bearer realm=\"postagent\", resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        base_url(state)
    );
    if invalid {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let message = if invalid { "invalid bearer token" } else { "missing bearer token" };
    let mut res = rpc_error(StatusCode::UNAUTHORIZED, request_id, -32001, message);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// The bearer token, when the header is `Bearer <token>` (any case).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

async fn not_allowed(State(mcp): State<Mcp>, headers: HeaderMap) -> Response {
    let id = request_id(&headers);
    if !host_allowed(&mcp.state, &headers) {
        return misdirected(&id);
    }
    rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &id,
        -32000,
        "Method not allowed: the postagent MCP server is stateless",
    )
}

/// The request's session, when it carries one minted for this key.
fn session_of(mcp: &Mcp, headers: &HeaderMap, who: &Principal) -> Option<String> {
    let id = headers.get("mcp-session-id")?.to_str().ok()?;
    session::valid(&mcp.state.secret, &who.actor, id).then(|| id.to_owned())
}

/// The caller of a GET or DELETE that names a session: `Err` is the answer to give.
async fn session_caller(mcp: &Mcp, headers: &HeaderMap, rid: &str) -> Result<Option<String>, Response> {
    if !host_allowed(&mcp.state, headers) {
        return Err(misdirected(rid));
    }
    if headers.get("mcp-session-id").is_none() {
        return Ok(None);
    }
    if bearer(headers).is_none() {
        return Err(unauthorized(&mcp.state, rid, false));
    }
    match Principal::from_header(&mcp.state, headers.get(header::AUTHORIZATION)).await {
        Ok(who) => Ok(session_of(mcp, headers, &who)),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(unauthorized(&mcp.state, rid, true)),
        Err(e) => Err(rpc_error(e.status, rid, INTERNAL_ERROR, "cannot resolve the caller; try again")),
    }
}

/// `GET /mcp` with a session: the stream its resource notifications arrive on. Without one,
/// 405 (stateless, as e2a).
async fn get_mcp(State(mcp): State<Mcp>, headers: HeaderMap) -> Response {
    let rid = request_id(&headers);
    let id = match session_caller(&mcp, &headers, &rid).await {
        Ok(Some(id)) => id,
        Ok(None) => return not_allowed(State(mcp), headers).await,
        Err(res) => return res,
    };
    let notes = mcp.sessions.open(&id);
    let stopping = mcp.state.hub.stopping();
    let stream = futures_util::stream::unfold((notes, stopping), |(mut notes, mut stopping)| async move {
        if *stopping.borrow() {
            return None;
        }
        let frame = tokio::select! {
            note = notes.recv() => format!("event: message\ndata: {}\n\n", note?),
            _ = stopping.changed() => return None,
            () = tokio::time::sleep(KEEPALIVE) => ": keepalive\n\n".to_owned(),
        };
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(frame)), (notes, stopping)))
    });
    let res = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    with_request_id(res, &rid)
}

/// `DELETE /mcp` with a session ends it (its subscriptions and streams); without one, 405.
async fn delete_mcp(State(mcp): State<Mcp>, headers: HeaderMap) -> Response {
    let rid = request_id(&headers);
    match session_caller(&mcp, &headers, &rid).await {
        Ok(Some(id)) => {
            mcp.sessions.end(&id);
            with_request_id(StatusCode::OK.into_response(), &rid)
        }
        Ok(None) => not_allowed(State(mcp), headers).await,
        Err(res) => res,
    }
}

/// RFC 9728: where the bearer comes from.
async fn metadata(State(mcp): State<Mcp>, headers: HeaderMap) -> Response {
    if !host_allowed(&mcp.state, &headers) {
        return misdirected(&request_id(&headers));
    }
    let base = base_url(&mcp.state);
    axum::Json(json!({
        "resource": base,
        "authorization_servers": [base],
        "scopes_supported": ["agent", "account"],
        "bearer_methods_supported": ["header"],
    }))
    .into_response()
}

fn sse(frames: &[Value]) -> String {
    let mut out = String::new();
    for f in frames {
        out.push_str("event: message\ndata: ");
        out.push_str(&f.to_string());
        out.push_str("\n\n");
    }
    out
}

async fn post_mcp(State(mcp): State<Mcp>, headers: HeaderMap, body: Bytes) -> Response {
    let rid = request_id(&headers);
    if !host_allowed(&mcp.state, &headers) {
        return misdirected(&rid);
    }
    // Authentication first: a stranger learns nothing about the body rules.
    let Some(token) = bearer(&headers) else { return unauthorized(&mcp.state, &rid, false) };
    let who = match Principal::from_header(&mcp.state, headers.get(header::AUTHORIZATION)).await {
        Ok(who) => who,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return unauthorized(&mcp.state, &rid, true),
        Err(e) => {
            tracing::warn!(request_id = %rid, status = %e.status, "mcp: cannot resolve the caller");
            return rpc_error(e.status, &rid, INTERNAL_ERROR, "cannot resolve the caller; try again");
        }
    };
    let caller = caller_for(&who, &token);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !(accept.contains("application/json") && accept.contains("text/event-stream")) {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            &rid,
            -32000,
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        );
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")) {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &rid,
            -32000,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(StatusCode::BAD_REQUEST, &rid, PARSE_ERROR, "Parse error: Invalid JSON");
    };
    let messages: Vec<Value> = match parsed {
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_BATCH => items,
        Value::Array(_) => {
            return rpc_error(StatusCode::BAD_REQUEST, &rid, INVALID_REQUEST, "Invalid Request: batch size");
        }
        one => vec![one],
    };
    if messages.iter().any(|m| protocol::kind(m).is_none()) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &rid,
            PARSE_ERROR,
            "Parse error: Invalid JSON-RPC message",
        );
    }
    let initializing = messages.iter().any(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
    if initializing && messages.len() > 1 {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &rid,
            INVALID_REQUEST,
            "Invalid Request: Only one initialization request is allowed",
        );
    }
    if !initializing
        && let Some(v) = headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok())
        && !VERSIONS.contains(&v)
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &rid,
            -32000,
            &format!(
                "Bad Request: Unsupported protocol version: {v} (supported versions: {})",
                VERSIONS.join(", ")
            ),
        );
    }
    // A new session for `initialize`; otherwise the one the request carries, if it checks.
    let session = if initializing {
        Some(session::mint(&mcp.state.secret, &who.actor))
    } else {
        session_of(&mcp, &headers, &who)
    };
    let cx = protocol::Context {
        api: &mcp.api,
        caller: &caller,
        session: session.as_deref().map(|id| (id, &mcp.sessions)),
    };
    let mut answers = Vec::new();
    for m in &messages {
        if let Some(a) = protocol::handle(&cx, m).await {
            answers.push(a);
        }
    }
    if answers.is_empty() {
        return with_request_id(StatusCode::ACCEPTED.into_response(), &rid);
    }
    let mut res = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from(sse(&answers)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    if initializing
        && answers.iter().all(|a| a.get("result").is_some())
        && let Some(v) = session.as_deref().and_then(|id| HeaderValue::from_str(id).ok())
    {
        res.headers_mut().insert("mcp-session-id", v);
    }
    with_request_id(res, &rid)
}
