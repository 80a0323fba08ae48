//! Contacts (beta, SDK 5.5+): `/v1/contacts…` (the account's people, imports) and
//! `/v1/agents/{email}/contacts…` (one agent's outreach with them). Addresses in paths may be
//! display-name mailboxes; they are canonicalized before any lookup. `ETag`/`If-Match` guard
//! read-modify-write loops (412 `precondition_failed`).

use super::messages::agent_for;
use crate::AppState;
use crate::auth::{AccountScope, Principal};
use crate::body::{QueryParams, RequestBody, StrictJson};
use crate::cursor::Listing;
use crate::error::{ApiError, FieldError};
use crate::idempotency;
use crate::views::Page;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use postagent_core::ids::mint;
use postagent_core::mail::outbound::address::parse_mailbox;
use postagent_core::store::stored_object;
use postagent_core::store::{
    Contact, ContactFilter, Engagement, EngagementFilter, EngagementWrite, Import, ImportOutcome, ImportRow,
    OnConflict, StoreError, Upserted,
};
use postagent_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

const MAX_ADDRESS_CHARS: usize = 320;
const MAX_NAME_CHARS: usize = 320;
const MAX_STAGE_CHARS: usize = 128;
const MAX_IMPORT_ROWS: usize = 1000;
const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_BYTES: usize = 128;
const MAX_METADATA_STRING_BYTES: usize = 4096;
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A bare or display-name address, canonicalized (bare, lowercase).
fn canonical(address: &str) -> Option<String> {
    if address.chars().count() > MAX_ADDRESS_CHARS {
        return None;
    }
    parse_mailbox(address).ok().map(|m| m.address.to_ascii_lowercase())
}

fn invalid_recipient(address: &str) -> ApiError {
    ApiError::bad_request("invalid_recipient", format!("{address:?} is not an email address"))
}

/// Metadata as stored: a flat object within its bounds, else why not.
fn metadata(m: &Map<String, Value>) -> Result<String, String> {
    if m.len() > MAX_METADATA_KEYS {
        return Err(format!("metadata has at most {MAX_METADATA_KEYS} keys"));
    }
    for (k, v) in m {
        if k.len() > MAX_METADATA_KEY_BYTES {
            return Err(format!("metadata keys are at most {MAX_METADATA_KEY_BYTES} bytes"));
        }
        match v {
            Value::Object(_) | Value::Array(_) => {
                return Err(format!("metadata.{k}: values are strings, numbers, booleans or null"));
            }
            Value::String(s) if s.len() > MAX_METADATA_STRING_BYTES => {
                return Err(format!(
                    "metadata.{k}: string values are at most {MAX_METADATA_STRING_BYTES} bytes"
                ));
            }
            _ => {}
        }
    }
    let text = serde_json::to_string(m).unwrap_or_else(|_| "{}".into());
    if text.len() > MAX_METADATA_BYTES {
        return Err(format!("metadata is at most {MAX_METADATA_BYTES} bytes as JSON"));
    }
    Ok(text)
}

fn stored_metadata(m: Option<&Map<String, Value>>) -> Result<Option<String>, ApiError> {
    m.map(metadata).transpose().map_err(|e| ApiError::bad_request("invalid_request", e))
}

fn etag(updated_at: Timestamp) -> String {
    format!("\"v{}\"", updated_at.as_micros())
}

/// `If-Match`: `None` when absent, `Some(None)` for `*`, `Some(Some(version))`; a value we
/// never minted matches nothing (`Some(Some(MIN))`).
fn if_match(headers: &HeaderMap) -> Result<Option<Option<Timestamp>>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let v = v.to_str().unwrap_or("").trim();
    if v.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "If-Match must not be empty"));
    }
    if v == "*" {
        return Ok(Some(None));
    }
    let tag = v.strip_prefix("W/").unwrap_or(v);
    let version = tag
        .strip_prefix("\"v")
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .map_or(Timestamp::from_micros(i64::MIN), Timestamp::from_micros);
    Ok(Some(Some(version)))
}

fn stale() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "the resource changed since it was read (If-Match); read it again",
    )
}

fn with_etag(status: StatusCode, body: Value, updated_at: Timestamp) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(updated_at)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn limit_reached() -> ApiError {
    ApiError::bad_request(
        "contact_limit_reached",
        format!("an account may have at most {} contacts", postagent_core::store::MAX_CONTACTS),
    )
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Precondition("contact_limit_reached") => limit_reached(),
        e => e.into(),
    }
}

pub fn contact_view(c: &Contact) -> Value {
    let mut v = json!({
        "address": c.address, "display_name": c.display_name, "metadata": stored_object(&c.metadata),
        "source": c.source, "created_at": c.created_at, "updated_at": c.updated_at,
    });
    if let (Some(b), Some(obj)) = (&c.import_batch_id, v.as_object_mut()) {
        obj.insert("import_batch_id".into(), json!(b));
    }
    v
}

fn contact_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "contact_not_found", "contact not found")
}

fn path_address(address: &str) -> Result<String, ApiError> {
    canonical(address).ok_or_else(contact_not_found)
}

pub async fn list(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let filter = ContactFilter {
        source: q.get("source").map(str::to_owned),
        import_batch_id: q.get("import_batch_id").map(str::to_owned),
        created_after: q.instant("created_after")?,
        created_before: q.instant("created_before")?,
    };
    let pin = format!(
        "contacts:{:?}:{:?}:{:?}:{:?}",
        filter.source, filter.import_batch_id, filter.created_after, filter.created_before
    );
    let list = Listing::new(&state.secret, pin, &q)?;
    let rows = state.store.list_contacts(&who.account_id, &filter, &list.query).await?;
    Ok(Json(list.page(rows, contact_view)))
}

pub async fn get(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(address): Path<String>,
) -> Result<Response, ApiError> {
    let address = path_address(&address)?;
    let c = state.store.get_contact(&who.account_id, &address).await?.ok_or_else(contact_not_found)?;
    Ok(with_etag(StatusCode::OK, contact_view(&c), c.updated_at))
}

#[derive(Deserialize, Debug)]
pub struct CreateRequest {
    address: String,
    display_name: Option<String>,
    metadata: Option<Map<String, Value>>,
}

impl RequestBody for CreateRequest {
    const FIELDS: &'static [&'static str] = &["address", "display_name", "metadata"];
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
            errors.push(FieldError::new("body.display_name", "at most 320 characters"));
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    headers: HeaderMap,
    body: StrictJson<CreateRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let r = body.value;
    idempotency::once(&state, &who.account_id, key, "POST /v1/contacts", &body.raw, || async {
        let address = canonical(&r.address).ok_or_else(|| invalid_recipient(&r.address))?;
        let now = Timestamp::now();
        let c = Contact {
            account_id: who.account_id.clone(),
            address,
            display_name: r.display_name.clone().unwrap_or_default(),
            metadata: stored_metadata(r.metadata.as_ref())?.unwrap_or_else(|| "{}".into()),
            source: "manual".into(),
            import_batch_id: None,
            created_at: now,
            updated_at: now,
        };
        if !state.store.insert_contact(&c).await.map_err(store_error)? {
            return Err(ApiError::conflict(
                "conflict",
                format!("the account already has contact {}", c.address),
            ));
        }
        Ok((StatusCode::CREATED, contact_view(&c)))
    })
    .await
}

#[derive(Deserialize, Debug)]
pub struct UpdateRequest {
    display_name: Option<String>,
    metadata: Option<Map<String, Value>>,
}

impl RequestBody for UpdateRequest {
    const FIELDS: &'static [&'static str] = &["display_name", "metadata"];
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
            errors.push(FieldError::new("body.display_name", "at most 320 characters"));
        }
    }
}

pub async fn update(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(address): Path<String>,
    headers: HeaderMap,
    body: StrictJson<UpdateRequest>,
) -> Result<Response, ApiError> {
    let address = path_address(&address)?;
    let r = body.value;
    let meta = stored_metadata(r.metadata.as_ref())?;
    let expected = match if_match(&headers)? {
        // `*`: any existing row, as no condition.
        Some(Some(v)) => Some(v),
        _ => None,
    };
    let now = Timestamp::now();
    let done = state
        .store
        .update_contact(&who.account_id, &address, r.display_name.as_deref(), meta.as_deref(), expected, now)
        .await?;
    match done {
        None => Err(contact_not_found()),
        Some(false) => Err(stale()),
        Some(true) => {
            let c =
                state.store.get_contact(&who.account_id, &address).await?.ok_or_else(contact_not_found)?;
            Ok(with_etag(StatusCode::OK, contact_view(&c), c.updated_at))
        }
    }
}

pub async fn delete(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(address): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let address = path_address(&address)?;
    if !state.store.delete_contact(&who.account_id, &address).await? {
        return Err(contact_not_found());
    }
    Ok(Json(json!({"address": address, "deleted": true})))
}

#[derive(Deserialize, Debug)]
pub struct ImportRowIn {
    address: Value,
    display_name: Option<Value>,
    metadata: Option<Value>,
}

#[derive(Deserialize, Debug)]
pub struct ImportRequest {
    contacts: Vec<ImportRowIn>,
    agent_email: Option<String>,
    on_conflict: Option<String>,
    stage: Option<String>,
}

impl RequestBody for ImportRequest {
    const FIELDS: &'static [&'static str] = &["contacts", "agent_email", "on_conflict", "stage"];
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.contacts.is_empty() || self.contacts.len() > MAX_IMPORT_ROWS {
            errors.push(FieldError::new("body.contacts", "1 to 1000 rows"));
        }
        if !matches!(self.on_conflict.as_deref(), None | Some("merge" | "skip")) {
            errors.push(FieldError::new("body.on_conflict", "must be merge or skip"));
        }
        if self.stage.as_ref().is_some_and(|s| s.chars().count() > MAX_STAGE_CHARS) {
            errors.push(FieldError::new("body.stage", "at most 128 characters"));
        }
    }
}

/// A row that failed on its own: `(index, address if parsed, code, message)`.
type RowFailure = (usize, Option<String>, &'static str, String);

/// Checks one row; its failure never rejects the rest of the upload.
fn import_row(i: usize, r: &ImportRowIn) -> Result<ImportRow, RowFailure> {
    let raw = r.address.as_str().unwrap_or_default();
    let address = canonical(raw)
        .ok_or_else(|| (i, None, "invalid_recipient", format!("{raw:?} is not an email address")))?;
    let fail = |m: String| (i, Some(address.clone()), "invalid_request", m);
    let display_name = match &r.display_name {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_NAME_CHARS => Some(s.clone()),
        Some(_) => return Err(fail("display_name must be a string of at most 320 characters".into())),
    };
    let metadata = match &r.metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(metadata(m).map_err(fail)?),
        Some(_) => return Err(fail("metadata must be an object".into())),
    };
    Ok(ImportRow { address, display_name, metadata })
}

pub async fn import(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    headers: HeaderMap,
    body: StrictJson<ImportRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency::key_from(&headers)?;
    let r = body.value;
    idempotency::once(&state, &who.account_id, key, "POST /v1/contacts/import", &body.raw, || async {
        if r.stage.is_some() && r.agent_email.is_none() {
            return Err(ApiError::bad_request("invalid_request", "stage requires agent_email"));
        }
        let enrol = match &r.agent_email {
            Some(email) => {
                let agent = agent_for(&state, &who, email).await?;
                Some((agent.email, r.stage.clone().unwrap_or_default()))
            }
            None => None,
        };
        let mut results: Vec<Value> = vec![Value::Null; r.contacts.len()];
        let mut rows = Vec::new();
        let mut at = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, row) in r.contacts.iter().enumerate() {
            match import_row(i, row) {
                Err((i, address, code, message)) => {
                    let mut v = json!({"index": i, "status": "failed", "code": code, "message": message});
                    if let (Some(a), Some(obj)) = (address, v.as_object_mut()) {
                        obj.insert("address".into(), json!(a));
                    }
                    results[i] = v;
                }
                Ok(ok) if !seen.insert(ok.address.clone()) => {
                    results[i] = json!({"index": i, "status": "skipped", "address": ok.address,
                        "code": "duplicate_in_batch", "message": "the address appears earlier in this upload"});
                }
                Ok(ok) => {
                    at.push(i);
                    rows.push(ok);
                }
            }
        }
        let batch_id = mint("imp_", 16);
        let import = Import {
            account_id: who.account_id.clone(),
            batch_id: batch_id.clone(),
            rows,
            on_conflict: if r.on_conflict.as_deref() == Some("skip") { OnConflict::Skip } else { OnConflict::Merge },
            enrol,
            at: Timestamp::now(),
        };
        let outcomes = state.store.import_contacts(&import).await?;
        let addresses: Vec<String> = import.rows.iter().map(|r| r.address.clone()).collect();
        let agent = import.enrol.as_ref().map_or("", |(a, _)| a.as_str());
        let suppressed: std::collections::HashSet<String> =
            state.store.suppressed(&who.account_id, agent, &addresses).await?.into_iter().map(|s| s.address).collect();
        for ((i, row), (outcome, enrolled)) in at.iter().zip(&import.rows).zip(outcomes) {
            let (status, code) = match outcome {
                ImportOutcome::Created => ("created", None),
                ImportOutcome::Updated => ("updated", None),
                ImportOutcome::Skipped => ("skipped", Some("already_exists")),
                ImportOutcome::LimitReached => ("failed", Some("contact_limit_reached")),
            };
            let mut v = json!({"index": i, "status": status, "address": row.address, "enrolled": enrolled,
                "suppressed": suppressed.contains(&row.address)});
            if let (Some(c), Some(obj)) = (code, v.as_object_mut()) {
                obj.insert("code".into(), json!(c));
            }
            results[*i] = v;
        }
        let count = |s: &str| results.iter().filter(|v| v["status"] == s).count();
        let body = json!({"batch_id": batch_id, "created": count("created"), "updated": count("updated"),
            "skipped": count("skipped"), "failed": count("failed"), "results": results});
        tracing::info!(account = %who.account_id, batch = %batch_id, rows = results.len(), "contacts imported");
        Ok((StatusCode::OK, body))
    })
    .await
}

pub async fn delete_import(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    Path(batch_id): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let r = state.store.reverse_import(&who.account_id, &batch_id).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "import_batch_not_found", "no import batch with that id")
    })?;
    Ok(Json(json!({"batch_id": batch_id, "deleted": true, "contacts_deleted": r.contacts_deleted,
        "contacts_retained": r.contacts_retained, "engagements_deleted": r.engagements_deleted})))
}

pub fn engagement_view(e: &Engagement) -> Value {
    let mut v = json!({
        "address": e.address,
        "agent_email": e.agent_email,
        "contact": {"address": e.address, "display_name": e.contact_name, "metadata": stored_object(&e.contact_metadata)},
        "stage": e.stage,
        "metadata": stored_object(&e.metadata),
        "next_action_at": e.next_action_at,
        "first_outbound_at": e.first_outbound_at,
        "last_outbound_at": e.last_outbound_at,
        "last_inbound_at": e.last_inbound_at,
        "inbound_count": e.inbound_count,
        "outbound_count": e.outbound_count,
        "replied": e.replied(),
        "suppressed": e.suppression_source.is_some(),
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in [
            ("last_conversation_id", &e.last_conversation_id),
            ("suppression_source", &e.suppression_source),
            ("suppression_reason", &e.suppression_reason),
        ] {
            if let Some(val) = val.as_ref().filter(|s| !s.is_empty()) {
                obj.insert(k.into(), json!(val));
            }
        }
    }
    v
}

fn engagement_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "engagement_not_found",
        "this agent has no outreach with that contact",
    )
}

fn flag(q: &QueryParams, name: &str) -> Result<Option<bool>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::field(&format!("query.{name}"), "must be true or false")),
    }
}

pub async fn outreach(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let filter = EngagementFilter {
        stage: q.get("stage").map(str::to_owned),
        replied: flag(&q, "replied")?,
        suppressed: flag(&q, "suppressed")?,
        next_action_before: q.instant("next_action_before")?,
        last_outbound_before: q.instant("last_outbound_before")?,
    };
    let pin = format!("outreach:{}:{filter:?}", agent.email);
    let list = Listing::new(&state.secret, pin, &q)?;
    let rows = state.store.list_engagements(&agent.email, &filter, &list.query).await?;
    Ok(Json(list.page(rows, engagement_view)))
}

pub async fn get_outreach(
    State(state): State<AppState>,
    who: Principal,
    Path((email, address)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let address = canonical(&address).ok_or_else(engagement_not_found)?;
    let e = state.store.get_engagement(&agent.email, &address).await?.ok_or_else(engagement_not_found)?;
    Ok(with_etag(StatusCode::OK, engagement_view(&e), e.updated_at))
}

#[derive(Deserialize, Debug)]
pub struct UpsertRequest {
    stage: Option<String>,
    metadata: Option<Map<String, Value>>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    next_action_at: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl RequestBody for UpsertRequest {
    const FIELDS: &'static [&'static str] = &["stage", "metadata", "next_action_at"];
    fn validate(&self, errors: &mut Vec<FieldError>) {
        if self.stage.as_ref().is_some_and(|s| s.chars().count() > MAX_STAGE_CHARS) {
            errors.push(FieldError::new("body.stage", "at most 128 characters"));
        }
        if let Some(Some(t)) = &self.next_action_at
            && Timestamp::parse_lenient(t, false).is_none()
        {
            errors.push(FieldError::new("body.next_action_at", "must be an RFC 3339 date-time"));
        }
    }
}

pub async fn set_outreach(
    State(state): State<AppState>,
    who: Principal,
    Path((email, address)): Path<(String, String)>,
    headers: HeaderMap,
    body: StrictJson<UpsertRequest>,
) -> Result<Response, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let address = canonical(&address).ok_or_else(|| invalid_recipient(&address))?;
    let r = body.value;
    let w = EngagementWrite {
        account_id: agent.account_id.clone(),
        agent_email: agent.email.clone(),
        address: address.clone(),
        stage: r.stage,
        metadata: stored_metadata(r.metadata.as_ref())?,
        next_action_at: r.next_action_at.map(|t| t.and_then(|t| Timestamp::parse_lenient(&t, false))),
        expected: if_match(&headers)?,
        at: Timestamp::now(),
    };
    let status = match state.store.upsert_engagement(&w).await.map_err(store_error)? {
        Upserted::Stale => return Err(stale()),
        Upserted::Created => StatusCode::CREATED,
        Upserted::Updated => StatusCode::OK,
    };
    let e = state.store.get_engagement(&agent.email, &address).await?.ok_or_else(engagement_not_found)?;
    Ok(with_etag(status, engagement_view(&e), e.updated_at))
}

pub async fn delete_outreach(
    State(state): State<AppState>,
    who: Principal,
    Path((email, address)): Path<(String, String)>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    q.require_confirm()?;
    let agent = agent_for(&state, &who, &email).await?;
    let address = canonical(&address).ok_or_else(engagement_not_found)?;
    if !state.store.delete_engagement(&agent.email, &address).await? {
        return Err(engagement_not_found());
    }
    Ok(Json(json!({"address": address, "deleted": true})))
}
