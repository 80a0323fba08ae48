//! `/v1/account` and its API keys.

use crate::auth::{AccountScope, Principal};
use crate::body::{QueryParams, RequestBody, StrictJson, check_len};
use crate::cursor::Listing;
use crate::error::{ApiError, FieldError};
use crate::views::{ApiKeyView, Page};
use crate::{AppState, idempotency};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use postagent_core::apikey::KeyScope;
use postagent_core::ids::ApiKeyId;
use postagent_core::service;

use postagent_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

/// Self-hosted deployments have no plans; the caps are large enough never to bind.
const LIMITS: (i64, i64, i64, i64) = (1_000_000, 100_000, 1_000_000_000, 1 << 50);

pub async fn get_account(State(state): State<AppState>, who: Principal) -> Result<Json<Value>, ApiError> {
    let account =
        state.store.get_account(&who.account_id).await?.ok_or_else(|| ApiError::not_found("account"))?;
    let usage = state.store.account_usage(&who.account_id, month_start()).await?;
    let mut view = json!({
        "user": {"id": account.id, "email": account.email},
        "scope": who.scope.as_str(),
        "plan_code": account.plan_code,
        "limits": {
            "max_agents": LIMITS.0, "max_domains": LIMITS.1,
            "max_messages_month": LIMITS.2, "max_storage_bytes": LIMITS.3,
        },
        "usage": {
            "agents": usage.agents, "domains": usage.domains,
            "messages_month": usage.messages_month, "storage_bytes": usage.storage_bytes,
        },
        "upgrade_url": "",
    });
    if let (Some(email), Some(obj)) = (&who.agent_email, view.as_object_mut()) {
        obj.insert("agent_email".into(), json!(email));
    }
    Ok(Json(view))
}

/// The first instant of the current UTC month.
fn month_start() -> Timestamp {
    let now = time::OffsetDateTime::now_utc();
    let start = now.replace_day(1).map(|d| d.replace_time(time::Time::MIDNIGHT)).unwrap_or(now);
    Timestamp::from_offset(start)
}

pub async fn list_keys(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<ApiKeyView>>, ApiError> {
    let list = Listing::new(&state.secret, "api-keys", &q)?;
    let rows = state.store.list_api_keys(&who.account_id, &list.query).await?;
    Ok(Json(list.page(rows, |k| ApiKeyView::from(k))))
}

#[derive(Deserialize)]
pub struct CreateKeyRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    agent_email: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

impl RequestBody for CreateKeyRequest {
    const FIELDS: &'static [&'static str] = &["name", "scope", "agent_email", "expires_at"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_len(errors, "body.name", self.name.as_deref().unwrap_or(""), 200);
        if let Some(s) = &self.scope
            && KeyScope::parse(s).is_none()
        {
            errors.push(FieldError::new("body.scope", "must be account or agent"));
        }
        if self.scope.as_deref() == Some("agent") && self.agent_email.is_none() {
            errors.push(FieldError::new("body.agent_email", "required when scope is agent"));
        }
        if let Some(t) = &self.expires_at
            && Timestamp::parse_rfc3339(t).is_none()
        {
            errors.push(FieldError::new("body.expires_at", "must be an RFC 3339 date-time"));
        }
    }
}

pub async fn create_key(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    headers: HeaderMap,
    body: StrictJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let req = body.value;
    idempotency::once(&state, &who.account_id, key, "POST /v1/account/api-keys", &body.raw, || async {
        let scope = req.scope.as_deref().and_then(KeyScope::parse).unwrap_or(KeyScope::Account);
        let expires_at = req.expires_at.as_deref().and_then(Timestamp::parse_rfc3339);
        if expires_at.is_some_and(|t| t <= Timestamp::now()) {
            return Err(ApiError::bad_request("invalid_expires_at", "expires_at must be in the future"));
        }
        if scope == KeyScope::Account && req.agent_email.is_some() {
            return Err(ApiError::bad_request("invalid_scope", "agent_email is only for scope \"agent\""));
        }
        let name = req.name.clone().unwrap_or_default();
        let (key, plaintext) = service::create_api_key(
            state.store.as_ref(),
            &who.account_id,
            &name,
            scope,
            req.agent_email.as_deref(),
            expires_at,
        )
        .await
        .map_err(|e| match e {
            service::ManageError::InvalidEmail(m) => ApiError::field("body.agent_email", &m),
            e => e.into(),
        })?;
        tracing::info!(account = %who.account_id, key_id = %key.id, scope = scope.as_str(), "API key created");
        let mut view = serde_json::to_value(ApiKeyView::from(&key)).map_err(|_| ApiError::internal())?;
        if let Some(obj) = view.as_object_mut() {
            obj.insert("key".into(), json!(plaintext));
        }
        Ok((StatusCode::CREATED, view))
    })
    .await
}

pub async fn delete_key(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let id = ApiKeyId::parse(&id).ok_or_else(|| ApiError::not_found("API key"))?;
    let now = Timestamp::now();
    if !state.store.revoke_api_key(&who.account_id, &id, now).await? {
        return Err(ApiError::not_found("API key"));
    }
    // The console sessions the key opened end with it.
    let sessions =
        state.store.revoke_console_sessions_of(&who.account_id, &format!("api_key:{id}"), now).await?;
    tracing::info!(account = %who.account_id, key_id = %id, console_sessions = sessions, "API key revoked");
    Ok(Json(json!({"deleted": true, "id": id})))
}
