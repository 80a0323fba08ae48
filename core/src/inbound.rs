//! Inbound delivery: what the LMTP server does with one message for its agents.
//!
//! [`prepare`] runs once per message: it checks the milter's signed header set (absent or
//! invalid means the message is stored with `authentication: null`, never as verified) and
//! parses the MIME. [`store_for`] then files it for one recipient: threading, then message,
//! attachment metadata and the `email.received` event in one transaction, idempotent per agent
//! and milter message id so a redelivery after a lost 250 is stored once.

use crate::auth::headers::{self, Claims, EntityType};
use crate::ids;
use crate::secret::Secret;
use crate::sign::sha256_hex;
use crate::store::{Inserted, NewAttachment, NewEvent, NewInboundMessage, Store, StoreError};
use crate::time::Timestamp;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

/// Postfix keeps a message queued for up to `maximal_queue_lifetime` (5 days by default); a
/// signature must stay valid while it waits for us.
pub const MAX_SIGNATURE_AGE_SECS: i64 = 7 * 86_400;

/// The message as parsed once, for every recipient.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub claims: Option<Claims>,
    /// Why the signature did not verify, for the log.
    pub unsigned_reason: Option<String>,
    pub source_id: String,
    pub envelope_from: Option<String>,
    pub postfix_queue_id: Option<String>,
    pub raw: Vec<u8>,
    pub parsed: Parsed,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The single From address; `None` when there is not exactly one From with one address.
    pub header_from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: String,
    pub rfc_message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub conversation_header: Option<String>,
    pub attachments: Vec<NewAttachment>,
}

/// Parses what the API shows of a message. Malformed MIME still yields what could be read:
/// a message Postfix accepted is never refused for its formatting.
pub fn parse(raw: &[u8]) -> Parsed {
    let Some(m) = MessageParser::default().parse(raw) else { return Parsed::default() };
    let addrs = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| a.iter().filter_map(|x| x.address().map(str::to_owned)).collect()).unwrap_or_default()
    };
    let from_fields = m.headers().iter().filter(|h| h.name.as_str().eq_ignore_ascii_case("From")).count();
    let from = addrs(m.from());
    let header_from = (from_fields == 1 && from.len() == 1).then(|| from[0].clone());
    let ids_of = |v: &mail_parser::HeaderValue| -> Vec<String> {
        match v {
            mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
            mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    let attachments = m
        .attachments()
        .enumerate()
        .map(|(i, part)| NewAttachment {
            index: i as i64,
            filename: part.attachment_name().map(str::to_owned),
            content_type: part.content_type().map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            }),
            content_id: part.content_id().map(str::to_owned),
            size_bytes: part.contents().len() as i64,
        })
        .collect();
    let conversation_header = m
        .header_raw("X-E2A-Conversation-Id")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 200);
    Parsed {
        header_from,
        to: addrs(m.to()),
        cc: addrs(m.cc()),
        reply_to: addrs(m.reply_to()),
        subject: m.subject().unwrap_or("").to_owned(),
        rfc_message_id: m.message_id().map(str::to_owned),
        in_reply_to: ids_of(m.in_reply_to()).into_iter().next(),
        references: ids_of(m.references()),
        conversation_header,
        attachments,
    }
}

/// The Postfix queue id from the `Received:` line Postfix added last (`… id 4Xb2kQ1cZ3z …`).
pub fn postfix_queue_id(raw: &[u8]) -> Option<String> {
    let (fields, _) = headers::split_message(raw);
    let received = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case("Received"))?;
    let mut words = received.1.split_whitespace();
    while let Some(w) = words.next() {
        if w == "id" {
            let id = words.next()?.trim_end_matches(';');
            return id.bytes().all(|b| b.is_ascii_alphanumeric()).then(|| id.to_owned());
        }
    }
    None
}

pub fn prepare(secret: &Secret, raw: Vec<u8>, envelope_from: &str, now: Timestamp) -> Prepared {
    let (claims, unsigned_reason) = match headers::verify(secret, &raw, now, Some(MAX_SIGNATURE_AGE_SECS)) {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // With a valid signature the milter's id names the message; without one, its bytes do.
    let source_id = match &claims {
        Some(c) => c.message_id.clone(),
        None => format!("raw:{}", sha256_hex(&raw)),
    };
    Prepared {
        claims,
        unsigned_reason,
        source_id,
        envelope_from: Some(envelope_from.to_owned()).filter(|e| !e.is_empty()),
        postfix_queue_id: postfix_queue_id(&raw),
        parsed: parse(&raw),
        raw,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no such agent: {0}")]
    UnknownAgent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Stored { id: String },
    Duplicate { id: String },
}

/// Each agent's copy has its own id, derived from the source so a redelivery maps to the
/// same row.
pub fn message_id_for(source_id: &str, agent_email: &str) -> String {
    format!("msg_{}", &sha256_hex(format!("{source_id}\n{agent_email}").as_bytes())[..32])
}

/// Files the message for `recipient`.
pub async fn store_for(
    store: &dyn Store,
    p: &Prepared,
    recipient: &str,
    now: Timestamp,
) -> Result<Delivered, IngestError> {
    let email =
        ids::AgentEmail::parse(recipient).ok_or_else(|| IngestError::UnknownAgent(recipient.to_owned()))?;
    let agent = store
        .find_live_agent(email.as_str())
        .await?
        .ok_or_else(|| IngestError::UnknownAgent(email.to_string()))?;
    let authentication = p.claims.as_ref().map(|c| c.authentication.clone());
    let verified_domain = authentication.as_ref().and_then(|a| a.verified_domain().map(str::to_owned));
    // The conversation header is ours only on mail our own API sent (signed as agent mail);
    // anything else threads by its references among this agent's messages.
    let trusted_conversation = p
        .claims
        .as_ref()
        .filter(|c| c.entity_type == EntityType::Agent)
        .and(p.parsed.conversation_header.clone());
    let conversation_id = match trusted_conversation {
        Some(c) => Some(c),
        None => {
            let mut refs: Vec<String> = p.parsed.in_reply_to.iter().cloned().collect();
            refs.extend(p.parsed.references.iter().cloned());
            store.find_conversation(&agent.email, &refs).await?
        }
    };
    let id = message_id_for(&p.source_id, &agent.email);
    let auth_json = authentication.as_ref().and_then(|a| serde_json::to_value(a).ok());
    let mut data = json!({
        "message_id": id,
        "agent_email": agent.email,
        "direction": "inbound",
        "header_from": p.parsed.header_from,
        "envelope_from": p.envelope_from,
        "verified_domain": verified_domain,
        "authentication": auth_json,
        "to": p.parsed.to,
        "cc": p.parsed.cc,
        "reply_to": p.parsed.reply_to,
        "delivered_to": agent.email,
        "subject": p.parsed.subject,
        "received_at": now,
        "attachments": p.parsed.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
    });
    if let (Some(conv), Some(obj)) = (&conversation_id, data.as_object_mut()) {
        obj.insert("conversation_id".into(), json!(conv));
    }
    let event_id = format!("evt_{}", &sha256_hex(format!("{id}|email.received").as_bytes())[..32]);
    let envelope = json!({
        "type": "email.received",
        "id": event_id,
        "schema_version": "1",
        "created_at": now,
        "data": data,
    });
    let msg = NewInboundMessage {
        id: id.clone(),
        account_id: agent.account_id.clone(),
        agent_email: agent.email.clone(),
        source_id: p.source_id.clone(),
        header_from: p.parsed.header_from.clone(),
        envelope_from: p.envelope_from.clone(),
        verified_domain,
        to: p.parsed.to.clone(),
        cc: p.parsed.cc.clone(),
        reply_to: p.parsed.reply_to.clone(),
        delivered_to: agent.email.clone(),
        subject: p.parsed.subject.clone(),
        rfc_message_id: p.parsed.rfc_message_id.clone(),
        in_reply_to: p.parsed.in_reply_to.clone(),
        references: p.parsed.references.clone(),
        conversation_id,
        authentication: auth_json.map(|a| a.to_string()),
        raw: p.raw.clone(),
        size_bytes: p.raw.len() as i64,
        postfix_queue_id: p.postfix_queue_id.clone(),
        created_at: now,
    };
    let event = NewEvent {
        id: event_id,
        account_id: agent.account_id.clone(),
        kind: "email.received".into(),
        agent_email: Some(agent.email.clone()),
        message_id: Some(id.clone()),
        payload: envelope.to_string(),
        created_at: now,
    };
    match store.insert_inbound(msg, p.parsed.attachments.clone(), event).await? {
        Inserted::Stored => Ok(Delivered::Stored { id }),
        Inserted::Duplicate { id } => Ok(Delivered::Duplicate { id }),
    }
}

/// The contract's `AttachmentMetaView`.
pub fn attachment_json(a: &NewAttachment) -> serde_json::Value {
    let mut v = json!({"index": a.index, "size_bytes": a.size_bytes});
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in
            [("filename", &a.filename), ("content_type", &a.content_type), ("content_id", &a.content_id)]
        {
            if let Some(val) = val {
                obj.insert(k.into(), json!(val));
            }
        }
    }
    v
}

/// The first text and HTML bodies of a stored message, for the API's `parsed` view.
pub fn bodies(raw: &[u8]) -> (Option<String>, Option<String>) {
    let Some(m) = MessageParser::default().parse(raw) else { return (None, None) };
    let text = m.body_text(0).map(|t| t.into_owned());
    let html = m.body_html(0).map(|h| h.into_owned());
    (text, html)
}

/// The decoded bytes of attachment `index` (document order, as [`parse`] numbers them).
pub fn attachment_bytes(raw: &[u8], index: usize) -> Option<Vec<u8>> {
    let m = MessageParser::default().parse(raw)?;
    m.attachments().nth(index).map(|part| part.contents().to_vec())
}
