//! `/v1/agents/{email}/messages`: the inbox (list with the contract's filters), one message
//! (`MessageView`, which marks it read), labels, trash, restore, and attachments (metadata
//! with a signed download link, inline bytes on request).

use super::normalize;
use crate::AppState;
use crate::auth::Principal;
use crate::body::{QueryParams, RequestBody, StrictJson};
use crate::cursor::Listing;
use crate::error::{ApiError, FieldError};
use crate::views::Page;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postagent_core::apikey::KeyScope;
use postagent_core::mail::inbound;
use postagent_core::store::{Agent, Message, MessageFilter};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{Direction, MessageStatus, ReadStatus, Word, optional_str};
use serde::Deserialize;
use serde_json::{Value, json};

/// `parsed.text` is capped; the full text stays in `raw_message`.
const MAX_PARSED_TEXT: usize = 256 * 1024;
/// `?inline=true` returns attachment bytes up to this size.
const MAX_INLINE_ATTACHMENT: usize = 256 * 1024;

/// The path's live agent, if the caller may see it: agent keys only their own (403), other
/// accounts' agents and trashed ones do not exist (404).
pub async fn agent_for(state: &AppState, who: &Principal, email: &str) -> Result<Agent, ApiError> {
    let email = normalize(email);
    who.require_agent(&email)?;
    state
        .store
        .get_agent(&who.account_id, &email)
        .await?
        .filter(|a| a.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found("agent"))
}

pub(super) async fn message_for(
    state: &AppState,
    who: &Principal,
    email: &str,
    id: &str,
) -> Result<(Agent, Message), ApiError> {
    let agent = agent_for(state, who, email).await?;
    let msg = state
        .store
        .get_message(&who.account_id, &agent.email, id)
        .await?
        // Inbound mail a gate held for review or blocked is not the agent's to read: its key
        // sees it as it sees a message that does not exist. The account sees it (reviews).
        .filter(|m| {
            !(who.scope == KeyScope::Agent
                && m.direction == Direction::Inbound
                && matches!(m.status, MessageStatus::Held | MessageStatus::Rejected))
        })
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok((agent, msg))
}

fn insert_opt(obj: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        obj.insert(key.into(), v);
    }
}

/// `MessageSummaryView`.
pub fn summary(m: &Message) -> Value {
    let mut v = json!({
        "id": m.id,
        "direction": m.direction,
        "header_from": m.header_from,
        "envelope_from": m.envelope_from,
        "verified_domain": m.verified_domain,
        "to": m.to,
        "delivered_to": m.delivered_to,
        "subject": m.subject,
        // Outbound rows have no inbox state: "" as the contract says.
        "read_status": optional_str(m.read_status.filter(|_| m.direction == Direction::Inbound)),
        "labels": m.labels,
        "created_at": m.created_at,
        "cc": m.cc,
        "size_bytes": m.size_bytes,
    });
    if let Some(obj) = v.as_object_mut() {
        if m.direction == Direction::Inbound {
            obj.insert("reply_to".into(), json!(m.reply_to));
            // postagent's extension: the address extension the mail came in on
            // (`bot+signup@…` → `signup`), also the system label `e2a:tag:<tag>`.
            insert_opt(
                obj,
                "address_tag",
                postagent_core::mail::inbound::address_tag(&m.delivered_to, &m.agent_email).map(Value::from),
            );
        }
        insert_opt(
            obj,
            "conversation_id",
            m.conversation_id.clone().filter(|c| !c.is_empty()).map(Value::from),
        );
        insert_opt(obj, "deleted_at", m.deleted_at.map(|t| json!(t)));
        insert_opt(obj, "review_status", m.review_status.map(|s| json!(s)));
        insert_opt(obj, "delivery_status", m.delivery_status.map(|s| json!(s)));
        insert_opt(obj, "scheduled_at", m.scheduled_at.map(|t| json!(t)));
        insert_opt(obj, "delivery_detail", m.delivery_detail.clone().map(Value::from));
        insert_opt(obj, "sent_as", m.sent_as.clone().map(Value::from));
        if m.flagged {
            obj.insert("flagged".into(), json!(true));
            insert_opt(obj, "flag_reason", m.flag_reason.clone().map(Value::from));
        }
    }
    v
}

/// `MessageView`: the summary plus authentication, bodies, attachments and the raw MIME.
/// A held outbound draft has no MIME yet: `raw_message` is null and `body` shows what the
/// agent wrote; a held message carries its `hold_reason`.
pub async fn full_view(state: &AppState, m: &Message) -> Result<Value, ApiError> {
    let raw = state.store.get_raw(&m.id).await?;
    let attachments = state.store.list_attachments(&m.id).await?;
    let authentication: Value = match &m.authentication {
        Some(text) => serde_json::from_str(text).map_err(|e| {
            tracing::error!(message = %m.id, error = %e, "stored authentication is not JSON");
            ApiError::internal()
        })?,
        None => Value::Null,
    };
    let mut v = summary(m);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("authentication".into(), authentication);
        // The parsed Reply-To of received mail; a Reply-To set on a send is not echoed back.
        let reply_to: &[String] = if m.direction == Direction::Inbound { &m.reply_to } else { &[] };
        obj.insert("reply_to".into(), json!(reply_to));
        obj.insert("conversation_id".into(), json!(m.conversation_id.clone().unwrap_or_default()));
        obj.insert(
            "attachments".into(),
            json!(attachments.iter().map(postagent_core::mail::event::attachment_json).collect::<Vec<_>>()),
        );
        obj.insert("raw_message".into(), raw.as_ref().map_or(Value::Null, |r| json!(B64.encode(r))));
        if let Some(raw) = raw {
            // Parsing a large message is CPU work: off the async runtime.
            let view = tokio::task::spawn_blocking(move || inbound::body_view(&raw)).await.map_err(|e| {
                tracing::error!(message = %m.id, error = %e, "parsing the stored message failed");
                ApiError::internal()
            })?;
            let html = view.html;
            let text = view.text.unwrap_or_default();
            // `truncated` also when a parse cap left part of the message out (docs/security.md).
            let truncated = text.len() > MAX_PARSED_TEXT || view.truncated;
            let mut cut = text;
            if cut.len() > MAX_PARSED_TEXT {
                let mut end = MAX_PARSED_TEXT;
                while !cut.is_char_boundary(end) {
                    end -= 1;
                }
                cut.truncate(end);
            }
            let mut parsed = json!({"text": cut, "truncated": truncated});
            if let (Some(html), Some(p)) = (html, parsed.as_object_mut()) {
                p.insert("html".into(), json!(html));
            }
            obj.insert("parsed".into(), parsed);
        } else if let Some(draft) = state.store.get_draft(&m.id).await? {
            let draft: postagent_core::mail::outbound::Draft =
                serde_json::from_str(&draft).unwrap_or_default();
            obj.insert("body".into(), json!({"text": draft.text, "html": draft.html}));
        }
        if m.review_status.is_some()
            && let Some(hold) = state.store.get_hold(&m.id).await?
            && let Ok(reason) = serde_json::from_str::<Value>(&hold.reason)
            && reason.get("code").is_some()
        {
            obj.insert("hold_reason".into(), reason);
        }
    }
    Ok(v)
}

fn one_of(q: &QueryParams, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match q.get(name) {
        None | Some("") => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
        Some(_) => {
            Err(ApiError::field(&format!("query.{name}"), &format!("must be one of {}", allowed.join(", "))))
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let trash = q.bool("deleted")?.unwrap_or(false);
    let direction = one_of(&q, "direction", &["inbound", "outbound", "all"])?
        .unwrap_or_else(|| if trash { "all" } else { "inbound" }.to_owned());
    let read = one_of(&q, "read_status", &["unread", "read", "all"])?;
    // Read state exists on inbound mail only; the inbox default is "unread".
    if direction == "outbound" && read.as_deref().is_some_and(|r| r != "all") {
        return Err(ApiError::bad_request(
            "invalid_filter",
            "status filter only applies to inbound messages — pass status=all when direction=outbound",
        ));
    }
    // "all" is no filter; the other values are the vocabulary's words.
    let direction = Direction::parse(&direction).ok();
    let read = match (direction, read) {
        (Some(Direction::Inbound), None) if !trash => Some(ReadStatus::Unread),
        (_, Some(r)) => ReadStatus::parse(&r).ok(),
        _ => None,
    };
    let sort = one_of(&q, "sort", &["asc", "desc"])?.unwrap_or_else(|| "desc".into());
    let (since, until) = q.time_range()?;
    let filter = MessageFilter {
        direction,
        read_status: read,
        from_contains: q.text_filter("from", "from filter")?,
        subject_contains: q.text_filter("subject_contains", "subject_contains filter")?,
        conversation_id: q.text_filter("conversation_id", "conversation_id")?,
        labels: crate::labels::filter(q.get("labels"))?,
        since,
        until,
        trash,
        ascending: sort == "asc",
    };
    // Every filter is pinned in the cursor: a continuation cannot change the listing.
    let pin = format!("messages:{}:{:?}", agent.email, filter);
    let list = Listing::new(&state.secret, pin, &q)?;
    let rows = state.store.list_messages(&who.account_id, &agent.email, &filter, &list.query).await?;
    Ok(Json(list.page(rows, summary)))
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, mut m) = message_for(&state, &who, &email, &id).await?;
    if m.direction == Direction::Inbound
        && m.read_status == Some(ReadStatus::Unread)
        && state.store.mark_read(&m.id, Timestamp::now()).await?
    {
        m.read_status = Some(ReadStatus::Read);
    }
    Ok(Json(full_view(&state, &m).await?))
}

#[derive(Deserialize)]
pub struct UpdateMessageRequest {
    #[serde(default)]
    add_labels: Vec<String>,
    #[serde(default)]
    remove_labels: Vec<String>,
}

impl RequestBody for UpdateMessageRequest {
    const FIELDS: &'static [&'static str] = &["add_labels", "remove_labels"];

    fn validate(&self, _errors: &mut Vec<FieldError>) {}
}

pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
    body: StrictJson<UpdateMessageRequest>,
) -> Result<Json<Value>, ApiError> {
    let (_, m) = message_for(&state, &who, &email, &id).await?;
    let add = crate::labels::change("add_labels", &body.value.add_labels)?;
    let remove = crate::labels::change("remove_labels", &body.value.remove_labels)?;
    if add.is_empty() && remove.is_empty() {
        return Ok(Json(json!({"message_id": m.id, "labels": m.labels})));
    }
    let mut labels = m.labels.clone();
    labels.retain(|l| !remove.contains(l));
    for l in add {
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    crate::labels::check_total(&labels)?;
    state.store.set_labels(&m.id, &labels, Timestamp::now()).await?;
    Ok(Json(json!({"message_id": m.id, "labels": labels})))
}

pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let permanent = q.bool("permanent")?.unwrap_or(false);
    if permanent {
        who.require_account()?;
        q.require_confirm()?;
    }
    let (_, m) = message_for(&state, &who, &email, &id).await?;
    if matches!(m.status.as_str(), "held" | "pending_review") {
        return Err(ApiError::conflict(
            "message_held",
            "the message is held for review; decide the review first",
        ));
    }
    let in_progress = || {
        ApiError::conflict(
            "send_in_progress",
            "the message is being handed to Postfix; it can be deleted once that is over",
        )
    };
    if m.status == MessageStatus::Sending && m.deleted_at.is_none() {
        return Err(in_progress());
    }
    if permanent {
        if m.deleted_at.is_none() {
            return Err(ApiError::conflict(
                "not_in_trash",
                "only a message in the trash can be deleted permanently",
            ));
        }
        state.store.purge_message(&m.id).await?;
    } else if !state.store.set_message_trashed(&m.id, Some(Timestamp::now())).await? {
        // The submitter took it between the read and the trash.
        if state.store.find_message(&m.id).await?.is_some_and(|m| m.status == MessageStatus::Sending) {
            return Err(in_progress());
        }
        return Err(ApiError::not_found("message"));
    }
    tracing::info!(account = %who.account_id, message = %m.id, permanent, "message deleted");
    Ok(Json(json!({"deleted": true, "id": m.id})))
}

pub async fn restore(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, m) = message_for(&state, &who, &email, &id).await?;
    // Back from the trash; an outbound message that had not left is re-armed, or cancelled
    // when its scheduled time passed meanwhile (one transaction, docs/outbound.md).
    if m.deleted_at.is_none() || !state.store.restore_message(&m.id, Timestamp::now()).await? {
        return Err(ApiError::conflict("not_in_trash", "the message is not in the trash"));
    }
    let was = m.status;
    let m = state.store.find_message(&m.id).await?.ok_or_else(|| ApiError::not_found("message"))?;
    if was == MessageStatus::Accepted && m.status == MessageStatus::Failed {
        tracing::info!(
            "NOQUEUE: outbound msg={} agent={} cancelled: restored after its schedule",
            m.id,
            m.agent_email
        );
    }
    Ok(Json(full_view(&state, &m).await?))
}

pub async fn attachment(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id, index)): Path<(String, String, String)>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    // The schema's integer with minimum 0: anything else is 422 before any lookup.
    let index: i64 = index
        .parse()
        .ok()
        .filter(|i| *i >= 0)
        .ok_or_else(|| ApiError::field("path.index", "must be an integer of at least 0"))?;
    let (agent, m) = message_for(&state, &who, &email, &id).await?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "attachment_not_found", "attachment not found");
    let meta = state
        .store
        .list_attachments(&m.id)
        .await?
        .into_iter()
        .find(|a| a.index == index)
        .ok_or_else(not_found)?;
    let expires_at = Timestamp::now().plus_secs(crate::download::TOKEN_TTL_SECS);
    let token = crate::download::token(&state.secret, &m.id, index, expires_at);
    let base = state.settings.public_url_or_default();
    let mut v = postagent_core::mail::event::attachment_json(&meta);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "download_url".into(),
            json!(format!(
                "{base}/v1/agents/{}/messages/{}/attachments/{index}/download?token={token}",
                crate::download::encode_segment(&agent.email),
                m.id
            )),
        );
        obj.insert("expires_at".into(), json!(expires_at));
        if q.bool("inline")?.unwrap_or(false) {
            let size = usize::try_from(meta.size_bytes).unwrap_or(usize::MAX);
            if size > MAX_INLINE_ATTACHMENT {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "attachment_too_large",
                    "the attachment is over 256 KB: use download_url",
                )
                .with_details(json!({"scope": "attachment", "actual_bytes": meta.size_bytes, "max_bytes": MAX_INLINE_ATTACHMENT})));
            }
            let raw = state.store.get_raw(&m.id).await?.ok_or_else(not_found)?;
            let bytes = inbound::attachment_bytes(&raw, usize::try_from(index).unwrap_or(usize::MAX))
                .ok_or_else(not_found)?;
            obj.insert("data".into(), json!(B64.encode(bytes)));
        }
    }
    Ok(Json(v))
}
