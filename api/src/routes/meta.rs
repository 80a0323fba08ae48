//! Unauthenticated endpoints: health and deployment info.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// `GET /api/health`: 200 `{"status":"ok"}` while the database answers, 503 otherwise, so a
/// load balancer takes a replica that lost its database out of rotation.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
        }
    }
}

/// `GET /v1/info`.
pub async fn info(State(state): State<AppState>) -> Json<Value> {
    let shared = &state.settings.shared_domain;
    let s = &state.settings;
    let events_days = state.webhooks.events_retention.as_secs() / 86_400;
    let mut info = json!({
        "version": crate::API_VERSION,
        "server_version": env!("CARGO_PKG_VERSION"),
        "shared_domain": shared,
        "slug_registration_enabled": !shared.is_empty(),
        // postagent's extension: how long data is kept (docs/storage.md). Bodies: null is
        // for ever, as e2a keeps live mail.
        "retention": {
            "trash_days": s.trash_retention_days,
            "message_days": (s.message_retention_days > 0).then_some(s.message_retention_days),
            "events_days": events_days,
        },
    });
    if let (false, Some(obj)) = (state.settings.public_url.is_empty(), info.as_object_mut()) {
        obj.insert("public_url".into(), json!(state.settings.public_url));
    }
    Json(info)
}
