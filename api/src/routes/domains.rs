//! `/v1/domains`: register, verify (real DNS through the configured resolver), list, get,
//! delete.

use super::normalize;
use crate::AppState;
use crate::auth::AccountScope;
use crate::body::{QueryParams, RequestBody, StrictJson};
use crate::cursor::Listing;
use crate::error::ApiError;
use crate::views::{DomainView, Page};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use postagent_core::service;

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub struct RegisterDomainRequest {
    domain: String,
}

impl RequestBody for RegisterDomainRequest {
    const FIELDS: &'static [&'static str] = &["domain"];
}

pub async fn register(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    body: StrictJson<RegisterDomainRequest>,
) -> Result<(StatusCode, Json<DomainView>), ApiError> {
    let (domain, created) = service::register_domain(
        state.store.as_ref(),
        &state.secret,
        &who.account_id,
        &body.value.domain,
        &state.settings.shared_domain,
        false,
    )
    .await?;
    if created {
        tracing::info!(account = %who.account_id, domain = %domain.domain, "domain registered");
    }
    // Re-registering one's own domain returns the existing row, still 201 (claim-or-create).
    Ok((StatusCode::CREATED, Json(DomainView::new(&domain, &state.settings.mail_hostname))))
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<DomainView>>, ApiError> {
    let list = Listing::new(&state.secret, "domains", &q)?;
    let rows = state.store.list_domains(&who.account_id, &list.query).await?;
    Ok(Json(list.page(rows, |d| DomainView::new(d, &state.settings.mail_hostname))))
}

pub async fn get(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(domain): Path<String>,
) -> Result<Json<DomainView>, ApiError> {
    let row = state
        .store
        .get_domain(&who.account_id, &normalize(&domain))
        .await?
        .ok_or_else(|| ApiError::not_found("domain"))?;
    Ok(Json(DomainView::new(&row, &state.settings.mail_hostname)))
}

/// Always 200: the caller branches on `verified`.
pub async fn verify(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(domain): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (row, probe) = service::verify_domain(
        state.store.as_ref(),
        &state.secret,
        &state.resolver,
        &who.account_id,
        &normalize(&domain),
        &state.settings.mail_hostname,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("domain"))?;
    let mut view = json!({
        "domain": row.domain,
        "verified": row.verified,
        "txt": probe.txt,
        "mx": probe.mx,
        "spf": probe.spf,
        // postagent does not hold DKIM keys for agent domains: outbound signing is the
        // operator's Postfix (e.g. OpenDKIM), so there is nothing of ours to compare.
        "dkim": "deferred",
    });
    if let (Some(at), Some(obj)) = (row.verified_at, view.as_object_mut()) {
        obj.insert("verified_at".into(), json!(at));
    }
    Ok(Json(view))
}

pub async fn delete(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(domain): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let name = normalize(&domain);
    match state.store.delete_domain(&who.account_id, &name).await {
        Ok(true) => {
            tracing::info!(account = %who.account_id, domain = %name, "domain deleted");
            Ok(Json(json!({"deleted": true, "domain": name, "sending_teardown": "confirmed"})))
        }
        Ok(false) => Err(ApiError::not_found("domain")),
        Err(postagent_core::StoreError::Conflict(_)) => Err(ApiError::bad_request(
            "domain_has_agents",
            "the domain still has agents (live or in trash): delete them with ?permanent=true first",
        )),
        Err(e) => Err(e.into()),
    }
}
