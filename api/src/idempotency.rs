//! `Idempotency-Key` on the operations that honour it: same key and same bytes replay the
//! stored response; same key with other bytes is 422 `idempotency_key_reuse`; same key while
//! the first request runs is 409 `idempotency_in_flight`. Errors are not stored, so a failed
//! request may be retried with its key.

use crate::AppState;
use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postagent_core::ids::AccountId;
use postagent_core::sign::sha256_hex;
use postagent_core::store::IdempotencyBegin;
use postagent_core::time::Timestamp;
use std::future::Future;

const MAX_KEY_LEN: usize = 255;

/// The key from the request headers, validated.
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::field("header.Idempotency-Key", "must be 1-255 printable ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

/// Runs `op` at most once per (account, key): its JSON success response is stored and
/// replayed for repeats of the same request.
pub async fn once<F, Fut>(
    state: &AppState,
    account: &AccountId,
    key: Option<String>,
    route: &str,
    raw_body: &[u8],
    op: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>>,
{
    let Some(key) = key else {
        let (status, body) = op().await?;
        return Ok((status, axum::Json(body)).into_response());
    };
    let fingerprint = sha256_hex(&[route.as_bytes(), b"\n", raw_body].concat());
    match state.store.idempotency_begin(account, &key, &fingerprint, Timestamp::now()).await? {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut res = (status, body).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            res.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
            return Ok(res);
        }
        IdempotencyBegin::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            ));
        }
        IdempotencyBegin::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reuse",
                "this Idempotency-Key was used with a different request",
            ));
        }
    }
    match op().await {
        Ok((status, body)) => {
            let text = body.to_string();
            state.store.idempotency_finish(account, &key, status.as_u16(), &text).await?;
            let mut res = (status, text).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            Ok(res)
        }
        Err(e) => {
            if let Err(release) = state.store.idempotency_release(account, &key).await {
                tracing::warn!(error = %release, "could not release an idempotency key");
            }
            Err(e)
        }
    }
}
