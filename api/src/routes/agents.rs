//! `/v1/agents`: create (shared-domain slug or verified domain), list (live or trash), get,
//! rename, delete (trash or permanent), restore.

use super::normalize;
use crate::AppState;
use crate::auth::{AccountScope, Principal};
use crate::body::{QueryParams, RequestBody, StrictJson, check_len};
use crate::cursor::Listing;
use crate::error::{ApiError, FieldError};
use crate::views::{AgentView, Page};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use postagent_core::service;
use postagent_core::store::Agent;
use postagent_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub struct CreateAgentRequest {
    email: String,
    #[serde(default)]
    name: Option<String>,
}

impl RequestBody for CreateAgentRequest {
    const FIELDS: &'static [&'static str] = &["email", "name"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_len(errors, "body.email", &self.email, 320);
        name_errors(errors, self.name.as_deref());
    }
}

#[derive(Deserialize)]
pub struct UpdateAgentRequest {
    #[serde(default)]
    name: Option<String>,
}

impl RequestBody for UpdateAgentRequest {
    const FIELDS: &'static [&'static str] = &["name"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        name_errors(errors, self.name.as_deref());
    }
}

/// The service's name rule, reported with the other field errors of the body.
fn name_errors(errors: &mut Vec<FieldError>, name: Option<&str>) {
    if let Some(Err(e)) = name.map(service::check_agent_name) {
        errors.push(FieldError::new("body.name", e.to_string()));
    }
}

fn view(state: &AppState, agent: &Agent) -> Json<AgentView> {
    Json(AgentView::new(agent, &state.settings.shared_domain))
}

pub async fn create(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    body: StrictJson<CreateAgentRequest>,
) -> Result<(StatusCode, Json<AgentView>), ApiError> {
    let req = body.value;
    let agent = service::create_agent(
        state.store.as_ref(),
        &who.account_id,
        &req.email,
        req.name.as_deref().unwrap_or(""),
        &state.settings.shared_domain,
    )
    .await?;
    tracing::info!(account = %who.account_id, agent = %agent.email, "agent created");
    Ok((StatusCode::CREATED, view(&state, &agent)))
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<AgentView>>, ApiError> {
    let trash = q.bool("deleted")?.unwrap_or(false);
    let filter = if trash { "agents:trash" } else { "agents:live" };
    let list = Listing::new(&state.secret, filter, &q)?;
    let rows = state.store.list_agents(&who.account_id, trash, &list.query).await?;
    Ok(Json(list.page(rows, |a| AgentView::new(a, &state.settings.shared_domain))))
}

/// The caller's agent, live or in the trash, or 404 (also for another account's agent:
/// existence is not leaked). Only restore looks into the trash.
async fn owned_any(state: &AppState, who: &Principal, email: &str) -> Result<Agent, ApiError> {
    state.store.get_agent(&who.account_id, email).await?.ok_or_else(|| ApiError::not_found("agent"))
}

/// The caller's live agent, or 404: a trashed agent is seen only in `?deleted=true` lists
/// and by restore, as in e2a.
async fn owned(state: &AppState, who: &Principal, email: &str) -> Result<Agent, ApiError> {
    let agent = owned_any(state, who, email).await?;
    if agent.deleted_at.is_some() {
        return Err(ApiError::not_found("agent"));
    }
    Ok(agent)
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let email = normalize(&email);
    who.require_agent(&email)?;
    let agent = owned(&state, &who, &email).await?;
    Ok(view(&state, &agent))
}

pub async fn update(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
    body: StrictJson<UpdateAgentRequest>,
) -> Result<Json<AgentView>, ApiError> {
    let email = normalize(&email);
    let agent = owned(&state, &who, &email).await?;
    let Some(name) = body.value.name else { return Ok(view(&state, &agent)) };
    let agent = service::rename_agent(state.store.as_ref(), &who.account_id, &email, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(view(&state, &agent))
}

pub async fn delete(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let permanent = q.bool("permanent")?.unwrap_or(false);
    let email = normalize(&email);
    let messages_deleted = if permanent {
        state.store.purge_agent(&who.account_id, &email).await?.ok_or_else(|| ApiError::not_found("agent"))?
    } else {
        if !state.store.trash_agent(&who.account_id, &email, Timestamp::now()).await? {
            return Err(ApiError::not_found("agent"));
        }
        0
    };
    tracing::info!(account = %who.account_id, agent = %email, permanent, messages_deleted, "agent deleted");
    Ok(Json(json!({"deleted": true, "email": email, "messages_deleted": messages_deleted})))
}

pub async fn restore(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let email = normalize(&email);
    let agent = owned_any(&state, &who, &email).await?;
    if agent.deleted_at.is_none() {
        return Err(ApiError::conflict("not_in_trash", "the agent is not in the trash"));
    }
    let agent = state
        .store
        .restore_agent(&who.account_id, &email)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    tracing::info!(account = %who.account_id, agent = %email, "agent restored");
    Ok(view(&state, &agent))
}
