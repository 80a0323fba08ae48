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

/// A state-changing request from another site is refused before it is read. Browsers say
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

/// A signed-in request: the session, its CSRF token, and the `/v1` caller it acts as.
pub struct Signed {
    pub session: ConsoleSession,
    pub csrf: String,
    pub who: Principal,
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

pub(super) fn csrf_token(c: &Console, session_id: &str) -> String {
    hex::encode(hmac_sha256(c.state.secret.expose(), &[b"console-csrf|", session_id.as_bytes()]))
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
        let session = match c.state.store.console_session(&token_hash(token), now, now.plus_secs(-idle)).await
        {
            Ok(Some(s)) => s,
            Ok(None) => return Err(sign_in()),
            Err(e) => {
                tracing::warn!(error = %e, "console session lookup failed");
                return Err(super::problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again shortly",
                    "The service is busy; reload the page in a moment.",
                ));
            }
        };
        let who = Principal {
            account_id: session.account_id.clone(),
            actor: format!("console:{}", session.signed_in_as),
            scope: KeyScope::Account,
            agent_email: None,
        };
        Ok(Self { csrf: csrf_token(c, &session.id), session, who })
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
        let mut fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        fields.truncate(MAX_FORM_FIELDS);
        Ok(Self(fields))
    }
}
