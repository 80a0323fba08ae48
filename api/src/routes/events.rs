//! `/v1/events`: the event log (oldest first, like a feed), one event with its delivery
//! counts (410 `gone` past retention), and redelivery with the original id and bytes.

use crate::AppState;
use crate::auth::AccountScope;
use crate::body::{QueryParams, RequestBody};
use crate::cursor::Listing;
use crate::error::ApiError;
use crate::views::Page;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use postagent_core::store::{EventFilter, Redelivery, StoreError, StoredEvent};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{EventKind, Word};
use serde::Deserialize;
use serde_json::{Value, json};

/// A replay asked for again within this window returns the one already scheduled.
const REDELIVER_DEDUPE_SECS: i64 = 24 * 3600;

async fn event_view(state: &AppState, e: &StoredEvent) -> Result<Value, ApiError> {
    let envelope: Value = serde_json::from_str(&e.payload).map_err(|_| ApiError::internal())?;
    let counts = state.store.delivery_counts(&e.id).await?;
    let mut v = json!({
        "id": e.id,
        "type": e.kind,
        "schema_version": envelope["schema_version"].as_str().unwrap_or("1"),
        "created_at": envelope.get("created_at").cloned().unwrap_or_else(|| json!(e.created_at)),
        "status": e.status,
        "data": envelope.get("data").cloned().unwrap_or_else(|| json!({})),
        "delivery_status": {
            "matched_webhooks": counts.matched_webhooks, "pending": counts.pending,
            "delivered": counts.delivered, "failed": counts.failed,
        },
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in [
            ("agent_email", &e.agent_email),
            ("conversation_id", &e.conversation_id),
            ("message_id", &e.message_id),
        ] {
            if let Some(val) = val {
                obj.insert(k.into(), json!(val));
            }
        }
    }
    Ok(v)
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let text = |name: &str| q.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let (since, until) = q.time_range()?;
    // An unknown type matches nothing, as a filter on a type never emitted would.
    let kind = match text("type").map(|t| EventKind::parse(&t)) {
        None => None,
        Some(Ok(kind)) => Some(kind),
        Some(Err(_)) => return Ok(Json(Page { items: Vec::new(), next_cursor: None })),
    };
    let filter = EventFilter {
        kind,
        agent_email: text("agent_email").map(|e| e.to_ascii_lowercase()),
        conversation_id: text("conversation_id"),
        message_id: text("message_id"),
        since,
        until,
    };
    // The filters are pinned inside the cursor: a cursor is only good for the same query.
    let pin = format!(
        "events:{}:{}:{}:{}:{}:{}",
        filter.kind.map_or("", EventKind::as_str),
        filter.agent_email.as_deref().unwrap_or(""),
        filter.conversation_id.as_deref().unwrap_or(""),
        filter.message_id.as_deref().unwrap_or(""),
        filter.since.map_or(0, Timestamp::as_micros),
        filter.until.map_or(0, Timestamp::as_micros),
    );
    let list = Listing::new(&state.secret, pin, &q)?;
    let rows = state
        .store
        .list_events(&who.account_id, &filter, list.query.after.as_ref(), list.query.limit)
        .await?;
    let (rows, next_cursor) = list.trim(rows);
    let mut items = Vec::with_capacity(rows.len());
    for e in &rows {
        items.push(event_view(&state, e).await?);
    }
    Ok(Json(Page { items, next_cursor }))
}

/// The account's event, or 404; 410 once it is past retention.
async fn live_event(state: &AppState, who: &AccountScope, id: &str) -> Result<StoredEvent, ApiError> {
    let e =
        state.store.get_event(&who.0.account_id, id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    let keep = i64::try_from(state.webhooks.events_retention.as_secs()).unwrap_or(i64::MAX / 2);
    if e.created_at < Timestamp::now().plus_secs(-keep) {
        return Err(ApiError::new(StatusCode::GONE, "gone", "the event is past the event log's retention"));
    }
    Ok(e)
}

pub async fn get(
    State(state): State<AppState>,
    who: AccountScope,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = live_event(&state, &who, &id).await?;
    Ok(Json(event_view(&state, &e).await?))
}

#[derive(Deserialize)]
pub struct RedeliverRequest {
    #[serde(default)]
    webhook_id: Option<String>,
}

impl RequestBody for RedeliverRequest {
    const FIELDS: &'static [&'static str] = &["webhook_id"];
}

pub async fn redeliver(
    State(state): State<AppState>,
    who: AccountScope,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: RedeliverRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        RedeliverRequest { webhook_id: None }
    } else {
        crate::body::parse_body(&raw)?
    };
    let e = live_event(&state, &who, &id).await?;
    let account = &who.0.account_id;
    if let Some(w) = &req.webhook_id
        && state.store.get_webhook(account, w).await?.is_none()
    {
        return Err(ApiError::not_found("webhook"));
    }
    let now = Timestamp::now();
    let results = state
        .store
        .redeliver(account, &e.id, req.webhook_id.as_deref(), now, now.plus_secs(-REDELIVER_DEDUPE_SECS))
        .await
        .map_err(|err| match err {
            StoreError::Precondition("webhook_never_matched") => ApiError::conflict(
                "conflict",
                "this webhook never received the event, so it cannot be redelivered",
            ),
            StoreError::NotFound => ApiError::not_found("event"),
            err => err.into(),
        })?;
    tracing::info!(account = %account, event = %e.id, replays = results.len(), "event redelivery requested");
    if req.webhook_id.is_some() {
        return match results.into_iter().next() {
            Some(Redelivery::Scheduled { webhook_id, delivery_id }) => Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({"event_id": e.id, "webhook_id": webhook_id, "delivery_id": delivery_id, "status": "pending"}),
                ),
            )),
            Some(Redelivery::Skipped { reason, .. }) => Err(ApiError::conflict("webhook_disabled", reason)),
            None => Err(ApiError::internal()),
        };
    }
    let deliveries: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Redelivery::Scheduled { webhook_id, delivery_id } => {
                json!({"webhook_id": webhook_id, "delivery_id": delivery_id, "status": "pending"})
            }
            Redelivery::Skipped { webhook_id, reason } => {
                json!({"webhook_id": webhook_id, "status": "skipped", "reason": reason})
            }
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": e.id, "status": "scheduled", "deliveries": deliveries})),
    ))
}
