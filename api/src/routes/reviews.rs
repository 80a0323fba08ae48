//! The review queue (contract §7.3): `GET /v1/reviews`, `GET /v1/reviews/{id}`, approve and
//! reject; and the agent's protection settings (`GET/PUT /v1/agents/{email}/protection`).
//! Everything here needs an account-scoped key: an agent's own key can never approve (or
//! even see) what its agent is waiting on.

use super::messages::full_view;
use super::normalize;
use super::send::AttachmentIn;
use crate::auth::AccountScope;
use crate::body::{QueryParams, RequestBody, StrictJson, check_len};
use crate::cursor::Listing;
use crate::error::{ApiError, FieldError};
use crate::views::Page;
use crate::{AppState, idempotency};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use postagent_core::mail::outbound::MAX_RECIPIENTS;
use postagent_core::mail::protection::{Protection, ProtectionRequest};
use postagent_core::mail::review::{self, DecidedBy, Edits, ReviewError};
use postagent_core::store::{Hold, Message};
use postagent_core::time::Timestamp;
use postagent_core::vocab::Direction;
use serde::Deserialize;
use serde_json::{Value, json};

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NotFound => ApiError::not_found("review"),
            ReviewError::NotPending => {
                ApiError::conflict("message_not_pending", "the message is no longer pending review")
            }
            ReviewError::Expired => ApiError::conflict(
                "message_not_pending",
                "the review window of this message has closed; its on_expiry outcome applies",
            ),
            ReviewError::Draft(d) => d.into(),
            ReviewError::Compose(e) => {
                tracing::error!(error = %e, "composing an approved message failed");
                ApiError::internal()
            }
            ReviewError::BadDraft(e) => {
                tracing::error!(error = %e, "a stored draft cannot be read");
                ApiError::internal()
            }
            ReviewError::Store(e) => e.into(),
            ReviewError::Suppressed { address, by } => {
                postagent_core::metrics::SUPPRESSED_SENDS.inc("api");
                super::suppressions::suppressed(&address, by)
            }
        }
    }
}

/// `ReviewView`.
fn review_view(h: &Hold, m: &Message) -> Value {
    let mut v = json!({
        "id": m.id,
        "agent_email": m.agent_email,
        "direction": m.direction,
        "header_from": m.header_from,
        "envelope_from": m.envelope_from,
        "verified_domain": m.verified_domain,
        "to": m.to,
        "subject": m.subject,
        "review_status": "pending_review",
        "created_at": m.created_at,
        "approval_expires_at": h.expires_at,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(c) = m.conversation_id.as_deref().filter(|c| !c.is_empty()) {
            obj.insert("conversation_id".into(), json!(c));
        }
        if let Ok(reason) = serde_json::from_str::<Value>(&h.reason)
            && reason.get("code").is_some()
        {
            obj.insert("hold_reason".into(), reason);
        }
        if m.flagged {
            obj.insert("flagged".into(), json!(true));
            obj.insert("flag_reason".into(), json!(m.flag_reason));
        }
        if let Some(at) = m.scheduled_at {
            obj.insert("scheduled_at".into(), json!(at));
        }
    }
    v
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let list = Listing::new(&state.secret, "reviews", &q)?;
    let rows = state.store.list_pending_holds(&who.account_id, &list.query).await?;
    Ok(Json(list.page(rows, |(h, m)| review_view(h, m))))
}

/// The held message, if it is this account's.
async fn held(state: &AppState, who: &crate::auth::Principal, id: &str) -> Result<Message, ApiError> {
    let hold = state.store.get_hold(id).await?.filter(|h| h.account_id == who.account_id);
    let hold = hold.ok_or_else(|| ApiError::not_found("review"))?;
    state.store.find_message(&hold.message_id).await?.ok_or_else(|| ApiError::not_found("review"))
}

pub async fn get(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = held(&state, &who, &id).await?;
    Ok(Json(full_view(&state, &m).await?))
}

#[derive(Deserialize, Debug, Default)]
pub struct ApproveRequest {
    to: Option<Vec<String>>,
    cc: Option<Vec<String>>,
    bcc: Option<Vec<String>>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    attachments: Option<Vec<AttachmentIn>>,
}

impl RequestBody for ApproveRequest {
    const FIELDS: &'static [&'static str] = &["to", "cc", "bcc", "subject", "text", "html", "attachments"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        let n = [&self.to, &self.cc, &self.bcc].iter().map(|l| l.as_ref().map_or(0, Vec::len)).sum::<usize>();
        if n > MAX_RECIPIENTS * 3 {
            errors.push(FieldError::new("body.to", "too many recipients"));
        }
        if let Some(to) = &self.to
            && to.is_empty()
        {
            errors.push(FieldError::new("body.to", "must not be empty"));
        }
    }
}

pub async fn approve(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: StrictJson<ApproveRequest>,
) -> Result<Response, ApiError> {
    let m = held(&state, &who, &id).await?;
    let key = idempotency::key_from(&headers)?;
    let r = body.value;
    let edits = Edits {
        to: r.to,
        cc: r.cc,
        bcc: r.bcc,
        subject: r.subject,
        text: r.text,
        html: r.html,
        attachments: r.attachments.map(|l| super::send::attachments(Some(l))),
    };
    if m.direction == Direction::Inbound && edits != Edits::default() {
        return Err(ApiError::field("body", "a held inbound message cannot be edited; approve it with {}"));
    }
    let route = format!("/v1/approve/{}", m.id);
    let account = who.account_id.clone();
    let by = DecidedBy::Reviewer(who.actor.clone());
    let (store, secret) = (state.store.clone(), state.secret.clone());
    idempotency::once_keyed(&state, &account, key, &route, &body.raw, |key| async move {
        let idem = key.map(|k| (who.account_id.clone(), k));
        let decided =
            review::approve(store.as_ref(), &secret, &m.id, edits, by, idem, Timestamp::now()).await?;
        let (status, body) = decided.view();
        Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body))
    })
    .await
}

#[derive(Deserialize, Debug, Default)]
pub struct RejectRequest {
    reason: Option<String>,
}

impl RequestBody for RejectRequest {
    const FIELDS: &'static [&'static str] = &["reason"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(r) = &self.reason {
            check_len(errors, "body.reason", r, 2000);
        }
    }
}

pub async fn reject(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    body: StrictJson<RejectRequest>,
) -> Result<Json<Value>, ApiError> {
    let m = held(&state, &who, &id).await?;
    let by = DecidedBy::Reviewer(who.actor.clone());
    let decided =
        review::reject(state.store.as_ref(), &m.id, body.value.reason, by, Timestamp::now()).await?;
    Ok(Json(decided.view().1))
}

/// `ProtectionConfigView`: the settings with an empty allowlist left out.
fn protection_view(p: &Protection) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
    for dir in ["inbound", "outbound"] {
        if let Some(gate) = v.get_mut(dir).and_then(|d| d.get_mut("gate")).and_then(Value::as_object_mut)
            && gate.get("allowlist").and_then(Value::as_array).is_some_and(Vec::is_empty)
        {
            gate.remove("allowlist");
        }
    }
    v
}

async fn protection_agent(
    state: &AppState,
    who: &crate::auth::Principal,
    email: &str,
) -> Result<String, ApiError> {
    let email = normalize(email);
    let agent = state.store.get_agent(&who.account_id, &email).await?;
    Ok(agent.filter(|a| a.deleted_at.is_none()).ok_or_else(|| ApiError::not_found("agent"))?.email)
}

pub async fn get_protection(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let agent = protection_agent(&state, &who, &email).await?;
    let p = state.store.get_protection(&agent).await?;
    Ok(Json(protection_view(&p)))
}

/// The request schema is strict at every level: unknown keys anywhere are 422.
fn unknown_keys(v: &Value, path: &str, schema: &Value, out: &mut Vec<FieldError>) {
    let (Some(obj), Some(allowed)) = (v.as_object(), schema.as_object()) else { return };
    for (k, child) in obj {
        match allowed.get(k) {
            None => out.push(FieldError::new(format!("{path}.{k}"), "unknown field")),
            Some(sub) => unknown_keys(child, &format!("{path}.{k}"), sub, out),
        }
    }
}

pub async fn put_protection(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(email): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let agent = protection_agent(&state, &who, &email).await?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("the body is not valid JSON: {e}")))?;
    // `automatic` is postagent's extension (docs/sending-safety.md); the outbound one is
    // named as an error by the check below.
    let gate = json!({"policy": null, "allowlist": null, "action": null,
        "automatic": {"action": null, "classes": null}});
    let direction = json!({"gate": gate, "scan": {"sensitivity": null}});
    let schema = json!({
        "inbound": direction, "outbound": direction,
        "holds": {"ttl_seconds": null, "on_expiry": null, "suppress_notifications": null},
    });
    let mut errors = Vec::new();
    unknown_keys(&json, "body", &schema, &mut errors);
    for required in ["inbound", "outbound", "holds"] {
        if json.get(required).is_none() {
            errors.push(FieldError::new(format!("body.{required}"), "required"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let request: ProtectionRequest =
        serde_json::from_value(json).map_err(|e| ApiError::field("body", &e.to_string()))?;
    let p = request.check().map_err(|problems| {
        ApiError::validation(problems.into_iter().map(|(f, m)| FieldError::new(f, m)).collect())
    })?;
    state.store.put_protection(&agent, &p, Timestamp::now()).await?;
    let automatic = p.inbound.gate.automatic.as_ref().map(|a| a.action);
    tracing::info!(account = %who.account_id, agent = %agent, outbound_gate = %p.outbound.gate.policy,
        outbound_action = %p.outbound.gate.action, inbound_gate = %p.inbound.gate.policy,
        inbound_automatic = ?automatic, "protection updated");
    Ok(Json(protection_view(&p)))
}
