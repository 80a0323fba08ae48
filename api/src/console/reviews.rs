//! The review queue: every held message of the account, outbound and inbound, the soonest to
//! expire first, with why it was held; one message read whole (its HTML shown safely, its
//! attachments listed), edited and approved, or rejected with a reason; and bulk decisions.
//! Decisions are `/v1/reviews/{id}/approve|reject`, so the console decides exactly as the API.

use super::api::segment;
use super::session::{FormData, Posted, Signed};
use super::{Console, context, page, problem, safe, see_other};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Held messages the queue reads at most (it sorts them by expiry).
const MAX_QUEUE: usize = 1000;
/// Messages one bulk decision acts on at most.
const MAX_BULK: usize = 200;

#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    done: String,
    #[serde(default)]
    n: u32,
    #[serde(default)]
    failed: u32,
}

impl Done {
    /// The confirmation line, from a fixed vocabulary (nothing of the query is echoed).
    fn flash(&self) -> Option<String> {
        match self.done.as_str() {
            "approved" => Some("Approved: the message is on its way.".into()),
            "released" => Some("Approved: the message is delivered to the agent.".into()),
            "rejected" => Some("Rejected: the message will not go anywhere.".into()),
            "bulk" if self.failed == 0 => Some(format!("Decided {} messages.", self.n)),
            "bulk" => Some(format!(
                "Decided {} messages; {} could not be decided (already decided, expired, or refused).",
                self.n, self.failed
            )),
            _ => None,
        }
    }
}

fn reason_text(v: &Value) -> String {
    let r = &v["hold_reason"];
    match (r["code"].as_str(), r["summary"].as_str().or(r["message"].as_str())) {
        (Some(code), Some(msg)) => format!("{msg} ({code})"),
        (Some(code), None) => code.replace('_', " "),
        _ if v["flagged"].as_bool() == Some(true) => {
            v["flag_reason"].as_str().unwrap_or("flagged").to_owned()
        }
        _ => "held for review by the agent's protection settings".to_owned(),
    }
}

/// `GET /console/reviews`.
pub async fn queue(State(c): State<Console>, s: Signed, Query(done): Query<Done>) -> Response {
    let (mut items, more) = or_page!(c.all_pages(&s.who, "/v1/reviews", MAX_QUEUE).await);
    items.sort_by(|a, b| {
        a["approval_expires_at"].as_str().unwrap_or("").cmp(b["approval_expires_at"].as_str().unwrap_or(""))
    });
    let rows: Vec<Value> = items
        .iter()
        .map(|v| {
            let mut row = v.clone();
            row["why"] = json!(reason_text(v));
            row
        })
        .collect();
    let mut ctx = context(&s, "reviews", "Reviews");
    ctx.insert("rows".into(), json!(rows));
    ctx.insert("more".into(), json!(more));
    ctx.insert("flash".into(), json!(done.flash()));
    page(StatusCode::OK, "reviews.html", ctx.into())
}

/// The held message's text and HTML (a send's draft, or the parsed inbound message).
fn bodies(v: &Value) -> (String, Option<String>) {
    let b = if v["direction"] == "inbound" { &v["parsed"] } else { &v["body"] };
    (b["text"].as_str().unwrap_or("").to_owned(), b["html"].as_str().map(str::to_owned))
}

/// `GET /console/reviews/{id}`.
pub async fn detail(State(c): State<Console>, s: Signed, Path(id): Path<String>) -> Response {
    let v = or_page!(c.get(&s.who, &format!("/v1/reviews/{}", segment(&id))).await);
    // The expiry is the hold's; the message view does not carry it.
    let hold = c.state.store.get_hold(&id).await.ok().flatten().filter(|h| h.account_id == s.who.account_id);
    let mut ctx = context(&s, "reviews", "Review");
    ctx.insert("agent".into(), json!(hold.as_ref().map(|h| h.agent_email.clone())));
    draft_facts(&mut ctx, draft(&c, &id).await);
    held_context(&mut ctx, &v, hold.map(|h| h.expires_at));
    ctx.insert("body_url".into(), json!(format!("/console/reviews/{id}/body")));
    page(StatusCode::OK, "review.html", ctx.into())
}

/// What the held-message page shows of `v` (a message view), for a reviewer signed in or
/// one who came by an emailed link.
fn held_context(
    ctx: &mut Map<String, Value>,
    v: &Value,
    expires_at: Option<postagent_core::time::Timestamp>,
) {
    let (text, html) = bodies(v);
    let blocked = html.as_deref().map_or(0, |h| safe::clean(h).1);
    ctx.insert("m".into(), without_raw(v.clone()));
    ctx.insert("why".into(), json!(reason_text(v)));
    ctx.insert("expires_at".into(), json!(expires_at));
    ctx.insert("text".into(), json!(text));
    ctx.insert("has_html".into(), json!(html.is_some()));
    ctx.insert("html_source".into(), json!(html));
    ctx.insert("blocked".into(), json!(blocked));
    ctx.insert("recipients".into(), json!(join(&v["to"])));
    ctx.insert("cc".into(), json!(join(&v["cc"])));
}

/// The page an emailed approve or reject link opens: the same held-message page, whose one
/// form is the link's (its POST acts; a GET never does).
pub(crate) async fn link_page(
    state: &crate::AppState,
    v: &Value,
    expires_at: postagent_core::time::Timestamp,
    token: &str,
    action: &str,
) -> Response {
    let mut ctx = Map::new();
    // Everything the reviewer must see before deciding: the Bcc and the attachments too.
    let id = v["id"].as_str().unwrap_or("");
    let d = state.store.get_draft(id).await.ok().flatten().and_then(|t| serde_json::from_str(&t).ok());
    draft_facts(&mut ctx, d);
    ctx.insert(
        "title".into(),
        json!(if action == "approve" { "Approve this message?" } else { "Reject this message?" }),
    );
    held_context(&mut ctx, v, Some(expires_at));
    ctx.insert("link".into(), json!({"token": token, "action": action}));
    ctx.insert("body_url".into(), json!(format!("/console/link/body?t={token}")));
    page(StatusCode::OK, "review.html", ctx.into())
}

/// `GET /console/link/body?t=…`: the body frame for a holder of an approve or reject link.
pub async fn link_body(State(c): State<Console>, Query(q): Query<LinkToken>) -> Response {
    let now = postagent_core::time::Timestamp::now();
    let ok = |a| postagent_core::magic::check_link(&c.state.secret, &q.t, a, now).ok();
    let Some(id) =
        ok(postagent_core::magic::Action::Approve).or_else(|| ok(postagent_core::magic::Action::Reject))
    else {
        return super::not_found();
    };
    let found = c.state.store.find_message(&id).await.ok().flatten();
    let Some(m) = found else { return super::not_found() };
    match crate::routes::messages::full_view(&c.state, &m).await {
        Ok(v) => frame_of(&v),
        Err(_) => super::not_found(),
    }
}

#[derive(Deserialize, Default)]
pub struct LinkToken {
    #[serde(default)]
    t: String,
}

fn frame_of(v: &Value) -> Response {
    match bodies(v) {
        (_, Some(html)) => safe::frame(&safe::clean(&html).0),
        (text, None) => safe::frame(&format!("<pre>{}</pre>", crate::routes::send::html_escape(&text))),
    }
}

/// What only the draft of a held send says: its Bcc and its attachments.
fn draft_facts(ctx: &mut Map<String, Value>, d: Option<postagent_core::mail::outbound::Draft>) {
    if let Some(d) = d {
        ctx.insert("bcc".into(), json!(d.bcc.join(", ")));
        let files: Vec<Value> = d
            .attachments
            .iter()
            .map(|a| json!({"filename": a.filename, "content_type": a.content_type, "size_bytes": a.data.len() / 4 * 3}))
            .collect();
        ctx.insert("draft_attachments".into(), json!(files));
    }
}

/// A held send's draft: what the agent asked to send, with its Bcc and attachments (the
/// review view leaves both out). Callers have read the review through `/v1` first, which
/// proves the message is the session's account's.
async fn draft(c: &Console, id: &str) -> Option<postagent_core::mail::outbound::Draft> {
    let text = c.state.store.get_draft(id).await.ok().flatten()?;
    serde_json::from_str(&text).ok()
}

/// `GET /console/reviews/{id}/attachments/{index}`: a held message's attachment, as a download.
pub async fn draft_attachment(
    State(c): State<Console>,
    s: Signed,
    Path((id, index)): Path<(String, usize)>,
) -> Response {
    let v = or_page!(c.get(&s.who, &format!("/v1/reviews/{}", segment(&id))).await);
    if v["direction"] == "inbound" {
        // A received message's file: through the API's short-lived download link.
        let hold =
            c.state.store.get_hold(&id).await.ok().flatten().filter(|h| h.account_id == s.who.account_id);
        let Some(h) = hold else { return super::not_found() };
        return super::inboxes::to_download(&c, &s, &h.agent_email, &id, &index.to_string()).await;
    }
    use base64::Engine as _;
    let found = draft(&c, &id).await.and_then(|d| d.attachments.into_iter().nth(index));
    let Some(a) = found else { return super::not_found() };
    match base64::engine::general_purpose::STANDARD.decode(a.data.as_bytes()) {
        Ok(bytes) => crate::download::as_download(Some(&a.filename), Some(&a.content_type), bytes),
        Err(_) => super::not_found(),
    }
}

/// The view without its base64 source (pages never show it; it can be megabytes).
pub(super) fn without_raw(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("raw_message");
    }
    v
}

fn join(list: &Value) -> String {
    list.as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn split(list: &str) -> Vec<String> {
    list.split([',', '\n']).map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// `GET /console/reviews/{id}/body`: the held HTML (or text), cleaned, as a sandboxed frame.
pub async fn body_frame(State(c): State<Console>, s: Signed, Path(id): Path<String>) -> Response {
    let v = or_page!(c.get(&s.who, &format!("/v1/reviews/{}", segment(&id))).await);
    frame_of(&v)
}

/// The edits a form makes to the held message: only fields that changed, so approving as is
/// sends `{}` (which an inbound hold requires).
fn edits(original: &Value, form: &FormData) -> Map<String, Value> {
    let mut out = Map::new();
    if original["direction"] == "inbound" {
        return out;
    }
    let (text, html) = bodies(original);
    let to = split(&form.text("to"));
    if form.get("to").is_some() && to.join(", ") != join(&original["to"]) {
        out.insert("to".into(), json!(to));
    }
    let cc = split(&form.text("cc"));
    if form.get("cc").is_some() && cc.join(", ") != join(&original["cc"]) {
        out.insert("cc".into(), json!(cc));
    }
    if let Some(subject) = form.get("subject").map(str::trim)
        && subject != original["subject"].as_str().unwrap_or("").trim()
    {
        out.insert("subject".into(), json!(subject));
    }
    // Browsers send textarea line ends as CRLF and drop a leading newline: what differs only
    // so is no edit.
    let same = |a: &str, b: &str| {
        a.replace("\r\n", "\n").replace('\r', "\n").trim()
            == b.replace("\r\n", "\n").replace('\r', "\n").trim()
    };
    if let Some(t) = form.get("text").map(|t| t.replace("\r\n", "\n"))
        && !same(&t, &text)
    {
        out.insert("text".into(), json!(t));
    }
    if let (Some(h), Some(orig)) = (form.get("html").map(|h| h.replace("\r\n", "\n")), html)
        && !same(&h, &orig)
    {
        out.insert("html".into(), json!(h));
    }
    out
}

/// `POST /console/reviews/{id}/approve`, with the edits made on the page.
pub async fn approve(
    State(c): State<Console>,
    Path(id): Path<String>,
    Posted { s, form }: Posted,
) -> Response {
    let path = format!("/v1/reviews/{}", segment(&id));
    let original = or_page!(c.get(&s.who, &path).await);
    let body = Value::Object(edits(&original, &form));
    match c.call(&s.who, Method::POST, &format!("{path}/approve"), Some(&body)).await {
        Ok(_) if original["direction"] == "inbound" => see_other("/console/reviews?done=released"),
        Ok(_) => see_other("/console/reviews?done=approved"),
        Err(r) => decision_refused(&r),
    }
}

fn decision_refused(r: &super::api::Refusal) -> Response {
    if r.code == "message_not_pending" {
        return problem(
            StatusCode::CONFLICT,
            "Already decided",
            &format!("{} Nothing was changed.", capitalise(&r.message)),
        );
    }
    r.page()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default() + "."
}

fn reason(form: &FormData) -> Value {
    let r = form.text("reason");
    if r.is_empty() { json!({}) } else { json!({"reason": r.chars().take(2000).collect::<String>()}) }
}

/// `POST /console/reviews/{id}/reject`.
pub async fn reject(
    State(c): State<Console>,
    Path(id): Path<String>,
    Posted { s, form }: Posted,
) -> Response {
    let path = format!("/v1/reviews/{}/reject", segment(&id));
    match c.call(&s.who, Method::POST, &path, Some(&reason(&form))).await {
        Ok(_) => see_other("/console/reviews?done=rejected"),
        Err(r) => decision_refused(&r),
    }
}

/// `POST /console/reviews/bulk`: approve as is, or reject with one reason, every checked one.
pub async fn bulk(State(c): State<Console>, Posted { s, form }: Posted) -> Response {
    let ids = form.all("id");
    if ids.is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing selected",
            "Select at least one message, then decide.",
        );
    }
    let (action, body) = match form.get("action") {
        Some("approve") => ("approve", json!({})),
        Some("reject") => ("reject", reason(&form)),
        _ => return problem(StatusCode::UNPROCESSABLE_ENTITY, "No decision", "Choose approve or reject."),
    };
    let (mut n, mut failed) = (0u32, 0u32);
    for id in ids.iter().take(MAX_BULK) {
        let path = format!("/v1/reviews/{}/{action}", segment(id));
        match c.call(&s.who, Method::POST, &path, Some(&body)).await {
            Ok(_) => n += 1,
            Err(_) => failed += 1,
        }
    }
    // Past the cap nothing is tried: say so rather than drop them silently.
    failed += u32::try_from(ids.len().saturating_sub(MAX_BULK)).unwrap_or(u32::MAX);
    tracing::info!(account = %s.who.account_id, action, decided = n, failed, "console bulk review decision");
    see_other(&format!("/console/reviews?done=bulk&n={n}&failed={failed}"))
}
