//! Data rights (contract §3.2, §11): the account export, streamed as it is read, and the
//! account deletion, one transaction with its counts.

use crate::AppState;
use crate::auth::AccountScope;
use crate::body::QueryParams;
use crate::error::ApiError;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use postagent_core::time::Timestamp;
use serde_json::{Value, json};

/// Bytes buffered between the export writer and the connection.
const PIPE_BYTES: usize = 256 * 1024;

/// `GET /v1/account/export`: the `UserExport` envelope. The body is written while the
/// account is read, page by page; a failure half-way aborts the connection, so a client never
/// takes a truncated export for a whole one.
pub async fn export(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
) -> Result<Response, ApiError> {
    let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let store = state.store.clone();
    let shared = state.settings.shared_domain.clone();
    let account = who.account_id.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        let result =
            postagent_core::export::write(store.as_ref(), &account, &shared, Timestamp::now(), &mut writer)
                .await;
        match &result {
            Ok(e) => tracing::info!(account = %account, messages = e.messages, bytes = e.bytes,
                elapsed_ms = started.elapsed().as_millis() as u64, "account exported"),
            Err(e) => tracing::error!(account = %account, error = %e, "account export failed"),
        }
        let _ = done_tx.send(result.is_ok());
    });
    // The stream ends with an error (and the connection is cut) unless the writer finished.
    let end = futures_util::stream::once(async move {
        match done_rx.await {
            Ok(true) => None,
            _ => Some(Err::<Bytes, std::io::Error>(std::io::Error::other("the export failed"))),
        }
    })
    .filter_map(std::future::ready);
    let body = tokio_util::io::ReaderStream::new(reader).chain(end);
    let mut res = Body::from_stream(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let name = format!("attachment; filename=\"postagent-export-{}.json\"", who.account_id);
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// `DELETE /v1/account?confirm=DELETE`: everything the account owns, gone in one transaction.
pub async fn delete(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let gone =
        state.store.delete_account(&who.account_id).await?.ok_or_else(|| ApiError::not_found("account"))?;
    tracing::warn!(account = %who.account_id, messages = gone.messages, agents = gone.agents,
        domains = gone.domains, api_keys = gone.api_keys, "account deleted at its owner's request");
    Ok(Json(result(&gone)))
}

/// e2a's `DeleteUserDataResult`, plus postagent's own counts.
pub fn result(g: &postagent_core::store::DeletedAccount) -> Value {
    json!({
        "deleted": true,
        "user_deleted": true,
        "usage_events_deleted": 0,
        "usage_summaries_deleted": 0,
        "messages_deleted": g.messages,
        "agents_deleted": g.agents,
        "domains_deleted": g.domains,
        "api_keys_deleted": g.api_keys,
        "sessions_deleted": g.sessions,
        "agent_suppressions_deleted": g.agent_suppressions,
        "agent_unsubscribe_tokens_deleted": 0,
        "suppressions_deleted": g.suppressions,
        "events_deleted": g.events,
        "webhooks_deleted": g.webhooks,
        "conversations_deleted": g.conversations,
        "jobs_deleted": g.jobs,
    })
}
