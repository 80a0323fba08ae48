//! Inboxes: the account's agents, each with its protection settings (editable) and its mail
//! and conversations (read-only); one message with its authentication verdict in words and
//! its delivery and bounce history.

use super::api::segment;
use super::reviews::without_raw;
use super::session::{Posted, Signed};
use super::{Console, context, explain, list_page, page, problem, safe, see_other};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use postagent_core::vocab::{GateAction, GatePolicy, OnExpiry, Sensitivity, texts};
use serde::Deserialize;
use serde_json::json;

/// Messages per page of an agent's mail.
const PAGE: u32 = 25;
/// History events shown per message at most.
const MAX_HISTORY: usize = 200;

/// `GET /console/agents`.
pub async fn agents(State(c): State<Console>, s: Signed) -> Response {
    list_page(&c, &s, "agents", "Inboxes", "/v1/agents", "agents.html").await
}

#[derive(Deserialize, Default)]
pub struct AgentQuery {
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    saved: bool,
}

/// `GET /console/agents/{email}`: settings, recent conversations, mail (paged).
pub async fn agent(
    State(c): State<Console>,
    s: Signed,
    Path(email): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Response {
    let base = format!("/v1/agents/{}", segment(&email));
    let agent = or_page!(c.get(&s.who, &base).await);
    let protection = or_page!(c.get(&s.who, &format!("{base}/protection")).await);
    let cursor = if q.cursor.is_empty() { String::new() } else { format!("&cursor={}", segment(&q.cursor)) };
    let listing = format!("{base}/messages?direction=all&read_status=all&limit={PAGE}{cursor}");
    let messages = or_page!(c.get(&s.who, &listing).await);
    let mut ctx = context(&s, "agents", agent["email"].as_str().unwrap_or("Agent"));
    ctx.insert("agent".into(), agent);
    ctx.insert("p".into(), protection);
    ctx.insert("messages".into(), messages["items"].clone());
    ctx.insert("next".into(), messages["next_cursor"].clone());
    ctx.insert("policies".into(), json!(texts::<GatePolicy>()));
    ctx.insert("actions".into(), json!(texts::<GateAction>()));
    ctx.insert("sensitivities".into(), json!(texts::<Sensitivity>()));
    ctx.insert("expiries".into(), json!(texts::<OnExpiry>()));
    if q.saved {
        ctx.insert("flash".into(), json!("Protection settings saved."));
    }
    page(StatusCode::OK, "agent.html", ctx.into())
}

fn lines(text: &str) -> Vec<String> {
    text.split(['\n', ',']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// `POST /console/agents/{email}/protection`: the form over the current settings (what the
/// form does not show, such as the automatic-mail rule, is kept), sent whole as the PUT.
pub async fn save_protection(
    State(c): State<Console>,
    Path(email): Path<String>,
    Posted { s, form }: Posted,
) -> Response {
    let path = format!("/v1/agents/{}/protection", segment(&email));
    let mut p = or_page!(c.get(&s.who, &path).await);
    for dir in ["inbound", "outbound"] {
        p[dir]["gate"]["policy"] = json!(form.text(&format!("{dir}_policy")));
        p[dir]["gate"]["action"] = json!(form.text(&format!("{dir}_action")));
        p[dir]["gate"]["allowlist"] = json!(lines(form.get(&format!("{dir}_allowlist")).unwrap_or("")));
        p[dir]["scan"]["sensitivity"] = json!(form.text(&format!("{dir}_sensitivity")));
    }
    let ttl = form.text("ttl_seconds");
    p["holds"]["ttl_seconds"] = ttl.parse::<i64>().map_or_else(|_| json!(ttl), |n| json!(n));
    p["holds"]["on_expiry"] = json!(form.text("on_expiry"));
    p["holds"]["suppress_notifications"] = json!(form.get("suppress_notifications").is_some());
    match c.call(&s.who, Method::PUT, &path, Some(&p)).await {
        Ok(_) => see_other(&format!("/console/agents/{}?saved=true", segment(&email))),
        Err(r) if r.status == StatusCode::UNPROCESSABLE_ENTITY => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not saved",
            &format!("{} Nothing was changed.", r.message),
        ),
        Err(r) => r.page(),
    }
}

/// `GET /console/agents/{email}/conversations`: the agent's threads, the latest first (a page
/// of its own: summarising threads reads all of the agent's mail, which the inbox page need
/// not wait for).
pub async fn conversations(
    State(c): State<Console>,
    s: Signed,
    Path(email): Path<String>,
    Query(q): Query<AgentQuery>,
) -> Response {
    let cursor = if q.cursor.is_empty() { String::new() } else { format!("&cursor={}", segment(&q.cursor)) };
    let path = format!("/v1/agents/{}/conversations?limit={PAGE}{cursor}", segment(&email));
    let list = or_page!(c.get(&s.who, &path).await);
    let mut ctx = context(&s, "agents", "Conversations");
    ctx.insert("email".into(), json!(email));
    ctx.insert("conversations".into(), list["items"].clone());
    ctx.insert("next".into(), list["next_cursor"].clone());
    page(StatusCode::OK, "conversations.html", ctx.into())
}

/// `GET /console/agents/{email}/conversations/{id}`.
pub async fn conversation(
    State(c): State<Console>,
    s: Signed,
    Path((email, id)): Path<(String, String)>,
) -> Response {
    let path = format!("/v1/agents/{}/conversations/{}", segment(&email), segment(&id));
    let conv = or_page!(c.get(&s.who, &path).await);
    let mut ctx = context(&s, "agents", "Conversation");
    ctx.insert("email".into(), json!(email));
    ctx.insert("c".into(), conv);
    page(StatusCode::OK, "conversation.html", ctx.into())
}

/// `GET /console/agents/{email}/messages/{id}`.
pub async fn message(
    State(c): State<Console>,
    s: Signed,
    Path((email, id)): Path<(String, String)>,
) -> Response {
    let path = format!("/v1/agents/{}/messages/{}", segment(&email), segment(&id));
    let m = without_raw(or_page!(c.get(&s.who, &path).await));
    // The history is the event log's; an account without one sees the message's own state.
    let history = c
        .all_pages(&s.who, &format!("/v1/events?message_id={}", segment(&id)), MAX_HISTORY)
        .await
        .map(|(mut events, _)| {
            events.reverse();
            events
        })
        .ok();
    let html = m["parsed"]["html"].as_str().or(m["body"]["html"].as_str()).map(str::to_owned);
    let text = m["parsed"]["text"].as_str().or(m["body"]["text"].as_str()).unwrap_or("").to_owned();
    let mut ctx = context(&s, "agents", m["subject"].as_str().unwrap_or("Message"));
    ctx.insert("email".into(), json!(email));
    ctx.insert("auth".into(), json!(explain::explain(&m["authentication"])));
    ctx.insert("history".into(), json!(history));
    ctx.insert("has_html".into(), json!(html.is_some()));
    ctx.insert("blocked".into(), json!(html.as_deref().map_or(0, |h| safe::clean(h).1)));
    ctx.insert("text".into(), json!(text));
    ctx.insert("m".into(), m);
    page(StatusCode::OK, "mail.html", ctx.into())
}

/// `GET /console/agents/{email}/messages/{id}/body`: the message's HTML as a sandboxed frame.
pub async fn body_frame(
    State(c): State<Console>,
    s: Signed,
    Path((email, id)): Path<(String, String)>,
) -> Response {
    let path = format!("/v1/agents/{}/messages/{}", segment(&email), segment(&id));
    let m = or_page!(c.get(&s.who, &path).await);
    match m["parsed"]["html"].as_str().or(m["body"]["html"].as_str()) {
        Some(html) => safe::frame(&safe::clean(html).0),
        None => super::not_found(),
    }
}

/// `GET /console/agents/{email}/messages/{id}/attachments/{index}`.
pub async fn attachment(
    State(c): State<Console>,
    s: Signed,
    Path((email, id, index)): Path<(String, String, String)>,
) -> Response {
    to_download(&c, &s, &email, &id, &index).await
}

/// A received message's attachment: a redirect to the API's short-lived download link
/// (served as a download, never shown inline), made relative so it stays on this page's
/// origin whatever `public_url` says.
pub(super) async fn to_download(c: &Console, s: &Signed, email: &str, id: &str, index: &str) -> Response {
    let path =
        format!("/v1/agents/{}/messages/{}/attachments/{}", segment(email), segment(id), segment(index));
    let v = or_page!(c.get(&s.who, &path).await);
    match v["download_url"].as_str().and_then(|u| u.find("/v1/").map(|i| &u[i..])) {
        Some(relative) => see_other(relative),
        None => super::not_found(),
    }
}
