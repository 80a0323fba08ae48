//! `Idempotency-Key` on the operations that honour it: same key and same bytes replay the
//! stored response; same key with other bytes is 422 `idempotency_key_reuse`; same key while
//! the first request runs is 409 `idempotency_in_flight`. Errors are not stored, so a failed
//! request may be retried with its key.
//!
//! The stored response is sealed with the deployment secret: the response to an API-key
//! creation carries the new key, which must never sit in the database in clear. A request
//! that dies without finishing (a panic, a dropped connection) releases its key on the way
//! out; if even that fails, the row is taken over once it is older than [`STALE_AFTER_SECS`].

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
const SEAL_PURPOSE: &str = postagent_core::mail::outbound::send::IDEMPOTENCY_SEAL;
/// An `in_flight` row older than this belongs to a request that is gone.
pub const STALE_AFTER_SECS: i64 = 120;

/// Releases an unfinished key when the request future is dropped or unwinds.
struct Release {
    store: std::sync::Arc<dyn postagent_core::store::Store>,
    account: AccountId,
    key: String,
    armed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, account, key) = (self.store.clone(), self.account.clone(), std::mem::take(&mut self.key));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.idempotency_release(&account, &key).await {
                    tracing::warn!(error = %e, "could not release an abandoned idempotency key");
                }
            });
        }
    }
}

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
    once_keyed(state, account, key, route, raw_body, |_| op()).await
}

/// [`once`], handing `op` the key so it can commit its response in its own transaction
/// (sends do: the 202 is stored with the message, so a crash between the two cannot make a
/// retry send twice).
pub async fn once_keyed<F, Fut>(
    state: &AppState,
    account: &AccountId,
    key: Option<String>,
    route: &str,
    raw_body: &[u8],
    op: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>>,
{
    let Some(key) = key else {
        let (status, body) = op(None).await?;
        return Ok((status, axum::Json(body)).into_response());
    };
    let fingerprint = sha256_hex(&[route.as_bytes(), b"\n", raw_body].concat());
    let now = Timestamp::now();
    let begin = state
        .store
        .idempotency_begin(account, &key, &fingerprint, now, now.plus_secs(-STALE_AFTER_SECS))
        .await?;
    match begin {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, body } => {
            let Some(body) = postagent_core::seal::open(&state.secret, SEAL_PURPOSE, &body) else {
                // Sealed under another deployment secret: the response cannot be replayed.
                tracing::error!(account = %account, "a stored idempotent response cannot be opened; was the secret changed?");
                return Err(ApiError::internal());
            };
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
    let mut guard =
        Release { store: state.store.clone(), account: account.clone(), key: key.clone(), armed: true };
    let outcome = op(Some(key.clone())).await;
    let result = match outcome {
        Ok((status, body)) => {
            let text = body.to_string();
            let sealed = postagent_core::seal::seal(&state.secret, SEAL_PURPOSE, text.as_bytes())
                .ok_or_else(ApiError::internal)?;
            state.store.idempotency_finish(account, &key, status.as_u16(), &sealed).await?;
            let mut res = (status, text).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            Ok(res)
        }
        Err(e) => Err(e),
    };
    // Finished rows stay; anything else (an error, a failed finish) releases the key, before
    // the error is answered, so a client retrying at once is not told the key is in flight.
    if result.is_err() && state.store.idempotency_release(account, &key).await.is_ok() {
        guard.armed = false;
    }
    guard.armed &= result.is_err();
    drop(guard);
    result
}
