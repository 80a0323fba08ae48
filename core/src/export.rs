//! The account export (`GET /v1/account/export`, `postagent admin accounts export`): e2a's
//! stable `UserExport` envelope, schema version "4", written as it is read. The records come
//! first (with the account's templates, at most [`crate::store::MAX_TEMPLATES`]), then the
//! messages page by page (each with its raw MIME in base64, which carries its attachments),
//! then the contacts and each agent's outreach page by page, so the memory used is one page
//! (at most 200 messages and 16 MiB of bodies, or one larger message) whatever the account's
//! size.

use crate::ids::AccountId;
use crate::store::{
    AccountRecords, AgentRecord, Contact, ContactFilter, Engagement, EngagementFilter, ExportedMessage,
    PageQuery, Store, StoredTemplate,
};
use crate::time::Timestamp;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The interior record shapes' version (contract §3.2).
pub const SCHEMA_VERSION: &str = "4";
/// Messages read per page.
const PAGE: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no such account")]
    NoAccount,
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    pub messages: u64,
    pub bytes: u64,
}

/// Writes the account's export to `out`. `shared_domain` agents count as verified.
pub async fn write<W: AsyncWrite + Unpin + Send>(
    store: &dyn Store,
    account: &AccountId,
    shared_domain: &str,
    now: Timestamp,
    out: &mut W,
) -> Result<Exported, ExportError> {
    let records = store.account_records(account, now.plus_secs(-7 * 86_400)).await?;
    let Some((id, email, created_at)) = &records.account else { return Err(ExportError::NoAccount) };
    let mut w = Counting { out, bytes: 0 };
    let head = json!({
        "generated_at": now,
        "schema_version": SCHEMA_VERSION,
        "user": {"id": id, "email": email, "name": "", "created_at": created_at},
        "domains": domains(&records),
        "agents": records.agents.iter().map(|a| agent(a, id, shared_domain)).collect::<Vec<_>>(),
        "api_keys": records.api_keys,
        "suppressions": records.suppressions,
        "protection_events": protection_events(&records),
        "templates": templates(store, account).await?,
    });
    // The head without its closing brace, then `"messages":[…]}`.
    let head = head.to_string();
    // Exactly one brace: the object's own (the last value may end in braces too).
    let open = head.strip_suffix('}').unwrap_or(&head);
    w.put(open.as_bytes()).await?;
    w.put(b",\"messages\":[").await?;
    let mut after: Option<(Timestamp, String)> = None;
    let mut written = 0u64;
    loop {
        let page = store.export_messages(account, after.as_ref(), PAGE).await?;
        for m in &page {
            if written > 0 {
                w.put(b",").await?;
            }
            w.put(message(m).to_string().as_bytes()).await?;
            written += 1;
        }
        // A page may be shorter than asked (its bodies filled the byte budget): only an empty
        // one ends the walk.
        match page.last() {
            Some(last) => after = Some((last.message.created_at, last.message.id.clone())),
            None => break,
        }
    }
    w.put(b"],\"contacts\":[").await?;
    let mut first = true;
    let mut page = PageQuery { after: None, limit: PAGE as u32 };
    loop {
        let mut rows = store.list_contacts(account, &ContactFilter::default(), &page).await?;
        let more = rows.len() > page.limit as usize;
        rows.truncate(page.limit as usize);
        for c in &rows {
            w.put(if first { b"" } else { b"," }).await?;
            first = false;
            w.put(contact(c).to_string().as_bytes()).await?;
        }
        match rows.last() {
            Some(last) if more => {
                page.after =
                    Some(crate::store::After { created_at: last.created_at, key: last.address.clone() });
            }
            _ => break,
        }
    }
    w.put(b"],\"contact_engagements\":[").await?;
    let mut first = true;
    for a in &records.agents {
        let mut page = PageQuery { after: None, limit: PAGE as u32 };
        loop {
            let mut rows = store.list_engagements(&a.email, &EngagementFilter::default(), &page).await?;
            let more = rows.len() > page.limit as usize;
            rows.truncate(page.limit as usize);
            for e in &rows {
                w.put(if first { b"" } else { b"," }).await?;
                first = false;
                w.put(engagement(e).to_string().as_bytes()).await?;
            }
            match rows.last() {
                Some(last) if more => {
                    page.after =
                        Some(crate::store::After { created_at: last.created_at, key: last.address.clone() });
                }
                _ => break,
            }
        }
    }
    w.put(b"]}").await?;
    w.out.flush().await?;
    Ok(Exported { messages: written, bytes: w.bytes })
}

/// The account's templates (at most [`crate::store::MAX_TEMPLATES`]), newest first.
async fn templates(store: &dyn Store, account: &AccountId) -> Result<Vec<Value>, ExportError> {
    let mut out = Vec::new();
    let mut page = PageQuery { after: None, limit: PAGE as u32 };
    loop {
        let mut rows = store.list_templates(account, &page).await?;
        let more = rows.len() > page.limit as usize;
        rows.truncate(page.limit as usize);
        out.extend(rows.iter().map(template));
        match rows.last() {
            Some(last) if more => {
                page.after = Some(crate::store::After { created_at: last.created_at, key: last.id.clone() });
            }
            _ => return Ok(out),
        }
    }
}

fn template(t: &StoredTemplate) -> Value {
    json!({"id": t.id, "alias": t.alias, "name": t.name, "subject": t.subject, "text": t.text, "html": t.html,
        "from_starter_alias": t.from_starter_alias, "from_starter_version": t.from_starter_version,
        "created_at": t.created_at, "updated_at": t.updated_at})
}

fn contact(c: &Contact) -> Value {
    json!({"address": c.address, "display_name": c.display_name, "metadata": crate::store::stored_object(&c.metadata),
        "source": c.source, "import_batch_id": c.import_batch_id, "created_at": c.created_at,
        "updated_at": c.updated_at})
}

fn engagement(e: &Engagement) -> Value {
    json!({"agent_email": e.agent_email, "address": e.address, "stage": e.stage,
        "metadata": crate::store::stored_object(&e.metadata), "next_action_at": e.next_action_at, "created_at": e.created_at,
        "updated_at": e.updated_at})
}

struct Counting<'a, W> {
    out: &'a mut W,
    bytes: u64,
}

impl<W: AsyncWrite + Unpin> Counting<'_, W> {
    async fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.bytes += b.len() as u64;
        self.out.write_all(b).await
    }
}

fn domains(r: &AccountRecords) -> Vec<Value> {
    r.domains
        .iter()
        .map(|d| {
            let mut v = json!({
                "domain": d.domain,
                "verified": d.verified,
                "verification_token": d.verification_token,
                "created_at": d.created_at,
                "primary": false,
                "agent_count": d.agent_count,
                "sending_status": if d.verified { "verified" } else { "pending" },
            });
            if let Some(t) = d.verified_at {
                v["verified_at"] = json!(t);
            }
            if let Some(t) = d.last_checked_at {
                v["last_checked_at"] = json!(t);
            }
            v
        })
        .collect()
}

/// e2a's `AgentIdentity`: the agent with its protection flattened.
fn agent(a: &AgentRecord, user: &AccountId, shared_domain: &str) -> Value {
    let p = a.protection.clone().unwrap_or(Value::Null);
    let text = |v: &Value, default: &str| v.as_str().unwrap_or(default).to_owned();
    let direction = |d: &str| {
        let g = &p[d]["gate"];
        let sensitivity = text(&p[d]["scan"]["sensitivity"], "off");
        (
            text(&g["policy"], "open"),
            text(&g["action"], "flag"),
            g["allowlist"].as_array().cloned().unwrap_or_default(),
            sensitivity,
        )
    };
    let (in_policy, in_action, in_allow, in_scan) = direction("inbound");
    let (out_policy, out_action, out_allow, out_scan) = direction("outbound");
    let h = &p["holds"];
    let mut v = json!({
        "email": a.email,
        "name": a.name,
        "domain": a.domain,
        "registered_domain": a.domain,
        "domain_verified": a.domain_verified || (!shared_domain.is_empty() && a.domain == shared_domain),
        "public": false,
        "created_at": a.created_at,
        "user_id": user,
        "ttl_seconds": h["ttl_seconds"].as_i64().unwrap_or(604_800),
        "on_expiry": text(&h["on_expiry"], "reject"),
        "suppress_notifications": h["suppress_notifications"].as_bool().unwrap_or(false),
        "inbound_7d": a.inbound_7d,
        "outbound_7d": a.outbound_7d,
        "pending_count": a.pending,
        "inbound_policy": in_policy,
        "inbound_policy_action": in_action,
        "inbound_allowlist": in_allow,
        "outbound_policy": out_policy,
        "outbound_policy_action": out_action,
        "outbound_allowlist": out_allow,
        "inbound_scan": if in_scan == "off" { "off" } else { "on" },
        "inbound_scan_sensitivity": in_scan,
        "inbound_scan_review_threshold": 0.0,
        "inbound_scan_block_threshold": 0.0,
        "outbound_scan": if out_scan == "off" { "off" } else { "on" },
        "outbound_scan_sensitivity": out_scan,
        "outbound_scan_review_threshold": 0.0,
        "outbound_scan_block_threshold": 0.0,
    });
    if let Some(t) = a.deleted_at {
        v["deleted_at"] = json!(t);
    }
    v
}

/// Holds as e2a's `ProtectionEventExportEntry`: the decision a gate took on a message, and
/// how it ended.
fn protection_events(r: &AccountRecords) -> Vec<Value> {
    r.holds
        .iter()
        .map(|h| {
            let reason = &h["reason"];
            let mut v = json!({
                "id": format!("hold:{}", h["message_id"].as_str().unwrap_or_default()),
                "message_id": h["message_id"],
                "agent_email": h["agent_email"],
                "direction": h["direction"],
                "source": reason["type"].as_str().unwrap_or("gate"),
                "reason": reason["summary"].as_str().or(reason["code"].as_str()).unwrap_or("held for review"),
                "action": "review",
                "created_at": h["created_at"],
                "outcome": h["state"],
            });
            for k in ["decided_at", "decided_by", "reject_reason"] {
                if !h[k].is_null() {
                    v[k] = h[k].clone();
                }
            }
            v
        })
        .collect()
}

/// e2a's export `Message`: the full row, its raw MIME in base64 (attachments included).
fn message(e: &ExportedMessage) -> Value {
    let m = &e.message;
    let authentication: Value =
        m.authentication.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(Value::Null);
    let mut v = json!({
        "id": m.id,
        "agent_email": m.agent_email,
        "direction": m.direction,
        "status": m.status,
        "header_from": m.header_from,
        "envelope_from": m.envelope_from,
        "verified_domain": m.verified_domain,
        "authentication": authentication,
        "to": m.to,
        "cc": m.cc,
        "bcc": m.bcc,
        "reply_to": m.reply_to,
        "delivered_to": m.delivered_to,
        "subject": m.subject,
        "labels": m.labels,
        "size_bytes": m.size_bytes,
        "created_at": m.created_at,
        "expires_at": null,
        "raw_message": e.raw.as_ref().map(|r| base64::engine::general_purpose::STANDARD.encode(r)),
        "attachments": e.attachments.iter().map(|a| {
            let mut f = json!({"index": a.index, "size_bytes": a.size_bytes});
            for (k, x) in [("filename", &a.filename), ("content_type", &a.content_type), ("content_id", &a.content_id)] {
                if let Some(x) = x {
                    f[k] = json!(x);
                }
            }
            f
        }).collect::<Vec<_>>(),
    });
    let opt = |v: &mut Value, k: &str, x: Option<Value>| {
        if let Some(x) = x {
            v[k] = x;
        }
    };
    opt(&mut v, "read_status", m.read_status.map(|r| json!(r)));
    opt(&mut v, "review_status", m.review_status.map(|r| json!(r)));
    opt(&mut v, "conversation_id", m.conversation_id.clone().filter(|c| !c.is_empty()).map(Value::from));
    opt(&mut v, "email_message_id", m.rfc_message_id.clone().map(Value::from));
    opt(&mut v, "deleted_at", m.deleted_at.map(|t| json!(t)));
    opt(&mut v, "delivery_status", m.delivery_status.map(|s| json!(s)));
    opt(&mut v, "delivery_detail", m.delivery_detail.clone().map(Value::from));
    opt(&mut v, "provider_message_id", m.provider_message_id.clone().map(Value::from));
    opt(&mut v, "type", m.message_type.map(|t| json!(t)));
    opt(&mut v, "method", m.method.map(|t| json!(t)));
    opt(&mut v, "sent_as", m.sent_as.clone().map(Value::from));
    // What the agent asked to send: a held draft has nothing else (no MIME yet).
    if let Some(d) =
        e.draft.as_deref().and_then(|d| serde_json::from_str::<crate::mail::outbound::Draft>(d).ok())
    {
        opt(&mut v, "text", d.text.map(Value::from));
        opt(&mut v, "html", d.html.map(Value::from));
        if e.raw.is_none() && !d.attachments.is_empty() {
            v["draft_attachments"] = json!(d.attachments);
        }
    }
    if m.flagged {
        v["flagged"] = true.into();
        opt(&mut v, "flag_reason", m.flag_reason.clone().map(Value::from));
    }
    v
}
