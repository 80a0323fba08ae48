//! The JSON-RPC side of MCP, shared by the HTTP transport and `postagent mcp` (stdio):
//! `initialize`, `ping`, `tools/list`, `tools/call`. Each message stands alone (stateless,
//! as e2a's server is): no session, no `initialize` needed before a call.

use super::call::{self, Caller};
use super::resources;
use super::session::Sessions;
use super::tools::{self, Tier, Tool};
use axum::Router;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// Protocol revisions understood; the first is answered when a client asks for another.
pub const VERSIONS: [&str; 5] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2024-10-07"];

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INTERNAL_ERROR: i64 = -32603;
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Where a request came from: the caller and, when it carried a valid one, its session.
pub struct Context<'a> {
    pub api: &'a Router,
    pub caller: &'a Caller,
    pub session: Option<(&'a str, &'a Sessions)>,
}

fn all_tools() -> &'static [Tool] {
    static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
    TOOLS.get_or_init(tools::all)
}

/// The tools `tier` sees, in registration order.
pub fn visible(tier: Tier) -> impl Iterator<Item = &'static Tool> {
    all_tools().iter().filter(move |t| tier == Tier::Admin || t.tier == Tier::Runtime)
}

pub fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// What kind of JSON-RPC message a value is.
pub enum Kind<'a> {
    Request {
        id: &'a Value,
        method: &'a str,
    },
    Notification,
    /// A response from the client (to nothing we asked): ignored.
    Response,
}

/// `None` when `msg` is not a JSON-RPC 2.0 message.
pub fn kind(msg: &Value) -> Option<Kind<'_>> {
    let obj = msg.as_object()?;
    if obj.get("jsonrpc")?.as_str()? != "2.0" {
        return None;
    }
    match (obj.get("method").and_then(Value::as_str), obj.get("id")) {
        (Some(method), Some(id)) if id.is_string() || id.is_number() => Some(Kind::Request { id, method }),
        (Some(_), None) => Some(Kind::Notification),
        (None, Some(id))
            if (id.is_string() || id.is_number())
                && (obj.contains_key("result") || obj.contains_key("error")) =>
        {
            Some(Kind::Response)
        }
        _ => None,
    }
}

fn tool_entry(t: &Tool) -> Value {
    let description = if call::served(t) {
        t.description.to_owned()
    } else {
        format!("{} Not served by this postagent yet: a call answers not_implemented.", t.description)
    };
    json!({
        "name": t.name,
        "title": t.title,
        "description": description,
        "inputSchema": super::schema::input_schema(&t.fields),
        "annotations": t.ann.json(),
        "execution": {"taskSupport": "forbidden"},
    })
}

fn initialize(params: Option<&Value>) -> Result<Value, String> {
    let params = params.and_then(Value::as_object).ok_or("initialize needs params")?;
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or("");
    let version = VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(VERSIONS[0]);
    Ok(json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": false}},
        "serverInfo": {"name": "postagent", "version": env!("CARGO_PKG_VERSION")},
    }))
}

async fn tools_call(api: &Router, caller: &Caller, params: Option<&Value>) -> Result<Value, String> {
    let params = params.and_then(Value::as_object).ok_or("tools/call needs params")?;
    let name = params.get("name").and_then(Value::as_str).ok_or("tools/call needs a tool name")?;
    let Some(tool) = visible(caller.tier).find(|t| t.name == name) else {
        return Ok(call::protocol_error(format!("MCP error -32602: Tool {name} not found")));
    };
    let args: Map<String, Value> = match params.get("arguments") {
        Some(Value::Object(a)) => a.clone(),
        Some(Value::Null) => return Err("arguments must be an object, not null".into()),
        None => {
            return Ok(call::protocol_error(format!(
                "MCP error -32602: Input validation error: Invalid arguments for tool {name}: expected object, received undefined"
            )));
        }
        Some(_) => return Err("arguments must be an object".into()),
    };
    let result = call::run(api, caller, tool, &args).await;
    let outcome = if result.get("isError").is_some() { "error" } else { "ok" };
    tracing::info!(tool = name, outcome, "mcp tool call");
    Ok(result)
}

fn uri_of(params: Option<&Value>) -> Result<&str, (i64, String)> {
    params
        .and_then(|p| p.get("uri"))
        .and_then(Value::as_str)
        .ok_or((INTERNAL_ERROR, "params.uri is required".to_owned()))
}

async fn resource_request(
    cx: &Context<'_>,
    method: &str,
    params: Option<&Value>,
) -> Result<Value, (i64, String)> {
    let internal = |m: String| (INTERNAL_ERROR, m);
    match method {
        "resources/list" => resources::list(cx.api, cx.caller).await.map_err(internal),
        "resources/templates/list" => Ok(resources::templates()),
        "resources/read" => {
            let uri = uri_of(params)?;
            resources::read(cx.api, cx.caller, uri).await.map_err(|m| (RESOURCE_NOT_FOUND, m))
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = uri_of(params)?;
            let Some((id, sessions)) = cx.session else {
                return Err((
                    INVALID_REQUEST,
                    format!("{method} needs the Mcp-Session-Id that initialize answered"),
                ));
            };
            if method == "resources/unsubscribe" {
                sessions.unsubscribe(id, uri);
                return Ok(json!({}));
            }
            // Only what the key may read: the read runs the REST scope and tenancy checks.
            resources::read(cx.api, cx.caller, uri).await.map_err(|m| (RESOURCE_NOT_FOUND, m))?;
            if !sessions.subscribe(id, uri) {
                return Err((INVALID_REQUEST, "too many subscriptions in this session".to_owned()));
            }
            Ok(json!({}))
        }
        _ => Err((METHOD_NOT_FOUND, "Method not found".to_owned())),
    }
}

/// Answers one request; `None` for notifications and responses.
pub async fn handle(cx: &Context<'_>, msg: &Value) -> Option<Value> {
    let Some(Kind::Request { id, method }) = kind(msg) else { return None };
    let params = msg.get("params");
    let result = match method {
        "initialize" => initialize(params).map_err(|m| (INTERNAL_ERROR, m)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": visible(cx.caller.tier).map(tool_entry).collect::<Vec<_>>()})),
        "tools/call" => tools_call(cx.api, cx.caller, params).await.map_err(|m| (INTERNAL_ERROR, m)),
        m if m.starts_with("resources/") => resource_request(cx, m, params).await,
        _ => Err((METHOD_NOT_FOUND, "Method not found".to_owned())),
    };
    Some(match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, message)) => error(id.clone(), code, &message),
    })
}
