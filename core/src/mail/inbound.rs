//! Inbound delivery: what the LMTP server does with one message for its agents.
//!
//! [`prepare`] runs once per message: it checks the milter's signed header set (absent or
//! invalid means the message is stored with `authentication: null`, never as verified) and
//! parses the MIME. [`store_for`] then files it for one recipient: threading, then message,
//! attachment metadata and the `email.received` event in one transaction, idempotent per agent
//! and milter message id so a redelivery after a lost 250 is stored once.

use crate::auth::headers::{self, Claims, Delivery, EntityType, VerifyError};
use crate::ids;
use crate::mail::event::{MessageEvent, Received, gate_fields, inbound_gate_data};
use crate::mail::lifecycle;
use crate::mail::outbound::verp;
use crate::mail::protection::{Protection, Verdict};
use crate::mime;
use crate::secret::Secret;
use crate::sign::sha256_hex;
use crate::store::{Agent, Inserted, NewAttachment, NewEvent, NewHold, NewInboundMessage, Store, StoreError};
use crate::time::Timestamp;
use crate::vocab::{Direction, EventKind, MessageStatus, ReviewStatus};
use mail_parser::MimeHeaders;
use serde_json::json;

/// Postfix keeps a message queued for up to `maximal_queue_lifetime` (5 days by default); a
/// signature must stay valid while it waits for us. A set is bound to its queue entry, so
/// its age no longer decides whether it can be replayed.
pub const MAX_SIGNATURE_AGE_SECS: i64 = 7 * 86_400;

/// The message as parsed once, for every recipient.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The signed set, when it verified for this content and queue entry.
    pub claims: Option<Claims>,
    /// Why the signature did not verify, for the log.
    pub unsigned_reason: Option<String>,
    /// Which check failed (`VerifyError::binding`), for the log and metrics.
    pub unsigned_binding: Option<&'static str>,
    /// Lowercase envelope recipients the set was not made for: their copies are unsigned.
    pub unbound: Vec<String>,
    /// The id of the message in our store before it is one agent's: the milter's message id
    /// when the set is valid, else a hash of the bytes.
    pub source_id: String,
    /// The bytes' hash source id, for copies whose recipient the set does not bind (empty
    /// when the set binds every recipient: no copy needs it).
    pub raw_source_id: String,
    pub envelope_from: Option<String>,
    pub postfix_queue_id: Option<String>,
    pub raw: Vec<u8>,
    pub parsed: Parsed,
    /// Why the message looks automatic, if it does ([`crate::mail::loops`]).
    pub auto_class: Option<crate::vocab::AutoClass>,
    /// Postfix's `recipient_delimiter`, by which `bot+tag@…` is agent `bot@…`'s mail:
    /// [`DEFAULT_DELIMITER`] unless the caller sets the deployment's.
    pub recipient_delimiter: String,
}

/// Postfix's usual `recipient_delimiter`.
pub const DEFAULT_DELIMITER: &str = "+";

/// The live agent `recipient` reaches: the one with exactly that address, else, for an
/// address with an extension (`delimiter`), the one without it. The milter's RCPT check and
/// the socketmap apply the same rule.
pub async fn recipient_agent(
    store: &dyn Store,
    recipient: &str,
    delimiter: &str,
) -> Result<Option<Agent>, StoreError> {
    let Some(email) = ids::AgentEmail::parse(recipient) else { return Ok(None) };
    if let Some(agent) = store.find_live_agent(email.as_str()).await? {
        return Ok(Some(agent));
    }
    match email.split_extension(delimiter) {
        Some((base, _)) => store.find_live_agent(base.as_str()).await,
        None => Ok(None),
    }
}

/// The extension of `delivered_to` when it is not the agent's own address (`signup` of
/// `bot+signup@…` for agent `bot@…`).
pub fn address_tag(delivered_to: &str, agent_email: &str) -> Option<String> {
    if delivered_to.eq_ignore_ascii_case(agent_email) {
        return None;
    }
    let (local, domain) = delivered_to.rsplit_once('@')?;
    let (agent_local, agent_domain) = agent_email.rsplit_once('@')?;
    let rest = local.get(agent_local.len()..).filter(|_| {
        domain.eq_ignore_ascii_case(agent_domain)
            && local[..agent_local.len()].eq_ignore_ascii_case(agent_local)
    })?;
    let mut chars = rest.chars();
    chars.next()?;
    // `bot+@…` has a delimiter and no tag.
    Some(chars.as_str().to_owned()).filter(|t| !t.is_empty())
}

/// The system label of an address tag: `e2a:tag:<tag>`, the tag lowercased with anything but
/// `a-z 0-9 _ -` turned into `-` and cut to fit a label.
pub fn tag_label(tag: &str) -> String {
    let clean: String = tag
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
        .take(56)
        .collect();
    format!("e2a:tag:{clean}")
}

impl Prepared {
    /// The claims that hold for `recipient`'s copy: none when the message is unsigned or its
    /// set was made for other recipients.
    pub fn claims_for(&self, recipient: &str) -> Option<&Claims> {
        let lower = recipient.to_ascii_lowercase();
        self.claims.as_ref().filter(|_| !self.unbound.contains(&lower))
    }

    fn source_for(&self, recipient: &str) -> &str {
        if self.claims_for(recipient).is_some() { &self.source_id } else { &self.raw_source_id }
    }
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
    /// Something was left out: a cap of [`mime`] (parts, attachments, depth, headers) or of
    /// the fields below (addresses, references, subject and attachment names). The message is
    /// stored whole all the same.
    pub truncated: bool,
}

/// Addresses kept per list (To, Cc, Reply-To) in the view and in events.
pub const MAX_ADDRESSES: usize = 100;
/// Message ids kept from `References` (the nearest ones, which threading looks at).
pub const MAX_REFERENCES: usize = 100;
/// Characters kept of a subject (as a send may have).
pub const MAX_SUBJECT_CHARS: usize = 2000;
/// Characters kept of an attachment's file name, content type or content id.
pub const MAX_ATTACHMENT_FIELD_CHARS: usize = 255;

/// Parses what the API shows of a message, within this process's caps ([`mime`]).
/// Malformed MIME still yields what could be read: a message Postfix accepted is never
/// refused for its formatting.
pub fn parse(raw: &[u8]) -> Parsed {
    parse_with(raw, mime::caps())
}

/// `s` cut to `max` characters; whether it was cut.
fn capped(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((end, _)) => (s[..end].to_owned(), true),
        None => (s.to_owned(), false),
    }
}

/// [`parse`] under explicit caps.
pub fn parse_with(raw: &[u8], caps: mime::Caps) -> Parsed {
    match mime::view(raw, caps) {
        mime::View::Parsed(Some(m), truncated) => parsed_from(raw, &m, truncated, caps),
        mime::View::Parsed(None, truncated) => Parsed { truncated, ..Parsed::default() },
        mime::View::Source(source) => match source.parse() {
            Some(m) => parsed_from(raw, &m, source.truncated, caps),
            None => Parsed { truncated: source.truncated, ..Parsed::default() },
        },
    }
}

/// What the API shows of `raw`, read off its parsed view `m`.
fn parsed_from(raw: &[u8], m: &mail_parser::Message<'_>, truncated: bool, caps: mime::Caps) -> Parsed {
    let mut truncated = truncated;
    let mut addrs = |a: Option<&mail_parser::Address>| -> Vec<String> {
        let all: Vec<String> =
            a.map(|a| a.iter().filter_map(|x| x.address().map(str::to_owned)).collect()).unwrap_or_default();
        truncated |= all.len() > MAX_ADDRESSES;
        all.into_iter().take(MAX_ADDRESSES).collect()
    };
    // Counted over the whole header, not the capped view: a second From past
    // max_header_fields still makes the author ambiguous (the milter counts the same way).
    let from_fields =
        headers::fields(headers::split_head(raw).0).filter(|(n, _)| n.eq_ignore_ascii_case(b"from")).count();
    let from = addrs(m.from());
    let header_from = (from_fields == 1 && from.len() == 1).then(|| from[0].clone());
    let ids_of = |v: &mail_parser::HeaderValue| -> Vec<String> {
        match v {
            mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
            mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    let (to, cc, reply_to) = (addrs(m.to()), addrs(m.cc()), addrs(m.reply_to()));
    truncated |= m.attachments().nth(caps.max_attachments).is_some();
    let mut field_cut = false;
    let mut field = |v: Option<String>| {
        v.map(|v| {
            let (v, cut) = capped(&v, MAX_ATTACHMENT_FIELD_CHARS);
            field_cut |= cut;
            v
        })
    };
    let attachments = m
        .attachments()
        .take(caps.max_attachments)
        .enumerate()
        .map(|(i, part)| NewAttachment {
            index: i as i64,
            filename: field(part.attachment_name().map(str::to_owned)),
            content_type: field(part.content_type().map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })),
            content_id: field(part.content_id().map(str::to_owned)),
            size_bytes: part.contents().len() as i64,
        })
        .collect();
    let conversation_header = m
        .header_raw("X-E2A-Conversation-Id")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 200);
    let (subject, subject_cut) = capped(m.subject().unwrap_or(""), MAX_SUBJECT_CHARS);
    let mut references = ids_of(m.references());
    let references_cut = references.len() > MAX_REFERENCES;
    references.drain(..references.len().saturating_sub(MAX_REFERENCES));
    Parsed {
        header_from,
        to,
        cc,
        reply_to,
        subject,
        rfc_message_id: m.message_id().map(str::to_owned),
        in_reply_to: ids_of(m.in_reply_to()).into_iter().next(),
        references,
        conversation_header,
        attachments,
        truncated: truncated || field_cut || subject_cut || references_cut,
    }
}

/// The Postfix queue id from the first `Received:` header (the trace header the last
/// Postfix wrote), best effort: see [`headers::trace_queue_id`].
pub fn postfix_queue_id(message: &[u8]) -> Option<String> {
    headers::trace_queue_id(message)
}

/// Every check of a delivered message's set (`headers::verify` with the queue id of its trace
/// header and, when given, the recipient), plus the one that needs the parsed message: the
/// signed Sender is the message's single From address. `header_from` is that address as
/// [`parse`] reads it.
pub fn verify_delivered(
    secret: &Secret,
    raw: &[u8],
    header_from: Option<&str>,
    recipient: Option<&str>,
    now: Timestamp,
    max_age_secs: Option<i64>,
) -> Result<Claims, VerifyError> {
    let c = headers::verify(secret, raw, now, max_age_secs, Delivery { recipient, check_queue_id: true })?;
    if header_from.map(str::to_ascii_lowercase) == Some(c.sender.to_ascii_lowercase()) {
        Ok(c)
    } else {
        Err(VerifyError::Sender { signed: c.sender.clone(), from: header_from.map(str::to_owned) })
    }
}

/// Verifies the milter's set for this content and queue entry (and, per recipient, for the
/// recipients it names), checks that its Sender is the message's From, and parses the MIME.
/// A set that fails any check leaves the message unsigned (`authentication: null`), never
/// verified.
pub fn prepare(
    secret: &Secret,
    raw: Vec<u8>,
    envelope_from: &str,
    recipients: &[String],
    now: Timestamp,
) -> Prepared {
    let parsed = parse(&raw);
    let checked = verify_delivered(
        secret,
        &raw,
        parsed.header_from.as_deref(),
        None,
        now,
        Some(MAX_SIGNATURE_AGE_SECS),
    );
    let (claims, unsigned_reason, unsigned_binding) = match checked {
        Ok(c) => (Some(c), None, None),
        Err(e) => (None, Some(e.to_string()), Some(e.binding())),
    };
    let unbound = match &claims {
        Some(c) => recipients
            .iter()
            .filter(|r| !verp::looks_like_bounce(r) && !c.binds_recipient(secret, r))
            .map(|r| r.to_ascii_lowercase())
            .collect(),
        None => Vec::new(),
    };
    // Only a copy without claims needs it: hashing a large message is not free.
    let raw_source_id = if claims.is_none() || !unbound.is_empty() {
        format!("raw:{}", sha256_hex(&raw))
    } else {
        String::new()
    };
    // With a valid signature the milter's id names the message; without one, its bytes do.
    let source_id = claims.as_ref().map_or_else(|| raw_source_id.clone(), |c| c.message_id.clone());
    Prepared {
        claims,
        unsigned_reason,
        unsigned_binding,
        unbound,
        source_id,
        raw_source_id,
        envelope_from: Some(envelope_from.to_owned()).filter(|e| !e.is_empty()),
        postfix_queue_id: postfix_queue_id(&raw),
        auto_class: crate::mail::loops::classify(&raw, envelope_from),
        recipient_delimiter: DEFAULT_DELIMITER.to_owned(),
        parsed,
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
    let agent = recipient_agent(store, recipient, &p.recipient_delimiter)
        .await?
        .ok_or_else(|| IngestError::UnknownAgent(recipient.to_ascii_lowercase()))?;
    // The set as it holds for this copy: none when unsigned or made for other recipients.
    let claims = p.claims_for(recipient);
    // Mail is our agents' own only when the milter signed it as agent mail, which it does
    // only for a message carrying our submission worker's token (docs/security.md): a From
    // naming an agent, or the listener it came through, is never enough.
    let from_agent = claims.is_some_and(|c| c.entity_type == EntityType::Agent);
    // Its conversation id is honoured only inside the account that sent it: an agent of
    // another account cannot put its mail into this agent's threads. Everything else threads
    // by its references among this agent's messages.
    let same_account = claims.and_then(Claims::delegated_account) == Some(agent.account_id.as_str());
    let trusted_conversation =
        if from_agent && same_account { p.parsed.conversation_header.clone() } else { None };
    let conversation_id = match trusted_conversation {
        Some(c) => Some(c),
        None => {
            let mut refs: Vec<String> = p.parsed.in_reply_to.iter().cloned().collect();
            refs.extend(p.parsed.references.iter().cloned());
            store.find_conversation(&agent.email, &refs).await?
        }
    };
    let protection = store.get_protection(&agent.email).await?;
    // The gate trusts a From only as far as the milter authenticated it: a DMARC-aligned
    // verified domain, or our own agent's mail (its From is the signed Sender).
    let sender = p.parsed.header_from.as_deref();
    let verified = claims.and_then(|c| match c.entity_type {
        EntityType::Agent => c.sender.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()),
        EntityType::Human => c.authentication.verified_domain().map(str::to_owned),
    });
    let verdict = protection.inbound_verdict(sender, verified.as_deref(), p.auto_class);
    let (msg, events) = filed(&agent, p, recipient, conversation_id, &verdict, &protection, now);
    let id = msg.id.clone();
    match store.insert_inbound(msg, p.parsed.attachments.clone(), events).await? {
        Inserted::Stored => Ok(Delivered::Stored { id }),
        Inserted::Duplicate { id } => Ok(Delivered::Duplicate { id }),
    }
}

/// The row and the events of one agent's copy. The gate's verdict decides what the agent
/// sees: `Pass` and `Flag` deliver (`email.received`, plus `email.flagged`), `Review` holds
/// the message out of the inbox until a reviewer decides (`email.review_requested`), `Block`
/// keeps it, hidden, as rejected (`email.blocked`).
pub fn filed(
    agent: &Agent,
    p: &Prepared,
    recipient: &str,
    conversation_id: Option<String>,
    verdict: &Verdict,
    protection: &Protection,
    now: Timestamp,
) -> (NewInboundMessage, Vec<NewEvent>) {
    let authentication = p.claims_for(recipient).map(|c| c.authentication.clone());
    let verified_domain = authentication.as_ref().and_then(|a| a.verified_domain().map(str::to_owned));
    let source_id = p.source_for(recipient);
    let id = message_id_for(source_id, &agent.email);
    let auth_json = authentication.as_ref().and_then(|a| serde_json::to_value(a).ok());
    let delivered_to = recipient.to_ascii_lowercase();
    let received = Received {
        message_id: &id,
        agent_email: &agent.email,
        delivered_to: &delivered_to,
        header_from: p.parsed.header_from.as_deref(),
        envelope_from: p.envelope_from.as_deref(),
        verified_domain: verified_domain.as_deref(),
        authentication: auth_json.clone().unwrap_or(serde_json::Value::Null),
        to: &p.parsed.to,
        cc: &p.parsed.cc,
        reply_to: &p.parsed.reply_to,
        subject: &p.parsed.subject,
        received_at: now,
        attachments: &p.parsed.attachments,
        conversation_id: conversation_id.as_deref(),
    };
    let then = match verdict {
        Verdict::Pass | Verdict::Flag { .. } => Some(lifecycle::Reason::InboundProcessing),
        Verdict::Review { .. } => Some(lifecycle::Reason::HoldCreated),
        Verdict::Block { .. } => None,
    };
    let ledger = lifecycle::inbound(
        &id,
        p.postfix_queue_id.as_deref(),
        source_id,
        &delivered_to,
        authentication.as_ref(),
        then,
        now,
    );
    let mut data = received.data();
    if let Some(obj) = data.as_object_mut() {
        obj.insert("lifecycle_transitions".into(), lifecycle::views(&ledger));
    }
    let (status, review_status, flag_reason, hold) = match verdict {
        Verdict::Pass => (MessageStatus::Received, None, None, None),
        Verdict::Flag { reason, .. } => (MessageStatus::Received, None, Some(reason.clone()), None),
        Verdict::Review { .. } => (
            MessageStatus::Held,
            Some(ReviewStatus::PendingReview),
            None,
            Some(NewHold {
                direction: Direction::Inbound,
                reason: verdict.hold_reason().to_string(),
                on_expiry: protection.holds.on_expiry,
                expires_at: now.plus_secs(protection.holds.ttl_seconds),
            }),
        ),
        Verdict::Block { .. } => (MessageStatus::Rejected, Some(ReviewStatus::ReviewRejected), None, None),
    };
    let event = |kind: EventKind, data: serde_json::Value| {
        MessageEvent {
            account_id: &agent.account_id,
            agent_email: &agent.email,
            message_id: &id,
            conversation_id: conversation_id.as_deref(),
            kind,
            data,
            at: now,
        }
        .build()
    };
    let mut gate_data = inbound_gate_data(&received);
    gate_fields(&mut gate_data, verdict, protection);
    if let (Some(obj), Some(h)) = (gate_data.as_object_mut(), &hold) {
        obj.insert("approval_expires_at".into(), json!(h.expires_at));
        obj.insert("conversation_id".into(), json!(conversation_id.clone().unwrap_or_default()));
    }
    let events = match verdict {
        Verdict::Pass => vec![event(EventKind::EmailReceived, data)],
        Verdict::Flag { .. } => {
            vec![event(EventKind::EmailReceived, data), event(EventKind::EmailFlagged, gate_data)]
        }
        Verdict::Review { .. } => vec![event(EventKind::EmailReviewRequested, gate_data)],
        Verdict::Block { .. } => vec![event(EventKind::EmailBlocked, gate_data)],
    };
    let msg = NewInboundMessage {
        id: id.clone(),
        account_id: agent.account_id.clone(),
        agent_email: agent.email.clone(),
        source_id: source_id.to_owned(),
        header_from: p.parsed.header_from.clone(),
        envelope_from: p.envelope_from.clone(),
        verified_domain,
        to: p.parsed.to.clone(),
        cc: p.parsed.cc.clone(),
        reply_to: p.parsed.reply_to.clone(),
        // The address the mail was sent to, extension and all (`bot+signup@…`).
        delivered_to: delivered_to.clone(),
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
        status,
        review_status,
        flag_reason,
        hold,
        lifecycle: ledger,
        labels: p
            .auto_class
            .map(crate::mail::loops::label)
            .into_iter()
            .chain(address_tag(recipient, &agent.email).map(|t| tag_label(&t)))
            .collect(),
    };
    (msg, events)
}

/// The first text and HTML bodies of a stored message, for the API's `parsed` view.
///
/// `html` is only ever a real `text/html` part ("full fidelity", contract §3.6): mail-parser
/// would otherwise render a plain-text-only message as HTML. `text` falls back to a
/// rendering of the HTML when the message has no text part, so agents always get text.
pub fn bodies(raw: &[u8]) -> (Option<String>, Option<String>) {
    let view = body_view(raw);
    (view.text, view.html)
}

/// The bodies of a stored message as the API shows them, and whether its view is truncated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyView {
    pub text: Option<String>,
    pub html: Option<String>,
    /// A cap of [`mime`] left part of the message out of the view.
    pub truncated: bool,
}

/// [`bodies`] with the view's `truncated`.
pub fn body_view(raw: &[u8]) -> BodyView {
    let source = mime::parse(raw, mime::caps());
    let Some(m) = source.parse() else {
        return BodyView { truncated: source.truncated, ..BodyView::default() };
    };
    let text = m.body_text(0).map(|t| t.into_owned());
    let html = m.html_part(0).filter(|p| p.is_text_html()).and(m.body_html(0)).map(|h| h.into_owned());
    BodyView { text, html, truncated: source.truncated }
}

/// The decoded bytes of attachment `index` (document order, as [`parse`] numbers them).
pub fn attachment_bytes(raw: &[u8], index: usize) -> Option<Vec<u8>> {
    let caps = mime::caps();
    if index >= caps.max_attachments {
        return None;
    }
    let source = mime::parse(raw, caps);
    let m = source.parse()?;
    m.attachments().nth(index).map(|part| part.contents().to_vec())
}

/// Everything a forward carries from the original in one parse: the decoded bytes of its
/// attachments (as [`parse`] numbers them) and its bodies. CPU work on up to a whole message:
/// callers run it off the async runtime.
pub fn forwarded_parts(raw: &[u8]) -> (Vec<Vec<u8>>, BodyView) {
    let caps = mime::caps();
    let source = mime::parse(raw, caps);
    let Some(m) = source.parse() else {
        return (Vec::new(), BodyView { truncated: source.truncated, ..BodyView::default() });
    };
    let attachments = m.attachments().take(caps.max_attachments).map(|p| p.contents().to_vec()).collect();
    let text = m.body_text(0).map(|t| t.into_owned());
    let html = m.html_part(0).filter(|p| p.is_text_html()).and(m.body_html(0)).map(|h| h.into_owned());
    (attachments, BodyView { text, html, truncated: source.truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_only_from_a_real_html_part() {
        let text_only = b"From: a@b.test\r\nSubject: t\r\n\r\nplain words\r\n";
        let (text, html) = bodies(text_only);
        assert_eq!(text.as_deref(), Some("plain words\r\n"));
        assert_eq!(html, None, "no HTML part, so no html");
        let alternative = b"From: a@b.test\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/alternative; boundary=XX\r\n\r\n\
            --XX\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
            --XX\r\nContent-Type: text/html\r\n\r\n<p>rich</p>\r\n--XX--\r\n";
        let (text, html) = bodies(alternative);
        assert_eq!(text.as_deref().map(str::trim), Some("plain"));
        assert_eq!(html.as_deref().map(str::trim), Some("<p>rich</p>"));
        let html_only = b"From: a@b.test\r\nContent-Type: text/html\r\n\r\n<p>only <b>html</b></p>\r\n";
        let (text, html) = bodies(html_only);
        assert!(text.is_some_and(|t| t.contains("only") && !t.contains('<')), "text rendered from the HTML");
        assert_eq!(html.as_deref().map(str::trim), Some("<p>only <b>html</b></p>"));
    }
}
