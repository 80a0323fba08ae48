//! Capability links for attachment bytes: `GET …/attachments/{i}/download?token=…` works
//! without a bearer key for 15 minutes. The token is the contract's:
//! `base64url("<msg_id>|<index>|<exp_unix>") + "." + base64url(HMAC-SHA256(secret, payload))`.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postagent_core::inbound;
use postagent_core::magic;
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

pub async fn download(
    State(state): State<AppState>,
    Path((email, id, index)): Path<(String, String, String)>,
    q: crate::body::QueryParams,
) -> Result<Response, ApiError> {
    let denied = || ApiError::not_found("attachment");
    let token = q.get("token").ok_or_else(denied)?;
    let (token_id, token_index) = check(&state.secret, token, Timestamp::now()).ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the download link is invalid or has expired")
    })?;
    if token_id != id || index.parse::<i64>().ok() != Some(token_index) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the download link is for another attachment",
        ));
    }
    let msg = state.store.find_message(&id).await?.ok_or_else(denied)?;
    if msg.agent_email != super::routes::normalize(&email) {
        return Err(denied());
    }
    let meta = state
        .store
        .list_attachments(&id)
        .await?
        .into_iter()
        .find(|a| a.index == token_index)
        .ok_or_else(denied)?;
    let raw = state.store.get_raw(&id).await?.ok_or_else(denied)?;
    let bytes = inbound::attachment_bytes(&raw, usize::try_from(token_index).unwrap_or(usize::MAX))
        .ok_or_else(denied)?;
    let mut res = (StatusCode::OK, bytes).into_response();
    let headers = res.headers_mut();
    // Always a download, never rendered by the browser in our origin.
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    let disposition = format!(
        "attachment; filename=\"{}\"",
        safe_filename(meta.filename.as_deref().unwrap_or("attachment"))
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
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
}
