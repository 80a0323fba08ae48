//! Magic-link pages (contract §7.6): `GET /v1/approve?t=…` and `/v1/reject?t=…` show a
//! small confirmation page whose form POSTs back to the same path; only the POST acts, so a
//! mail scanner that follows links decides nothing. A tampered, expired or already-used token
//! gets a page that says so and changes nothing.

use crate::AppState;
use crate::routes::send::html_escape;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postagent_core::magic::{self, Action, LinkError};
use postagent_core::mail::review::{self, DecidedBy, Edits, ReviewError};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{Direction, HoldState};
use serde::Deserialize;

/// Magic-link reject reasons are cut to this many characters (the API refuses instead).
const MAX_REASON: usize = 2000;

#[derive(Deserialize, Default)]
pub struct Params {
    #[serde(default)]
    t: String,
    #[serde(default)]
    reason: String,
}

pub(crate) fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · postagent</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}\
         dt{{font-weight:600}}button{{font-size:1em;padding:.5em 1.5em}}input{{width:100%;padding:.4em}}</style>\
         </head><body><h1>{t}</h1>{body_html}</body></html>\n",
        t = html_escape(title)
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex, nofollow"));
    res
}

pub(crate) fn problem(status: StatusCode, title: &str, text: &str) -> Response {
    page(status, title, &format!("<p>{}</p>", html_escape(text)))
}

/// The held outbound message a valid token names, or the page that explains why not.
async fn resolve(
    state: &AppState,
    token: &str,
    action: Action,
) -> Result<postagent_core::store::Message, Response> {
    let id = magic::check_link(&state.secret, token, action, Timestamp::now()).map_err(|e| match e {
        LinkError::Invalid => problem(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "The link is incomplete or has been altered. Open it again from the review email.",
        ),
        LinkError::Expired => problem(
            StatusCode::GONE,
            "This link has expired",
            "The review window for this message has closed; nothing was changed.",
        ),
    })?;
    let gone = || problem(StatusCode::NOT_FOUND, "Message not found", "This message no longer exists.");
    let hold = state.store.get_hold(&id).await.map_err(|_| unavailable())?.ok_or_else(gone)?;
    if hold.direction != Direction::Outbound {
        return Err(gone());
    }
    if hold.state != HoldState::Pending {
        return Err(decided_already(Some(hold.state)));
    }
    let agent =
        state.store.find_live_agent(&hold.agent_email).await.map_err(|_| unavailable())?.ok_or_else(gone)?;
    let shared = !state.settings.shared_domain.is_empty() && agent.domain == state.settings.shared_domain;
    if !shared && !agent.domain_verified {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "The sender's domain is not verified",
            "The agent's domain is no longer verified, so nothing can be sent from it; nothing was changed.",
        ));
    }
    state.store.find_message(&id).await.map_err(|_| unavailable())?.ok_or_else(gone)
}

fn decided_already(state: Option<HoldState>) -> Response {
    let what = match state {
        Some(HoldState::Approved) => "approved",
        Some(HoldState::Rejected) => "rejected",
        Some(HoldState::ExpiredApproved) => "approved automatically when its review window closed",
        Some(HoldState::ExpiredRejected | HoldState::Pending) | None => {
            "rejected automatically when its review window closed"
        }
    };
    problem(
        StatusCode::CONFLICT,
        "Already decided",
        &format!("This message was already {what}; this link changes nothing now."),
    )
}

fn unavailable() -> Response {
    problem(StatusCode::SERVICE_UNAVAILABLE, "Try again shortly", "The service is busy; nothing was changed.")
}

fn summary(m: &postagent_core::store::Message) -> String {
    format!(
        "<dl><dt>From</dt><dd>{}</dd><dt>To</dt><dd>{}</dd><dt>Subject</dt><dd>{}</dd></dl>",
        html_escape(&m.agent_email),
        html_escape(&[m.to.clone(), m.cc.clone(), m.bcc.clone()].concat().join(", ")),
        html_escape(&m.subject)
    )
}

/// The GET of a link: the console's held-message page, whose one form is this link's.
async fn confirm(state: &AppState, p: Params, action: Action) -> Response {
    let m = match resolve(state, &p.t, action).await {
        Ok(m) => m,
        Err(page) => return page,
    };
    let hold = match state.store.get_hold(&m.id).await {
        Ok(Some(h)) => h,
        _ => return unavailable(),
    };
    match crate::routes::messages::full_view(state, &m).await {
        Ok(view) => {
            crate::console::reviews::link_page(state, &view, hold.expires_at, p.t.trim(), action.as_str())
                .await
        }
        Err(_) => unavailable(),
    }
}

async fn act(state: &AppState, p: Params, action: Action) -> Response {
    let m = match resolve(state, &p.t, action).await {
        Ok(m) => m,
        Err(page) => return page,
    };
    let by = DecidedBy::Reviewer("magic_link".into());
    let now = Timestamp::now();
    let result = match action {
        Action::Approve => {
            review::approve(state.store.as_ref(), &state.secret, &m.id, Edits::default(), by, None, now).await
        }
        Action::Reject => {
            let reason: String = p.reason.chars().take(MAX_REASON).collect();
            let reason = Some(reason).filter(|r| !r.trim().is_empty());
            review::reject(state.store.as_ref(), &m.id, reason, by, now).await
        }
    };
    match result {
        Ok(_) if action == Action::Approve => page(
            StatusCode::OK,
            "Approved",
            &format!("{}<p>The message is queued for delivery.</p>", summary(&m)),
        ),
        Ok(_) => {
            page(StatusCode::OK, "Rejected", &format!("{}<p>The message will not be sent.</p>", summary(&m)))
        }
        Err(ReviewError::NotPending) => {
            let state_now = state.store.get_hold(&m.id).await.ok().flatten().map(|h| h.state);
            decided_already(state_now)
        }
        Err(ReviewError::Expired) => problem(
            StatusCode::GONE,
            "This link has expired",
            "The review window for this message has closed; nothing was changed.",
        ),
        Err(ReviewError::NotFound) => {
            problem(StatusCode::NOT_FOUND, "Message not found", "This message no longer exists.")
        }
        Err(ReviewError::Draft(e)) => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "This message cannot be sent",
            &format!("It no longer passes the sending limits ({e}); nothing was changed."),
        ),
        Err(e) => {
            tracing::error!(message = %m.id, error = %e, "magic-link decision failed");
            unavailable()
        }
    }
}

fn form(body: &[u8]) -> Params {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub async fn approve_page(State(state): State<AppState>, Query(p): Query<Params>) -> Response {
    confirm(&state, p, Action::Approve).await
}

pub async fn reject_page(State(state): State<AppState>, Query(p): Query<Params>) -> Response {
    confirm(&state, p, Action::Reject).await
}

/// The token comes in the form body (or, from a client that kept it there, the query).
fn merged(q: Params, body: &[u8]) -> Params {
    let f = form(body);
    Params { t: if f.t.is_empty() { q.t } else { f.t }, reason: f.reason }
}

pub async fn approve_post(
    State(state): State<AppState>,
    Query(q): Query<Params>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    act(&state, merged(q, &body), Action::Approve).await
}

pub async fn reject_post(
    State(state): State<AppState>,
    Query(q): Query<Params>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    act(&state, merged(q, &body), Action::Reject).await
}

/// Other methods: 405 with `Allow: GET, POST`.
pub async fn other_method() -> Response {
    let mut res =
        problem(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "Use the link from the email.");
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    res
}
