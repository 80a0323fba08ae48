//! Every event postagent emits, built here: the contract's envelope `{type, id,
//! schema_version, created_at, data}` and the row that carries it ([`MessageEvent`]), and the
//! `data` payloads (contract §4.3) — `email.received` ([`Received`]), the outbound family
//! (`email.sent`, `email.failed`, `email.bounced`, the review events: [`outbound_data`]) and
//! the gate events' fields ([`gate_fields`]). The catalog of kinds is
//! [`EventKind`](crate::vocab::EventKind); a new kind is a word there and a builder here.

use crate::ids::AccountId;
use crate::mail::protection::{Protection, Rule, Verdict};
use crate::sign::sha256_hex;
use crate::store::{Agent, NewAttachment, NewEvent, Suppression};
use crate::time::Timestamp;
use crate::vocab::{Direction, EventKind, MessageType, SuppressionSource, optional_str};
use serde_json::{Value, json};

/// The deterministic id of the event `kind` about `subject`: the same on every retry,
/// redelivery and channel (contract §4.3).
pub fn event_id(subject: &str, kind: EventKind) -> String {
    format!("evt_{}", &sha256_hex(format!("{subject}|{kind}").as_bytes())[..32])
}

/// An event about a message of `agent_email`.
pub struct MessageEvent<'a> {
    pub account_id: &'a AccountId,
    pub agent_email: &'a str,
    pub message_id: &'a str,
    pub conversation_id: Option<&'a str>,
    pub kind: EventKind,
    pub data: Value,
    pub at: Timestamp,
}

impl MessageEvent<'_> {
    /// The row, with a deterministic id derived from the message and the kind.
    pub fn build(self) -> NewEvent {
        let id = event_id(self.message_id, self.kind);
        self.build_with_id(id)
    }

    /// The row with a given id (events that may happen more than once per message, such as
    /// one bounce per recipient, name their subject more precisely).
    pub fn build_with_id(self, id: String) -> NewEvent {
        let envelope = json!({
            "type": self.kind,
            "id": id,
            "schema_version": "1",
            "created_at": self.at,
            "data": self.data,
        });
        NewEvent {
            id,
            account_id: self.account_id.clone(),
            kind: self.kind,
            agent_email: Some(self.agent_email.to_owned()),
            message_id: Some(self.message_id.to_owned()),
            conversation_id: self.conversation_id.filter(|c| !c.is_empty()).map(str::to_owned),
            labels: Vec::new(),
            payload: envelope.to_string(),
            created_at: self.at,
            internal: false,
            only_webhook: None,
        }
    }
}

/// `data` with the fields of `extra` added (or replaced).
pub fn with_fields(mut data: Value, extra: Value) -> Value {
    if let (Some(obj), Some(more)) = (data.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    data
}

/// The contract's `AttachmentMetaView`.
pub fn attachment_json(a: &NewAttachment) -> Value {
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

/// The facts of an `email.received` payload, whether the message is being filed or released
/// from review.
pub struct Received<'a> {
    pub message_id: &'a str,
    pub agent_email: &'a str,
    /// The envelope recipient, extension and all (`bot+signup@…`).
    pub delivered_to: &'a str,
    pub header_from: Option<&'a str>,
    pub envelope_from: Option<&'a str>,
    pub verified_domain: Option<&'a str>,
    /// The contract's `authentication` object, or null.
    pub authentication: Value,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub reply_to: &'a [String],
    pub subject: &'a str,
    pub received_at: Timestamp,
    pub attachments: &'a [NewAttachment],
    pub conversation_id: Option<&'a str>,
}

impl Received<'_> {
    /// The `email.received` payload (contract §4.3); `conversation_id` is left out when empty.
    pub fn data(&self) -> Value {
        let mut data = json!({
            "message_id": self.message_id,
            "agent_email": self.agent_email,
            "direction": Direction::Inbound,
            "header_from": self.header_from,
            "envelope_from": self.envelope_from,
            "verified_domain": self.verified_domain,
            "authentication": self.authentication,
            "to": self.to,
            "cc": self.cc,
            "reply_to": self.reply_to,
            "delivered_to": self.delivered_to,
            "subject": self.subject,
            "received_at": self.received_at,
            "attachments": self.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
        });
        if let (Some(conv), Some(obj)) =
            (self.conversation_id.filter(|c| !c.is_empty()), data.as_object_mut())
        {
            obj.insert("conversation_id".into(), json!(conv));
        }
        data
    }
}

/// The identity fields an inbound gate event (`email.flagged`, `email.blocked`,
/// `email.review_requested`) carries before [`gate_fields`]: who sent what to whom, and how it
/// authenticated; never the body or the attachments.
pub fn inbound_gate_data(r: &Received<'_>) -> Value {
    json!({
        "message_id": r.message_id,
        "agent_email": r.agent_email,
        "direction": Direction::Inbound,
        "header_from": r.header_from,
        "envelope_from": r.envelope_from,
        "authentication": r.authentication,
        "delivered_to": r.delivered_to,
        "subject": r.subject,
    })
}

/// The facts about an outbound message that its events repeat.
pub struct OutboundFacts<'a> {
    pub to: &'a [String],
    pub cc: &'a [String],
    pub bcc: &'a [String],
    pub subject: &'a str,
    pub message_type: Option<MessageType>,
    pub conversation_id: &'a str,
}

impl<'a> OutboundFacts<'a> {
    /// The facts of a stored outbound message.
    pub fn of(m: &'a crate::store::Message, conversation_id: &'a str) -> Self {
        Self {
            to: &m.to,
            cc: &m.cc,
            bcc: &m.bcc,
            subject: &m.subject,
            message_type: m.message_type,
            conversation_id,
        }
    }
}

/// What `email.sent`, `email.failed`, `email.bounced` and the outbound review and gate
/// events share (contract §4.3).
pub fn outbound_data(agent: &Agent, id: &str, m: &OutboundFacts<'_>) -> Value {
    let mut data = json!({
        "message_id": id,
        "agent_email": agent.email,
        "direction": Direction::Outbound,
        "from": agent.email,
        "to": m.to,
        "cc": m.cc,
        "bcc": m.bcc,
        "subject": m.subject,
        "message_type": optional_str(m.message_type),
    });
    if let (Some(obj), false) = (data.as_object_mut(), m.conversation_id.is_empty()) {
        obj.insert("conversation_id".into(), json!(m.conversation_id));
    }
    data
}

/// An event about an outbound message of `agent`.
pub fn outbound_event(
    agent: &Agent,
    id: &str,
    conversation_id: &str,
    kind: EventKind,
    data: Value,
    at: Timestamp,
) -> NewEvent {
    MessageEvent {
        account_id: &agent.account_id,
        agent_email: &agent.email,
        message_id: id,
        conversation_id: Some(conversation_id),
        kind,
        data,
        at,
    }
    .build()
}

/// What a gate event (`email.flagged`, `email.blocked`, `email.review_requested`) adds to its
/// payload: the reason, the gate's policy and `reason_source` (the rule that decided: the
/// sender gate or the automatic-mail rule inbound, the recipient gate outbound).
pub fn gate_fields(data: &mut Value, verdict: &Verdict, protection: &Protection) {
    let rule = verdict.rule().unwrap_or(Rule::SenderGate);
    let policy = match rule {
        Rule::SenderGate | Rule::AutomaticMail => protection.inbound.gate.policy,
        Rule::RecipientGate => protection.outbound.gate.policy,
    };
    if let Some(obj) = data.as_object_mut() {
        obj.insert("reason".into(), json!(verdict.reason()));
        obj.insert("policy".into(), json!(policy));
        obj.insert("reason_source".into(), json!(rule.source()));
    }
}

/// `domain.suppression_added` for an entry of the account's list, `agent.suppression_added`
/// for an agent's (contract §4.3); one per entry, with a stable id.
/// The ledger row a suppression caused by a message's feedback adds to that message.
pub fn suppression_ledger(s: &Suppression) -> Vec<crate::mail::lifecycle::NewStage> {
    use crate::mail::lifecycle::{NewStage, Reason};
    let reason = match s.source {
        SuppressionSource::Bounce => Reason::HardBounceApplied,
        SuppressionSource::Complaint => Reason::ComplaintApplied,
        _ => return Vec::new(),
    };
    let Some(message_id) = &s.source_message_id else { return Vec::new() };
    vec![
        NewStage::new(message_id, Direction::Outbound, reason, s.created_at)
            .keyed(&format!("{message_id}|{reason}|{}", s.address))
            .recipient(&s.address)
            .evidence("suppression_scope", if s.agent_email.is_some() { "agent" } else { "account" })
            .evidence("suppression_source", s.source.as_str()),
    ]
}

/// `domain.suppression_added` / `agent.suppression_added`, carrying `ledger` (see
/// [`suppression_ledger`]) as its `lifecycle_transitions`.
pub fn suppression_event(s: &Suppression, ledger: &[crate::mail::lifecycle::NewStage]) -> NewEvent {
    let mut data = match &s.agent_email {
        None => json!({"address": s.address, "source": s.source}),
        Some(agent) => json!({"agent_email": agent, "address": s.address, "source": s.source}),
    };
    if let (Some(reason), Some(obj)) = (&s.reason, data.as_object_mut()) {
        obj.insert("reason".into(), json!(reason));
    }
    if let (Some(m), Some(obj)) = (&s.source_message_id, data.as_object_mut()) {
        obj.insert("message_id".into(), json!(m));
    }
    if let (false, Some(obj)) = (ledger.is_empty(), data.as_object_mut()) {
        obj.insert("lifecycle_transitions".into(), crate::mail::lifecycle::views(ledger));
    }
    let kind = if s.agent_email.is_some() {
        EventKind::AgentSuppressionAdded
    } else {
        EventKind::DomainSuppressionAdded
    };
    let subject = format!(
        "{}|{}|{}|{}",
        s.account_id,
        s.agent_email.as_deref().unwrap_or(""),
        s.address,
        s.created_at.as_micros()
    );
    let id = event_id(&subject, kind);
    let envelope =
        json!({"type": kind, "id": id, "schema_version": "1", "created_at": s.created_at, "data": data});
    NewEvent {
        id,
        account_id: s.account_id.clone(),
        kind,
        agent_email: s.agent_email.clone(),
        message_id: s.source_message_id.clone(),
        conversation_id: None,
        labels: Vec::new(),
        payload: envelope.to_string(),
        created_at: s.created_at,
        internal: false,
        only_webhook: None,
    }
}
