//! Suppression lists (contract §1): the account's (`/v1/account/suppressions`, filled by
//! permanent bounces and complaints) and each agent's (`/v1/agents/{email}/suppressions`,
//! manual blocks and unsubscribes). A suppressed address gets 422 `recipient_suppressed` on
//! send, reply, forward and approve, and never reaches Postfix.

use super::messages::agent_for;
use crate::AppState;
use crate::auth::AccountScope;
use crate::body::{QueryParams, RequestBody, StrictJson, check_len};
use crate::cursor::Listing;
use crate::error::{ApiError, FieldError};
use axum::Json;
use axum::extract::{Path, State};
use postagent_core::mail::event::suppression_event;
use postagent_core::store::Suppression;
use postagent_core::time::Timestamp;
use postagent_core::vocab::SuppressionSource;
use serde::Deserialize;
use serde_json::{Value, json};

/// 422 `recipient_suppressed` naming the address and its list's reason (send, reply,
/// forward, approve).
pub fn suppressed(address: &str, by: SuppressionSource) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "recipient_suppressed",
        format!("{address} is suppressed ({by}): nothing was sent; delete the suppression to send to it"),
    )
    .with_details(json!({"address": address, "source": by}))
}

/// `SuppressionView` / `AgentSuppressionView`.
fn view(s: &Suppression) -> Value {
    let mut v = json!({"address": s.address, "source": s.source, "created_at": s.created_at});
    let obj = v.as_object_mut().expect("object");
    if let Some(agent) = &s.agent_email {
        obj.insert("agent_email".into(), json!(agent));
    }
    if let Some(r) = &s.reason {
        obj.insert("reason".into(), json!(r));
    }
    if let (None, Some(m)) = (&s.agent_email, &s.source_message_id) {
        obj.insert("source_message_id".into(), json!(m));
    }
    v
}

/// A recipient address as lists keep it: trimmed, lowercase, a plausible mailbox.
fn address(raw: &str, location: &str) -> Result<String, ApiError> {
    let a = raw.trim().to_ascii_lowercase();
    let ok = a.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !a.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        && a.chars().count() <= 320;
    if ok {
        Ok(a)
    } else {
        Err(ApiError::field(location, "must be an email address (at most 320 characters)"))
    }
}

pub async fn list_account(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<crate::views::Page<Value>>, ApiError> {
    let list = Listing::new(&state.secret, "suppressions", &q)?;
    let rows = state.store.list_suppressions(&who.account_id, None, &list.query).await?;
    Ok(Json(list.page(rows, view)))
}

pub async fn delete_account(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(raw): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let a = address(&raw, "path.address")?;
    if !state.store.delete_suppression(&who.account_id, None, &a).await? {
        return Err(ApiError::not_found("suppression"));
    }
    tracing::info!(account = %who.account_id, address = %a, "suppression lifted");
    Ok(Json(json!({"deleted": true, "address": a})))
}

pub async fn list_agent(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
    q: QueryParams,
) -> Result<Json<crate::views::Page<Value>>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let list = Listing::new(&state.secret, format!("suppressions:{}", agent.email), &q)?;
    let rows = state.store.list_suppressions(&who.account_id, Some(&agent.email), &list.query).await?;
    Ok(Json(list.page(rows, view)))
}

#[derive(Deserialize)]
pub struct CreateAgentSuppressionRequest {
    address: String,
    #[serde(default)]
    reason: Option<String>,
}

impl RequestBody for CreateAgentSuppressionRequest {
    const FIELDS: &'static [&'static str] = &["address", "reason"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_len(errors, "body.address", &self.address, 320);
        if let Some(r) = &self.reason {
            check_len(errors, "body.reason", r, 2000);
        }
    }
}

/// Adds a manual block for the agent; 200 with the entry, the same entry when it exists.
pub async fn create_agent(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
    body: StrictJson<CreateAgentSuppressionRequest>,
) -> Result<Json<Value>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let r = body.value;
    let a = address(&r.address, "body.address")?;
    let s = Suppression {
        account_id: who.account_id.clone(),
        agent_email: Some(agent.email.clone()),
        address: a.clone(),
        source: SuppressionSource::Manual,
        reason: r.reason.filter(|r| !r.trim().is_empty()),
        source_message_id: None,
        created_at: Timestamp::now(),
    };
    if state.store.add_suppression(&s, Some(suppression_event(&s, &[])), Vec::new()).await? {
        postagent_core::metrics::SUPPRESSIONS_ADDED.inc("manual");
        tracing::info!(agent = %agent.email, address = %a, "agent suppression added");
    }
    let stored = state
        .store
        .suppressed(&who.account_id, &agent.email, std::slice::from_ref(&a))
        .await?
        .into_iter()
        .find(|x| x.agent_email.is_some());
    Ok(Json(view(&stored.unwrap_or(s))))
}

pub async fn delete_agent(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path((email, raw)): Path<(String, String)>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let agent = agent_for(&state, &who, &email).await?;
    let a = address(&raw, "path.address")?;
    if !state.store.delete_suppression(&who.account_id, Some(&agent.email), &a).await? {
        return Err(ApiError::not_found("suppression"));
    }
    tracing::info!(agent = %agent.email, address = %a, "agent suppression lifted");
    Ok(Json(json!({"deleted": true, "address": a})))
}
