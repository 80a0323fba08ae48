//! `GET /v1/agents/{email}/messages/{id}/lifecycle` (beta): the message's stage ledger,
//! oldest first, 50 rows a page unless `?limit=` says.

use super::messages::message_for;
use crate::AppState;
use crate::auth::Principal;
use crate::body::QueryParams;
use crate::cursor::Listing;
use crate::error::ApiError;
use crate::views::Page;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

/// The contract's default page for this listing (every other lists 100).
const DEFAULT_LIMIT: u32 = 50;

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let (_, m) = message_for(&state, &who, &email, &id).await?;
    let listing = Listing::with_default(&state.secret, format!("lifecycle:{}", m.id), &q, DEFAULT_LIMIT)?;
    let rows = state.store.list_lifecycle(&m.id, &listing.query).await?;
    Ok(Json(listing.page(rows, |r| r.view())))
}
