//! `/v1/agents/{email}/conversations`: threads derived from the agent's messages.

use super::messages::{agent_for, summary};
use crate::AppState;
use crate::auth::Principal;
use crate::body::QueryParams;
use crate::cursor::Listing;
use crate::error::ApiError;
use crate::views::Page;
use axum::Json;
use axum::extract::{Path, State};
use postagent_core::store::{ConversationSummary, MessageFilter, PageQuery};
use serde_json::{Value, json};

fn view(c: &ConversationSummary) -> Value {
    json!({
        "id": c.id,
        "first_message_at": c.first_message_at,
        "last_message_at": c.last_message_at,
        "message_count": c.message_count,
        "inbound_count": c.inbound_count,
        "outbound_count": c.outbound_count,
        "has_unread": c.has_unread,
        "latest_subject": c.latest_subject,
        "latest_from": c.latest_from,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
    q: QueryParams,
) -> Result<Json<Page<Value>>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let (since, until) = q.time_range()?;
    let pin = format!("conversations:{}:{since:?}:{until:?}", agent.email);
    let list = Listing::new(&state.secret, pin, &q)?;
    let rows =
        state.store.list_conversations(&who.account_id, &agent.email, since, until, &list.query).await?;
    Ok(Json(list.page(rows, view)))
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let c = state
        .store
        .get_conversation(&who.account_id, &agent.email, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let filter = MessageFilter { conversation_id: Some(id), ascending: true, ..MessageFilter::default() };
    let messages = state
        .store
        .list_messages(&who.account_id, &agent.email, &filter, &PageQuery { after: None, limit: 1000 })
        .await?;
    let mut participants: Vec<String> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for m in &messages {
        let people = m.header_from.iter().chain(m.to.iter()).chain(m.cc.iter());
        for p in people {
            if !participants.contains(p) {
                participants.push(p.clone());
            }
        }
        for l in &m.labels {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
    }
    let mut v = view(&c);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("participants".into(), json!(participants));
        obj.insert("labels".into(), json!(labels));
        obj.insert("messages".into(), json!(messages.iter().map(summary).collect::<Vec<_>>()));
    }
    Ok(Json(v))
}
