//! The console (docs/console.md): server-rendered pages under `/console` for account owners
//! and reviewers. Every read and every decision goes through the `/v1` router in this process
//! (as the MCP tools do), with the session's account as the caller: one implementation of every
//! rule, the same answers, the same events.
//!
//! No JavaScript: every action is a form. Pages send a Content-Security-Policy that allows
//! none, so nothing a message contains can run even if the sanitiser missed it; message HTML is
//! shown only inside a sandboxed frame of its own (see `safe`).

/// The value of a `/v1` answer, or (from the handler) the page for its refusal.
macro_rules! or_page {
    ($call:expr) => {
        match $call {
            Ok(v) => v,
            Err(refusal) => return refusal.page(),
        }
    };
}

mod api;
mod explain;
mod inboxes;
pub(crate) mod reviews;
mod safe;
mod session;
mod setup;
mod signin;
mod templates;

pub use session::SESSION_COOKIE_HTTP;

use crate::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

/// Largest sign-in form (an address or a key, and a token): anything bigger is not one.
const SIGN_IN_BODY: usize = 16 * 1024;

/// Shared by every console handler: the app and the `/v1` router the pages call.
#[derive(Clone)]
pub struct Console {
    pub(crate) state: AppState,
    pub(crate) rest: Router,
}

impl axum::extract::FromRef<Console> for AppState {
    fn from_ref(c: &Console) -> Self {
        c.state.clone()
    }
}

/// The console's routes; `rest` is the `/v1` router its pages call in-process.
pub fn routes(state: AppState, rest: Router) -> Router {
    let console = Console { state, rest };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/reviews") }))
        .route("/console/", get(|| async { Redirect::to("/console/reviews") }))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/login", get(signin::login_form))
        .route("/console/login/email", post(signin::by_email).layer(DefaultBodyLimit::max(SIGN_IN_BODY)))
        .route("/console/login/key", post(signin::by_key).layer(DefaultBodyLimit::max(SIGN_IN_BODY)))
        .route(
            "/console/login/link",
            get(signin::link_page).post(signin::link_post).layer(DefaultBodyLimit::max(SIGN_IN_BODY)),
        )
        .route("/console/logout", post(signin::logout))
        .route("/console/sessions", get(signin::sessions))
        .route("/console/sessions/{id}/revoke", post(signin::revoke))
        .route("/console/link/body", get(reviews::link_body))
        .route("/console/reviews", get(reviews::queue))
        .route("/console/reviews/bulk", post(reviews::bulk))
        .route("/console/reviews/{id}", get(reviews::detail))
        .route("/console/reviews/{id}/body", get(reviews::body_frame))
        .route("/console/reviews/{id}/attachments/{index}", get(reviews::draft_attachment))
        // An edited draft may be as large as a send (text and HTML, form-encoded).
        .route(
            "/console/reviews/{id}/approve",
            post(reviews::approve).layer(DefaultBodyLimit::max(3 * crate::MAX_SEND_BODY_BYTES)),
        )
        .route("/console/reviews/{id}/reject", post(reviews::reject))
        .route("/console/agents", get(inboxes::agents))
        .route("/console/agents/{email}", get(inboxes::agent))
        .route("/console/agents/{email}/protection", post(inboxes::save_protection))
        .route("/console/agents/{email}/conversations", get(inboxes::conversations))
        .route("/console/agents/{email}/conversations/{id}", get(inboxes::conversation))
        .route("/console/agents/{email}/messages/{id}", get(inboxes::message))
        .route("/console/agents/{email}/messages/{id}/body", get(inboxes::body_frame))
        .route("/console/agents/{email}/messages/{id}/attachments/{index}", get(inboxes::attachment))
        .route("/console/domains", get(setup::domains))
        .route("/console/domains/{domain}", get(setup::domain))
        .route("/console/domains/{domain}/verify", post(setup::verify_domain))
        .route("/console/webhooks", get(setup::webhooks))
        .route("/console/webhooks/{id}", get(setup::webhook))
        .route("/console/events/{id}/redeliver", post(setup::redeliver))
        .route("/console/keys", get(setup::keys).post(setup::create_key))
        .route("/console/keys/{id}/revoke", post(setup::revoke_key))
        .route("/console/{*rest}", get(|| async { not_found() }))
        .with_state(console)
}

/// The headers every console page carries. No script may run, nothing may frame the page,
/// and a sign-in link in the address bar never leaves in a `Referer`.
fn harden(res: &mut Response, csp: &'static str) {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex, nofollow"));
}

const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; \
                        form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A rendered page.
pub(crate) fn page(status: StatusCode, template: &str, ctx: Value) -> Response {
    match templates::render(template, &ctx) {
        Ok(html) => {
            let mut res =
                (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
            harden(&mut res, PAGE_CSP);
            res.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
            res
        }
        Err(e) => {
            tracing::error!(template, error = %e, "console template failed");
            let mut res = (StatusCode::INTERNAL_SERVER_ERROR, "The console failed to render this page.")
                .into_response();
            harden(&mut res, PAGE_CSP);
            res
        }
    }
}

/// The one page for "no such thing": a resource of another account looks exactly like one
/// that never existed.
pub(crate) fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "message.html",
        serde_json::json!({"title": "Not found",
        "text": "There is nothing here, or it is not in your account."}),
    )
}

/// A page that says what went wrong, in the console's layout.
pub(crate) fn problem(status: StatusCode, title: &str, text: &str) -> Response {
    page(status, "message.html", serde_json::json!({"title": title, "text": text}))
}

async fn stylesheet() -> Response {
    let mut res = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        templates::STYLESHEET,
    )
        .into_response();
    res.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

/// The context every signed-in page starts from: who, the CSRF token, the nav section.
pub(crate) fn context(s: &session::Signed, section: &str, title: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("me".into(), Value::from(s.session.signed_in_as.clone()));
    m.insert("csrf".into(), Value::from(s.csrf.clone()));
    m.insert("section".into(), Value::from(section));
    m.insert("owner".into(), Value::from(s.role == session::Role::Owner));
    m.insert("title".into(), Value::from(title));
    m
}

/// Rows a listing page shows at most (agents, domains, webhooks, keys).
pub(crate) const MAX_ROWS: usize = 500;

/// A page listing every item of the `/v1` list `list` (up to [`MAX_ROWS`]) as `items`, with
/// `more` when some were left out.
pub(crate) async fn list_page(
    c: &Console,
    s: &session::Signed,
    section: &str,
    title: &str,
    list: &str,
    template: &str,
) -> Response {
    let (items, more) = or_page!(c.all_pages(&s.who, list, MAX_ROWS).await);
    let mut ctx = context(s, section, title);
    ctx.insert("items".into(), Value::from(items));
    ctx.insert("more".into(), Value::from(more));
    page(StatusCode::OK, template, ctx.into())
}

/// A 303 to `to` (after a POST, so reloading does not repeat it).
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
