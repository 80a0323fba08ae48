//! Who is signed in: the session cookie, the CSRF token of its forms, and the cross-site
//! check every POST passes before anything else.
//!
//! The cookie holds 32 random bytes; the store keeps only their SHA-256, so a leaked
//! database signs nobody in. It is `HttpOnly`, `SameSite=Strict`, scoped to `/console`, and
//! `Secure` (under the `__Secure-` name) when `public_url` is https. Each session's forms carry
//! `HMAC(secret, "console-csrf|" + session id)`, compared in constant time.

use super::Console;
use crate::auth::Principal;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use postagent_core::apikey::KeyScope;
use postagent_core::sign::{ct_eq, hmac_sha256, sha256_hex};
use postagent_core::store::ConsoleSession;
use postagent_core::time::Timestamp;

/// The cookie's name on plain http (a development or loopback deployment).
pub const SESSION_COOKIE_HTTP: &str = "postagent_console";
/// Its name when `public_url` is https: browsers accept it only with `Secure`.
const SESSION_COOKIE_HTTPS: &str = "__Secure-postagent_console";

/// Form fields read at most (a bulk decision names up to this many messages).
const MAX_FORM_FIELDS: usize = 1000;

fn https(c: &Console) -> bool {
    c.state.settings.public_url.starts_with("https://")
}

fn cookie_name(c: &Console) -> &'static str {
    if https(c) { SESSION_COOKIE_HTTPS } else { SESSION_COOKIE_HTTP }
}

/// `Set-Cookie` for a new session token (a session cookie: the server decides expiry).
pub(super) fn set_cookie(c: &Console, token: &str) -> String {
    let secure = if https(c) { "; Secure" } else { "" };
    format!("{}={token}; Path=/console; HttpOnly; SameSite=Strict{secure}", cookie_name(c))
}

/// `Set-Cookie` that removes it.
pub(super) fn clear_cookie(c: &Console) -> String {
    let secure = if https(c) { "; Secure" } else { "" };
    format!("{}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}", cookie_name(c))
}

pub(super) fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

fn cookie_token<'a>(c: &Console, parts: &'a Parts) -> Option<&'a str> {
    let name = cookie_name(c);
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A state-changing request from another site is refused before anything is done. Browsers say
/// where a request comes from (`Sec-Fetch-Site`, or at least `Origin`); a request that says
/// neither is not a browser's cross-site form, and still needs the CSRF token. An `Origin`
/// passes when it is this request's host or `public_url`'s (a proxy may rewrite `Host`).
pub(super) fn same_origin(c: &Console, parts: &Parts) -> bool {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return true;
    }
    if let Some(site) = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
    let public = c.state.settings.public_url.trim_end_matches('/');
    (!host.is_empty() && origin_host.eq_ignore_ascii_case(host))
        || (!public.is_empty() && origin.eq_ignore_ascii_case(public))
}

pub(super) fn cross_site() -> Response {
    super::problem(
        StatusCode::FORBIDDEN,
        "Refused",
        "This request came from another site. Nothing was changed; use the console's own pages.",
    )
}

/// What a session may do. The account's owner (signed in by the owner's address or an
/// account key) has the whole console; the account's reviewer decides holds and nothing else:
/// a reviewer is trusted with the account's holds, not its keys, webhooks or settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Reviewer,
}

impl Role {
    /// The pages a reviewer may open or post to (everything else is the owner's).
    fn allows(self, path: &str) -> bool {
        self == Role::Owner
            || path == "/console/reviews"
            || path.starts_with("/console/reviews/")
            || path == "/console/logout"
            || path.starts_with("/console/link/")
    }
}

/// The page for a store that cannot answer now.
fn busy(e: postagent_core::StoreError) -> Response {
    tracing::warn!(error = %e, "console session lookup failed");
    super::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "The service is busy; reload the page in a moment.",
    )
}

/// A signed-in request: the session, its CSRF token, and the `/v1` caller it acts as.
pub struct Signed {
    pub session: ConsoleSession,
    pub csrf: String,
    pub who: Principal,
    pub role: Role,
}

impl Signed {
    /// The refusal page when the form's CSRF token is not this session's.
    pub fn csrf_refusal(&self, form: &FormData) -> Option<Response> {
        let sent = form.get("csrf").unwrap_or("");
        if ct_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            None
        } else {
            Some(super::problem(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form has expired or did not come from this console. Nothing was changed; reload the page and try again.",
            ))
        }
    }
}

/// The session's CSRF token, under a key of its own derived from the deployment secret (so a
/// token can never pass for a signed link, whose MACs use the secret itself).
pub(super) fn csrf_token(c: &Console, session_id: &str) -> String {
    let key = hmac_sha256(c.state.secret.expose(), &[b"postagent console csrf key"]);
    hex::encode(hmac_sha256(&key, &[session_id.as_bytes()]))
}

/// The session's role, read afresh on every request: an address signed in by link is the
/// owner's or the reviewer's as the account says *now* (changing the reviewer ends the old
/// one's sessions); a session opened by an account key is the owner's.
async fn role_of(c: &Console, session: &ConsoleSession) -> Result<Option<Role>, postagent_core::StoreError> {
    if session.signed_in_as.starts_with("api_key:") {
        return Ok(Some(Role::Owner));
    }
    let Some(account) = c.state.store.get_account(&session.account_id).await? else { return Ok(None) };
    let me = session.signed_in_as.as_str();
    Ok(if account.email.eq_ignore_ascii_case(me) {
        Some(Role::Owner)
    } else if account.reviewer_email.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(me)) {
        Some(Role::Reviewer)
    } else {
        None
    })
}

impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Response> {
        if !same_origin(c, parts) {
            return Err(cross_site());
        }
        let sign_in = || Redirect::to("/console/login").into_response();
        let token = cookie_token(c, parts).ok_or_else(sign_in)?;
        let now = Timestamp::now();
        let idle = i64::try_from(c.state.settings.console_idle.as_secs()).unwrap_or(i64::MAX / 2);
        let session = c
            .state
            .store
            .console_session(&token_hash(token), now, now.plus_secs(-idle))
            .await
            .map_err(busy)?
            .ok_or_else(sign_in)?;
        // No role any more (the address is not the account's owner or reviewer now): the
        // session is over.
        let role = role_of(c, &session).await.map_err(busy)?.ok_or_else(sign_in)?;
        if !role.allows(parts.uri.path()) {
            return Err(super::problem(
                StatusCode::FORBIDDEN,
                "For the account's owner",
                "A reviewer decides held messages; this page is the account owner's.",
            ));
        }
        let who = Principal {
            account_id: session.account_id.clone(),
            actor: format!("console:{}", session.signed_in_as),
            scope: KeyScope::Account,
            agent_email: None,
        };
        Ok(Self { csrf: csrf_token(c, &session.id), session, who, role })
    }
}

/// A signed-in form post whose CSRF token is the session's: what every state-changing console
/// handler takes, so none can forget the check.
pub struct Posted {
    pub s: Signed,
    pub form: FormData,
}

impl FromRequest<Console> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, c: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let s = Signed::from_request_parts(&mut parts, c).await?;
        let form = FormData::from_request(Request::from_parts(parts, body), c).await?;
        match s.csrf_refusal(&form) {
            Some(refused) => Err(refused),
            None => Ok(Self { s, form }),
        }
    }
}

/// An `application/x-www-form-urlencoded` body, repeated names kept (bulk decisions).
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// A field, trimmed; empty when missing.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_owned()
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|_| {
            super::problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is too large; nothing was changed.",
            )
        })?;
        // Only the first fields are decoded: a body of a million empty pairs costs nothing.
        let fields = form_urlencoded::parse(&bytes)
            .take(MAX_FORM_FIELDS)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Self(fields))
    }
}
