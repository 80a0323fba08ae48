//! Capability links for attachment bytes: `GET …/attachments/{i}/download?token=…` works
//! without a bearer key for 15 minutes. The token is the contract's:
//! `base64url("<msg_id>|<index>|<exp_unix>") + "." + base64url(HMAC-SHA256(secret, payload))`.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postagent_core::magic;
use postagent_core::mail::inbound;
use postagent_core::secret::Secret;
use postagent_core::time::Timestamp;

pub const TOKEN_TTL_SECS: i64 = 15 * 60;

pub fn token(secret: &Secret, message_id: &str, index: i64, expires_at: Timestamp) -> String {
    magic::sign(secret, &format!("{message_id}|{index}|{}", expires_at.as_micros() / 1_000_000))
}

/// `(message_id, index)` from a valid, unexpired token.
fn check(secret: &Secret, token: &str, now: Timestamp) -> Option<(String, i64)> {
    let text = magic::open(secret, token)?;
    let mut parts = text.split('|');
    let (id, index, exp) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?.parse::<i64>().ok()?);
    (exp * 1_000_000 > now.as_micros()).then(|| (id.to_owned(), index))
}

/// Path segment encoding for emails in links (`@` and `+` escaped, as the SDK sends them).
pub fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Keeps a filename safe inside a quoted Content-Disposition parameter.
fn safe_filename(name: &str) -> String {
    let cleaned: String =
        name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').take(200).collect();
    if cleaned.trim().is_empty() { "attachment".into() } else { cleaned }
}

/// The `Content-Type` a download is served with: the attachment's own type when it is a
/// plain `type/subtype`, except for types a browser would render or run in our origin
/// (HTML, XML and SVG, scripts), which are served as `application/octet-stream`. The response
/// is always `attachment` and `nosniff` besides.
fn served_type(content_type: Option<&str>) -> HeaderValue {
    const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");
    let Some(ct) = content_type.map(|c| c.trim().to_ascii_lowercase()) else { return OCTETS };
    let token =
        |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    let Some((top, sub)) = ct.split_once('/').filter(|(t, s)| token(t) && token(s)) else { return OCTETS };
    let active = matches!(
        (top, sub),
        ("text", "html" | "xml" | "javascript" | "ecmascript" | "xsl" | "vtt")
            | ("application", "xhtml" | "xml" | "javascript" | "ecmascript" | "x-javascript" | "xslt+xml")
            | ("image", "svg+xml")
            | ("multipart", _)
    ) || sub.ends_with("+xml")
        || sub.ends_with("+html");
    if active { OCTETS } else { HeaderValue::from_str(&ct).unwrap_or(OCTETS) }
}

/// Serves one attachment's bytes for a valid link. The checks run in the contract's order:
/// the index's form (400), the token's presence (401), the token itself (403, before anything
/// is looked up, so a stranger learns nothing), then the agent, message and attachment (404).
pub async fn download(
    State(state): State<AppState>,
    Path((email, id, index)): Path<(String, String, String)>,
    q: crate::body::QueryParams,
) -> Result<Response, ApiError> {
    let index: i64 = index
        .parse()
        .ok()
        .filter(|i| *i >= 0)
        .ok_or_else(|| ApiError::bad_request("invalid_request", "invalid attachment index"))?;
    let token = q
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("token query parameter required"))?;
    let forbidden = || ApiError::forbidden("invalid or expired download token");
    let (token_id, token_index) = check(&state.secret, token, Timestamp::now()).ok_or_else(forbidden)?;
    if token_id != id || token_index != index {
        return Err(forbidden());
    }
    let email = super::routes::normalize(&email);
    let msg = state.store.find_message(&id).await?.ok_or_else(|| ApiError::not_found("message"))?;
    let agent = state.store.get_agent(&msg.account_id, &email).await?.filter(|a| a.deleted_at.is_none());
    if agent.is_none() {
        return Err(ApiError::not_found("agent"));
    }
    if msg.agent_email != email {
        return Err(ApiError::not_found("message"));
    }
    let gone = || ApiError::new(StatusCode::NOT_FOUND, "attachment_not_found", "attachment not found");
    let meta =
        state.store.list_attachments(&id).await?.into_iter().find(|a| a.index == index).ok_or_else(gone)?;
    let raw = state.store.get_raw(&id).await?.ok_or_else(gone)?;
    let bytes =
        inbound::attachment_bytes(&raw, usize::try_from(index).unwrap_or(usize::MAX)).ok_or_else(gone)?;
    Ok(as_download(meta.filename.as_deref(), meta.content_type.as_deref(), bytes))
}

/// Attachment bytes as a response: always a download, never a page of our origin (nosniff is
/// set on every response), typed by [`served_type`]. The console serves held drafts' files
/// through it too.
pub(crate) fn as_download(filename: Option<&str>, content_type: Option<&str>, bytes: Vec<u8>) -> Response {
    let mut res = (StatusCode::OK, bytes).into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, served_type(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    let disposition = match filename.map(safe_filename) {
        Some(name) => format!("attachment; filename=\"{name}\""),
        None => "attachment".to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    #[test]
    fn tokens_verify_expire_and_resist_tampering() {
        let s = Secret::new(vec![3; 32]);
        let now = Timestamp::from_micros(1_700_000_000_000_000);
        let t = token(&s, "msg_x", 2, now.plus_secs(60));
        assert_eq!(check(&s, &t, now), Some(("msg_x".into(), 2)));
        assert_eq!(check(&s, &t, now.plus_secs(61)), None, "expired");
        assert_eq!(check(&Secret::new(vec![4; 32]), &t, now), None);
        let forged =
            format!("{}.{}", B64.encode("msg_x|3|9999999999"), t.split_once('.').map(|x| x.1).unwrap_or(""));
        assert_eq!(check(&s, &forged, now), None);
        assert_eq!(safe_filename("a\"b\r\n.pdf"), "ab.pdf");
    }

    #[test]
    fn downloads_keep_their_type_unless_a_browser_would_render_it() {
        let served = |ct: Option<&str>| served_type(ct).to_str().map(str::to_owned).unwrap_or_default();
        assert_eq!(served(Some("application/pdf")), "application/pdf");
        assert_eq!(served(Some("Image/PNG")), "image/png");
        assert_eq!(served(Some("text/plain")), "text/plain");
        for active in
            ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript", "application/rss+xml"]
        {
            assert_eq!(served(Some(active)), "application/octet-stream", "{active}");
        }
        assert_eq!(
            served(Some("text/plain; charset=utf-8")),
            "application/octet-stream",
            "parameters are not ours"
        );
        assert_eq!(served(None), "application/octet-stream");
    }
}
