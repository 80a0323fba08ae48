//! Signing in without a password (by an emailed link, or by pasting an account API key once),
//! signing out, and the list of sessions with their revoke buttons.
//!
//! Asking for a link answers the same whether or not the address belongs to an account, and
//! the same when the address has asked too often. The link opens a page with one button;
//! only its POST signs in, so a mail scanner that follows links uses nothing up.

use super::session::{
    FormData, Posted, Signed, clear_cookie, cross_site, same_origin, set_cookie, token_hash,
};
use super::{Console, context, page, problem, see_other};
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postagent_core::apikey::{self, KeyScope};
use postagent_core::ids::AccountId;
use postagent_core::magic;
use postagent_core::store::{ConsoleLogin, NewConsoleSession};
use postagent_core::time::Timestamp;
use serde::Deserialize;
use serde_json::json;

/// A sign-in link works this long.
pub const LINK_TTL_SECS: i64 = 15 * 60;
/// Links one address may ask for per hour.
const LINKS_PER_HOUR: u64 = 5;
/// Links asked for per hour in all (per process on SQLite, per deployment on PostgreSQL).
const LINKS_PER_HOUR_IN_ALL: u64 = 1000;
/// Longest `User-Agent` kept for the sessions page.
const MAX_USER_AGENT: usize = 200;

fn unavailable() -> Response {
    problem(StatusCode::SERVICE_UNAVAILABLE, "Try again shortly", "The service is busy; nothing was changed.")
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    page(status, "login.html", json!({"title": "Sign in", "error": error}))
}

/// `GET /console/login`.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// Starts a session for `account` and sends the browser to the reviews with its cookie.
async fn start_session(c: &Console, parts: &Parts, account: &AccountId, signed_in_as: &str) -> Response {
    let token = postagent_core::ids::mint("", 32);
    let id = postagent_core::ids::mint("cs_", 12);
    let now = Timestamp::now();
    let lifetime = i64::try_from(c.state.settings.console_lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    let user_agent: String = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(MAX_USER_AGENT)
        .collect();
    let hash = token_hash(&token);
    let new = NewConsoleSession {
        id: &id,
        token_hash: &hash,
        account_id: account,
        signed_in_as,
        user_agent: &user_agent,
        now,
        expires_at: now.plus_secs(lifetime),
    };
    if let Err(e) = c.state.store.create_console_session(new).await {
        tracing::warn!(error = %e, "cannot store a console session");
        return unavailable();
    }
    tracing::info!(account = %account, session = %id, signed_in_as, "console sign-in");
    let mut res = see_other("/console/reviews");
    if let Ok(v) = HeaderValue::from_str(&set_cookie(c, &token)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /console/login/email`.
pub async fn by_email(State(c): State<Console>, parts: Parts, form: FormData) -> Response {
    if !same_origin(&c, &parts) {
        return cross_site();
    }
    let email = form.text("email").to_ascii_lowercase();
    let sent = || {
        page(
            StatusCode::OK,
            "message.html",
            json!({"title": "Check your email",
            "text": "If this address belongs to an account's owner or reviewer, a sign-in link is on its way. It works once, for 15 minutes."}),
        )
    };
    if email.len() > 254 || email.parse::<mail_address::Address>().is_err() {
        return login_page(StatusCode::UNPROCESSABLE_ENTITY, Some("Enter an email address."));
    }
    // Answered at once, whatever happens next: the time taken says nothing about the address.
    tokio::spawn(async move {
        if let Err(e) = ask_for_link(&c, &email).await {
            tracing::warn!(error = %e, "console sign-in link not queued");
        }
    });
    sent()
}

mod mail_address {
    /// The shape check of an address typed into the form (the link goes only to an address
    /// some account already names, so this only keeps junk out of the logs).
    pub struct Address;

    impl std::str::FromStr for Address {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let (local, domain) = s.rsplit_once('@').ok_or(())?;
            let ok = !local.is_empty()
                && domain.contains('.')
                && s.bytes().all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b));
            ok.then_some(Address).ok_or(())
        }
    }
}

async fn ask_for_link(c: &Console, email: &str) -> Result<(), postagent_core::StoreError> {
    let store = &c.state.store;
    let now = Timestamp::now();
    let hour = now.as_micros() / 1_000_000;
    let window = hour - hour.rem_euclid(3600);
    // A flood of made-up addresses stops at the deployment's budget before it can fill the
    // per-address counters.
    if store.count_hit("console-login:*", window).await? > LINKS_PER_HOUR_IN_ALL {
        tracing::warn!("console sign-in link not sent: {LINKS_PER_HOUR_IN_ALL} asked for this hour already");
        return Ok(());
    }
    let hits = store.count_hit(&format!("console-login:{email}"), window).await?;
    if hits > LINKS_PER_HOUR {
        tracing::info!(email, "console sign-in link not sent: {LINKS_PER_HOUR} an hour already");
        return Ok(());
    }
    // An address that is an agent would hand the link to whoever holds that agent's key.
    if store.find_live_agent(email).await?.is_some() {
        tracing::warn!(email, "console sign-in link not sent: the address is an agent's");
        return Ok(());
    }
    for account_id in store.console_accounts(email).await? {
        let login = ConsoleLogin {
            id: postagent_core::ids::mint("csl_", 16),
            account_id,
            email: email.to_owned(),
            created_at: now,
            expires_at: now.plus_secs(LINK_TTL_SECS),
            used_at: None,
        };
        store.create_console_login(&login).await?;
        tracing::info!(account = %login.account_id, email, "console sign-in link queued");
    }
    Ok(())
}

#[derive(Deserialize, Default)]
pub struct LinkQuery {
    #[serde(default)]
    t: String,
}

/// The login a link names, if it can still sign in; else the page that says why not.
async fn usable_login(c: &Console, token: &str) -> Result<ConsoleLogin, Response> {
    let invalid = || {
        problem(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "The link is incomplete or has been altered. Ask for a new one.",
        )
    };
    let id = magic::open_sign_in(&c.state.secret, token).ok_or_else(invalid)?;
    let login = c.state.store.get_console_login(&id).await.map_err(|_| unavailable())?.ok_or_else(invalid)?;
    if login.used_at.is_some() || login.expires_at <= Timestamp::now() {
        return Err(problem(
            StatusCode::GONE,
            "This link has been used or has expired",
            "Each sign-in link works once, for 15 minutes. Ask for a new one.",
        ));
    }
    Ok(login)
}

/// `GET /console/login/link?t=…`: the button that signs in.
pub async fn link_page(State(c): State<Console>, Query(q): Query<LinkQuery>) -> Response {
    match usable_login(&c, &q.t).await {
        Ok(login) => {
            page(StatusCode::OK, "link.html", json!({"title": "Sign in", "email": login.email, "token": q.t}))
        }
        Err(res) => res,
    }
}

/// `POST /console/login/link`: uses the link (once) and starts the session.
pub async fn link_post(State(c): State<Console>, parts: Parts, form: FormData) -> Response {
    if !same_origin(&c, &parts) {
        return cross_site();
    }
    let token = form.text("t");
    let login = match usable_login(&c, &token).await {
        Ok(l) => l,
        Err(res) => return res,
    };
    match c.state.store.use_console_login(&login.id, Timestamp::now()).await {
        Ok(true) => start_session(&c, &parts, &login.account_id, &login.email).await,
        Ok(false) => problem(
            StatusCode::GONE,
            "This link has been used or has expired",
            "Each sign-in link works once, for 15 minutes. Ask for a new one.",
        ),
        Err(_) => unavailable(),
    }
}

/// `POST /console/login/key`: an account key, pasted once, starts a session.
pub async fn by_key(State(c): State<Console>, parts: Parts, form: FormData) -> Response {
    if !same_origin(&c, &parts) {
        return cross_site();
    }
    let key = form.text("key");
    let bad = || {
        login_page(StatusCode::UNAUTHORIZED, Some("That key is not valid, or it was revoked or has expired."))
    };
    if !apikey::looks_like_key(&key) {
        return bad();
    }
    let found = match c.state.store.authenticate(&apikey::hash(&key), Timestamp::now()).await {
        Ok(Some(k)) => k,
        Ok(None) => return bad(),
        Err(_) => return unavailable(),
    };
    if found.scope != KeyScope::Account {
        tracing::info!(account = %found.account_id, key_id = %found.id, "console sign-in refused: an agent key");
        return login_page(
            StatusCode::FORBIDDEN,
            Some(
                "This is an agent's key. Agent keys cannot sign in to the console; use an account key or an emailed link.",
            ),
        );
    }
    start_session(&c, &parts, &found.account_id, &format!("api_key:{}", found.id)).await
}

/// `POST /console/logout`.
pub async fn logout(State(c): State<Console>, Posted { s, .. }: Posted) -> Response {
    if c.state
        .store
        .revoke_console_session(&s.session.account_id, &s.session.id, Timestamp::now())
        .await
        .is_err()
    {
        return unavailable();
    }
    tracing::info!(account = %s.session.account_id, session = %s.session.id, "console sign-out");
    signed_out(&c)
}

fn signed_out(c: &Console) -> Response {
    let mut res = see_other("/console/login");
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(c)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

/// `GET /console/sessions`.
pub async fn sessions(State(c): State<Console>, s: Signed) -> Response {
    let now = Timestamp::now();
    let idle = i64::try_from(c.state.settings.console_idle.as_secs()).unwrap_or(i64::MAX / 2);
    let list =
        match c.state.store.list_console_sessions(&s.session.account_id, now, now.plus_secs(-idle)).await {
            Ok(l) => l,
            Err(_) => return unavailable(),
        };
    let rows: Vec<_> = list
        .iter()
        .map(|x| {
            json!({"id": x.id, "signed_in_as": x.signed_in_as, "user_agent": x.user_agent,
                "created_at": x.created_at, "last_seen_at": x.last_seen_at, "current": x.id == s.session.id})
        })
        .collect();
    let mut ctx = context(&s, "sessions", "Sessions");
    ctx.insert("sessions".into(), json!(rows));
    ctx.insert("idle".into(), json!(human(c.state.settings.console_idle)));
    ctx.insert("lifetime".into(), json!(human(c.state.settings.console_lifetime)));
    page(StatusCode::OK, "sessions.html", ctx.into())
}

/// `POST /console/sessions/{id}/revoke`: another session, or this one (which signs out).
pub async fn revoke(State(c): State<Console>, Path(id): Path<String>, Posted { s, .. }: Posted) -> Response {
    match c.state.store.revoke_console_session(&s.session.account_id, &id, Timestamp::now()).await {
        Ok(true) => {
            tracing::info!(account = %s.session.account_id, session = %id, by = %s.session.id, "console session revoked");
            if id == s.session.id { signed_out(&c) } else { see_other("/console/sessions") }
        }
        Ok(false) => super::not_found(),
        Err(_) => unavailable(),
    }
    .into_response()
}
