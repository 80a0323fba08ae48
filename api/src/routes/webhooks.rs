//! `/v1/webhooks`: subscriptions (the `whsec_` secret shown once, at create and rotate), the
//! delivery log, and test deliveries through the normal signed pipeline.

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
use postagent_core::ids::AccountId;
use postagent_core::ssrf;
use postagent_core::store::{
    Delivery, NewEvent, NewWebhook, StoreError, Webhook, WebhookFilters, WebhookPatch,
};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{DeliveryState, EventKind, Word, must_be, texts};
use postagent_core::webhook_sig;
use serde::Deserialize;
use serde_json::{Map, Value, json};

const MAX_URL: usize = 2048;
const MAX_FILTER_VALUES: usize = 50;
/// A re-enable this soon after an auto-disable is refused (409 `webhook_cooldown`).
const COOLDOWN_SECS: i64 = 300;
/// How long the previous secret keeps signing after a rotation.
const ROTATION_GRACE_SECS: i64 = 24 * 3600;

pub fn webhook_view(w: &Webhook) -> Value {
    let mut filters = Map::new();
    for (name, list) in [
        ("agent_emails", &w.filters.agent_emails),
        ("conversation_ids", &w.filters.conversation_ids),
        ("labels", &w.filters.labels),
    ] {
        if !list.is_empty() {
            filters.insert(name.into(), json!(list));
        }
    }
    let mut v = json!({
        "id": w.id, "url": w.url, "description": w.description, "events": w.events,
        "filters": filters, "enabled": w.enabled, "created_at": w.created_at,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(t) = w.auto_disabled_at {
            obj.insert("auto_disabled_at".into(), json!(t));
        }
        if let Some(r) = &w.disabled_reason {
            obj.insert("auto_disabled_reason".into(), json!(r));
        }
        if let Some(t) = w.last_delivered_at {
            obj.insert("last_delivered_at".into(), json!(t));
        }
    }
    v
}

fn delivery_view(d: &Delivery) -> Value {
    let mut v = json!({
        "id": d.id, "type": d.event_type, "status": d.status, "attempts": d.attempts,
        "next_retry_at": d.next_retry_at, "created_at": d.created_at, "event_id": d.event_id,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(e) = &d.last_error {
            obj.insert("last_error".into(), json!(e));
        }
        if let Some(c) = d.last_status_code {
            obj.insert("last_status_code".into(), json!(c));
        }
        if let Some(t) = d.last_attempt_at {
            obj.insert("last_attempt_at".into(), json!(t));
        }
    }
    v
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct FiltersRequest {
    #[serde(default)]
    agent_emails: Vec<String>,
    #[serde(default)]
    conversation_ids: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Deserialize)]
pub struct CreateRequest {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    filters: Option<FiltersRequest>,
}

/// The schema's part of `events` and `description` (422): known event types, at most 200
/// characters. The rest (a non-empty list, one-line description) is the handler's, 400.
fn schema_errors(errors: &mut Vec<FieldError>, events: Option<&[String]>, d: Option<&str>) {
    for (i, e) in events.unwrap_or_default().iter().enumerate() {
        if EventKind::parse(e).is_err() {
            errors.push(FieldError::new(
                format!("body.events[{i}]"),
                format!("expected value to be one of {}", texts::<EventKind>().join(", ")),
            ));
        }
    }
    if let Some(d) = d {
        check_len(errors, "body.description", d, 200);
    }
}

fn check_description(d: Option<&str>) -> Result<(), ApiError> {
    if d.is_some_and(|d| d.contains(['\r', '\n'])) {
        return Err(ApiError::bad_request("invalid_request", "description must not contain CR or LF"));
    }
    Ok(())
}

impl RequestBody for CreateRequest {
    const FIELDS: &'static [&'static str] = &["url", "events", "description", "filters"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.url.trim().is_empty() {
            errors.push(FieldError::new("body.url", "must not be empty"));
        }
        check_len(errors, "body.url", &self.url, MAX_URL);
        schema_errors(errors, Some(&self.events), self.description.as_deref());
    }
}

#[derive(Deserialize)]
pub struct UpdateRequest {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    filters: Option<FiltersRequest>,
    #[serde(default)]
    enabled: Option<bool>,
}

impl RequestBody for UpdateRequest {
    const FIELDS: &'static [&'static str] = &["url", "events", "description", "filters", "enabled"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(url) = &self.url {
            if url.trim().is_empty() {
                errors.push(FieldError::new("body.url", "must not be empty"));
            }
            check_len(errors, "body.url", url, MAX_URL);
        }
        schema_errors(errors, self.events.as_deref(), self.description.as_deref());
    }
}

/// The subscribed types, deduplicated. Unknown types never get here (the schema refuses them
/// with 422); the check stays for callers that skip it, as e2a's handler keeps its own.
fn check_events(events: &[String]) -> Result<Vec<EventKind>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "events must be a non-empty array"));
    }
    let mut out: Vec<EventKind> = Vec::new();
    for e in events {
        let kind = EventKind::parse(e).map_err(|_| {
            ApiError::bad_request(
                "invalid_event_type",
                format!("unknown event type {e:?} (allowed: {})", texts::<EventKind>().join(", ")),
            )
        })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

async fn check_filters(
    state: &AppState,
    account: &AccountId,
    f: FiltersRequest,
) -> Result<WebhookFilters, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_filter", m);
    for (name, list) in
        [("agent_emails", &f.agent_emails), ("conversation_ids", &f.conversation_ids), ("labels", &f.labels)]
    {
        if list.len() > MAX_FILTER_VALUES {
            return Err(bad(format!("filters.{name} takes at most {MAX_FILTER_VALUES} values")));
        }
        if let Some(v) = list.iter().find(|v| v.is_empty() || v.chars().count() > 200) {
            return Err(bad(format!("filters.{name}: {v:?} must be 1 to 200 characters")));
        }
    }
    let conv_ok = |c: &str| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if let Some(c) = f.conversation_ids.iter().find(|c| !conv_ok(c)) {
        return Err(bad(format!("filters.conversation_ids: {c:?} may only hold letters, digits, _ and -")));
    }
    let labels = f
        .labels
        .iter()
        .map(|l| crate::labels::normalize(l).map_err(|e| bad(format!("filters.labels: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut agents = Vec::new();
    for email in &f.agent_emails {
        let email = email.trim().to_ascii_lowercase();
        match state.store.get_agent(account, &email).await? {
            Some(a) if a.deleted_at.is_none() => agents.push(email),
            _ => return Err(bad(format!("filters.agent_emails: {email} is not one of your agents"))),
        }
    }
    Ok(WebhookFilters { agent_emails: agents, conversation_ids: f.conversation_ids, labels })
}

/// The SSRF guard at registration: the URL's shape, then every address its host resolves to.
async fn check_target(state: &AppState, url: &str) -> Result<String, ApiError> {
    let mode = state.webhooks.mode;
    let invalid =
        |e: ssrf::Refused| ApiError::bad_request("invalid_webhook_url", format!("webhook URL refused: {e}"));
    let target = ssrf::check_url(url.trim(), mode).map_err(invalid)?;
    if let Some(host) = &target.host {
        state.resolver.webhook_addresses(host, mode).await.map_err(invalid)?;
    }
    Ok(target.url.to_string())
}

fn webhook_id(id: &str) -> Result<&str, ApiError> {
    let ok =
        id.strip_prefix("wh_").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok { Ok(id) } else { Err(ApiError::not_found("webhook")) }
}

pub async fn create(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    headers: HeaderMap,
    body: StrictJson<CreateRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let req = body.value;
    idempotency::once(&state, &who.account_id, key, "POST /v1/webhooks", &body.raw, || async {
        check_description(req.description.as_deref())?;
        let events = check_events(&req.events)?;
        let filters = check_filters(&state, &who.account_id, req.filters.clone().unwrap_or_default()).await?;
        let url = check_target(&state, &req.url).await?;
        let secret = webhook_sig::mint_secret();
        // Shown once, here; the store keeps it sealed under the deployment secret.
        let sealed = webhook_sig::seal_secret(&state.secret, &secret).ok_or_else(ApiError::internal)?;
        let created = state
            .store
            .create_webhook(NewWebhook {
                id: postagent_core::ids::mint("wh_", 16),
                account_id: who.account_id.clone(),
                url,
                description: req.description.clone().unwrap_or_default(),
                secret: sealed,
                events,
                filters,
                created_at: Timestamp::now(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Precondition("webhook_limit_reached") => ApiError::bad_request(
                    "webhook_limit_reached",
                    format!("an account may have at most {} webhooks", postagent_core::store::MAX_WEBHOOKS),
                ),
                e => e.into(),
            })?;
        tracing::info!(account = %who.account_id, webhook = %created.id, url = %created.url, "webhook created");
        let mut view = webhook_view(&created);
        if let Some(obj) = view.as_object_mut() {
            obj.insert("signing_secret".into(), json!(secret));
        }
        Ok((StatusCode::CREATED, view))
    })
    .await
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let list = Listing::new(&state.secret, "webhooks", &q)?;
    let rows = state.store.list_webhooks(&who.account_id, &list.query).await?;
    Ok(Json(list.page(rows, webhook_view)))
}

async fn find(state: &AppState, account: &AccountId, id: &str) -> Result<Webhook, ApiError> {
    let id = webhook_id(id)?;
    state.store.get_webhook(account, id).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

pub async fn get(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(webhook_view(&find(&state, &who.account_id, &id).await?)))
}

pub async fn update(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    body: StrictJson<UpdateRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = webhook_id(&id)?.to_owned();
    find(&state, &who.account_id, &id).await?;
    let req = body.value;
    check_description(req.description.as_deref())?;
    let events = req.events.as_deref().map(check_events).transpose()?;
    let filters = match req.filters {
        Some(f) => Some(check_filters(&state, &who.account_id, f).await?),
        None => None,
    };
    let url = match &req.url {
        Some(u) => Some(check_target(&state, u).await?),
        None => None,
    };
    let patch = WebhookPatch { url, description: req.description, events, filters, enabled: req.enabled };
    let now = Timestamp::now();
    let updated = state
        .store
        .update_webhook(&who.account_id, &id, patch, now, now.plus_secs(-COOLDOWN_SECS))
        .await
        .map_err(|e| match e {
            StoreError::Precondition("webhook_cooldown") => ApiError::conflict(
                "webhook_cooldown",
                format!("the webhook was disabled automatically less than {COOLDOWN_SECS} s ago; fix the receiver and retry shortly"),
            ),
            e => e.into(),
        })?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    tracing::info!(account = %who.account_id, webhook = %id, enabled = updated.enabled, "webhook updated");
    Ok(Json(webhook_view(&updated)))
}

pub async fn delete(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let id = webhook_id(&id)?;
    if !state.store.delete_webhook(&who.account_id, id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    tracing::info!(account = %who.account_id, webhook = %id, "webhook deleted");
    Ok(Json(json!({"deleted": true, "id": id})))
}

pub async fn rotate(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let id = webhook_id(&id)?.to_owned();
    let route = format!("POST /v1/webhooks/{id}/rotate-secret");
    idempotency::once(&state, &who.account_id, key, &route, &raw, || async {
        find(&state, &who.account_id, &id).await?;
        let secret = webhook_sig::mint_secret();
        let sealed = webhook_sig::seal_secret(&state.secret, &secret).ok_or_else(ApiError::internal)?;
        let now = Timestamp::now();
        let until = now.plus_secs(ROTATION_GRACE_SECS);
        if !state.store.rotate_webhook_secret(&who.account_id, &id, &sealed, until, now).await? {
            return Err(ApiError::not_found("webhook"));
        }
        tracing::info!(account = %who.account_id, webhook = %id, previous_until = %until, "webhook secret rotated");
        Ok((StatusCode::OK, json!({"signing_secret": secret, "previous_secret_expires_at": until})))
    })
    .await
}

#[derive(Deserialize)]
pub struct TestRequest {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
}

impl RequestBody for TestRequest {
    const FIELDS: &'static [&'static str] = &["type", "data"];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(k) = &self.kind
            && EventKind::parse(k).is_err()
        {
            errors.push(FieldError::new("body.type", "must be one of the event types"));
        }
    }
}

pub async fn test(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    // The body is optional: the SDK may send none.
    let req: TestRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        TestRequest { kind: None, data: None }
    } else {
        crate::body::parse_body(&raw)?
    };
    let hook = find(&state, &who.account_id, &id).await?;
    if !hook.enabled {
        return Err(ApiError::conflict("webhook_disabled", "the webhook is disabled; enable it to test"));
    }
    // The schema checked the type (422 otherwise).
    let kind = req
        .kind
        .as_deref()
        .map_or(Ok(EventKind::EmailReceived), EventKind::parse)
        .map_err(|_| ApiError::internal())?;
    let now = Timestamp::now();
    let event_id = postagent_core::ids::mint("evt_", 16);
    let data = req.data.map(Value::Object).unwrap_or_else(|| json!({"test": true}));
    let envelope =
        json!({"type": kind, "id": event_id, "schema_version": "1", "created_at": now, "data": data});
    let deliveries = state
        .store
        .emit_event(NewEvent {
            id: event_id.clone(),
            account_id: who.account_id.clone(),
            kind,
            agent_email: None,
            message_id: None,
            conversation_id: None,
            labels: Vec::new(),
            payload: envelope.to_string(),
            created_at: now,
            internal: true,
            only_webhook: Some(hook.id.clone()),
        })
        .await?;
    let delivery_id = deliveries.into_iter().next().ok_or_else(ApiError::internal)?;
    tracing::info!(account = %who.account_id, webhook = %hook.id, delivery = %delivery_id, "test delivery scheduled");
    Ok(Json(json!({"delivery_id": delivery_id})))
}

pub async fn deliveries(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let hook = find(&state, &who.account_id, &id).await?;
    let status = match q.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            DeliveryState::parse(s)
                .map_err(|_| ApiError::field("query.status", &must_be::<DeliveryState>()))?,
        ),
    };
    let pin = format!("deliveries:{}:{}", hook.id, status.map_or("", DeliveryState::as_str));
    let list = Listing::new(&state.secret, pin, &q)?;
    let rows = state.store.list_deliveries(&who.account_id, &hook.id, status, &list.query).await?;
    Ok(Json(list.page(rows, delivery_view)))
}

/// A postagent extension: one delivery with every try (status, duration, the start of the
/// receiver's answer, the error).
pub async fn delivery(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = webhook_id(&id)?;
    let (d, attempts) = state
        .store
        .get_delivery(&who.account_id, id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let mut view = delivery_view(&d);
    let log: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt, "status_code": a.status_code, "duration_ms": a.duration_ms,
                "response_body": a.response_body, "error": a.error, "created_at": a.created_at,
            })
        })
        .collect();
    if let Some(obj) = view.as_object_mut() {
        obj.insert("attempt_log".into(), json!(log));
    }
    Ok(Json(view))
}
