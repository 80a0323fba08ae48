//! Accepting a send: check the draft, run the outbound gate, then store it one of three ways
//! in a single transaction — queued for the submission worker (`accepted`), held for review
//! (`pending_review`), or, for a message to the agent's own address, delivered on the spot
//! (loopback: the sent row, its inbound twin and both events).

use super::address::Mailbox;
use super::compose::{self, Ids};
use super::{Checked, Draft, DraftError};
use crate::ids::{self, AccountId};
use crate::mail::event::{OutboundFacts, gate_fields, outbound_data, outbound_event};
use crate::mail::inbound::{self, Prepared};
use crate::mail::lifecycle::{self, NewStage, Reason};
use crate::mail::protection::{Protection, Verdict};
use crate::secret::Secret;
use crate::store::{
    Agent, IdempotencyDone, NewAttachment, NewEvent, NewHold, NewInboundMessage, NewJob, NewOutboundMessage,
    OutboundInsert, Store, StoreError,
};
use crate::time::Timestamp;
use crate::vocab::{
    DeliveryStatus, Direction, EventKind, JobKind, MessageStatus, MessageType, ReviewStatus, SendMethod,
};
use serde_json::{Value, json};

/// The seal purpose of stored idempotent responses (shared with the API's idempotency layer).
pub const IDEMPOTENCY_SEAL: &str = "idempotency-response";

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Draft(#[from] DraftError),
    /// The outbound gate blocks it (403 `blocked_by_policy`).
    #[error("{0}")]
    Blocked(String),
    #[error("composing the message failed: {0}")]
    Compose(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A recipient is on the account's or the agent's suppression list (422
    /// `recipient_suppressed`): nothing is stored, nothing reaches Postfix.
    #[error("recipient {address} is suppressed ({by})")]
    Suppressed { address: String, by: crate::vocab::SuppressionSource },
}

/// The first of `recipients` (bare addresses) that `agent` may not send to.
pub async fn first_suppressed(
    store: &dyn Store,
    agent: &Agent,
    recipients: &[&[String]],
) -> Result<Option<crate::store::Suppression>, StoreError> {
    let all: Vec<String> = recipients.iter().flat_map(|l| l.iter()).map(|a| a.to_ascii_lowercase()).collect();
    Ok(store.suppressed(&agent.account_id, &agent.email, &all).await?.into_iter().next())
}

/// What the agent sends.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub draft: Draft,
    pub message_type: MessageType,
    /// Explicit or inherited; a fresh `conv_…` when `None`.
    pub conversation_id: Option<String>,
    /// `(account, key)` of an `Idempotency-Key`: the response is committed with the message.
    pub idempotency: Option<(AccountId, String)>,
    /// A future `send_at` (beta): the submission waits until then. `None` sends now.
    pub send_at: Option<Timestamp>,
}

/// How the send was taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted {
        id: String,
    },
    /// Queued for its `send_at`.
    Scheduled {
        id: String,
        at: Timestamp,
    },
    Held {
        id: String,
        expires_at: Timestamp,
        scheduled_at: Option<Timestamp>,
    },
    Loopback {
        id: String,
    },
}

impl Outcome {
    /// The contract's `SendResultView` and its status code.
    pub fn view(&self) -> (u16, Value) {
        match self {
            Self::Accepted { id } => (202, json!({"status": "accepted", "message_id": id, "method": "smtp"})),
            Self::Scheduled { id, at } => {
                (202, json!({"status": "scheduled", "message_id": id, "method": "smtp", "scheduled_at": at}))
            }
            Self::Held { id, expires_at, scheduled_at: Some(at) } => (
                202,
                json!({"status": "pending_review", "message_id": id, "approval_expires_at": expires_at,
                    "scheduled_at": at}),
            ),
            Self::Held { id, expires_at, scheduled_at: None } => (
                202,
                json!({"status": "pending_review", "message_id": id, "approval_expires_at": expires_at}),
            ),
            Self::Loopback { id } => (
                200,
                json!({"status": "sent", "message_id": id, "method": "loopback", "sent_as": "own_address"}),
            ),
        }
    }
}

/// The agent as the From mailbox.
pub fn from_mailbox(agent: &Agent) -> Mailbox {
    Mailbox { name: Some(agent.name.clone()).filter(|n| !n.is_empty()), address: agent.email.clone() }
}

/// A self-send: exactly one To, the agent itself, and nobody else.
pub fn is_loopback(agent: &Agent, checked: &Checked) -> bool {
    checked.cc.is_empty()
        && checked.bcc.is_empty()
        && checked.to.len() == 1
        && checked.to[0].address == agent.email
}

/// The MIME of `draft` as `agent` sends it.
pub fn compose_for(
    agent: &Agent,
    draft: &Draft,
    checked: &Checked,
    id: &str,
    conversation_id: &str,
) -> std::io::Result<(String, Vec<u8>)> {
    let rfc = compose::rfc_message_id(id, &agent.domain);
    let ids = Ids { message_id: id, rfc_message_id: &rfc, conversation_id };
    let raw = compose::compose(draft, checked, &from_mailbox(agent), &ids)?;
    Ok((rfc, raw))
}

/// The attachment rows of a composed message, as the parser numbers them.
pub fn attachment_rows(raw: &[u8]) -> Vec<NewAttachment> {
    inbound::parse(raw).attachments
}

/// The inbound copy of a loopback self-send, with its `email.received` event: stored with
/// `authentication: null` (no milter saw it) and the sender's conversation.
pub fn loopback_twin(
    agent: &Agent,
    outbound_id: &str,
    raw: &[u8],
    conversation_id: &str,
    now: Timestamp,
) -> ((NewInboundMessage, Vec<NewAttachment>), NewEvent) {
    let prepared = Prepared {
        claims: None,
        unsigned_reason: None,
        unsigned_binding: None,
        unbound: Vec::new(),
        source_id: format!("{}{outbound_id}", lifecycle::LOOPBACK_SOURCE),
        raw_source_id: format!("{}{outbound_id}", lifecycle::LOOPBACK_SOURCE),
        // Providerless delivery has no SMTP envelope: null, as e2a's view has it.
        envelope_from: None,
        postfix_queue_id: None,
        raw: raw.to_vec(),
        parsed: inbound::parse(raw),
        // The agent's own note to itself is not automatic mail.
        auto_class: None,
        recipient_delimiter: inbound::DEFAULT_DELIMITER.to_owned(),
    };
    let (msg, mut events) = inbound::filed(
        agent,
        &prepared,
        &agent.email,
        Some(conversation_id.to_owned()),
        &Verdict::Pass,
        &Protection::default(),
        now,
    );
    let attachments = prepared.parsed.attachments.clone();
    let event = events.remove(0);
    ((msg, attachments), event)
}

fn sealed(secret: &Secret, idem: &Option<(AccountId, String)>, outcome: &Outcome) -> Option<IdempotencyDone> {
    let (account, key) = idem.as_ref()?;
    let (status, body) = outcome.view();
    let body = crate::seal::seal(secret, IDEMPOTENCY_SEAL, body.to_string().as_bytes())?;
    Some(IdempotencyDone { account_id: account.clone(), key: key.clone(), status, body })
}

/// Takes a send from `agent`.
pub async fn send(
    store: &dyn Store,
    secret: &Secret,
    agent: &Agent,
    out: Outgoing,
    now: Timestamp,
) -> Result<Outcome, SendError> {
    let checked = out.draft.check()?;
    if let Some(c) = &out.conversation_id {
        super::check_conversation_id(c)?;
    }
    let bare = |l: &[Mailbox]| super::address::bare(l);
    let (to, cc, bcc) = (bare(&checked.to), bare(&checked.cc), bare(&checked.bcc));
    if let Some(s) = first_suppressed(store, agent, &[&to, &cc, &bcc]).await? {
        return Err(SendError::Suppressed { address: s.address, by: s.source });
    }
    let id = ids::mint("msg_", 16);
    let conversation_id =
        out.conversation_id.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| ids::mint("conv_", 16));
    let envelope = checked.envelope();
    let protection = store.get_protection(&agent.email).await?;
    let loopback = is_loopback(agent, &checked);
    let send_at = out.send_at.filter(|at| *at > now);
    if loopback && send_at.is_some() {
        return Err(DraftError::Invalid(
            "a self-send is delivered at once and cannot be scheduled; omit send_at".into(),
        )
        .into());
    }
    let verdict =
        if loopback { Verdict::Pass } else { protection.outbound_verdict(&agent.domain, &envelope) };
    let facts = OutboundFacts {
        to: &to,
        cc: &cc,
        bcc: &bcc,
        subject: &out.draft.subject,
        message_type: Some(out.message_type),
        conversation_id: &conversation_id,
    };
    if let Verdict::Block { reason, .. } = &verdict {
        // Nothing is stored: the event names a rowless id, as the contract's `msgblk_…`.
        let block_id = ids::mint("msgblk_", 12);
        let mut data = outbound_data(agent, &block_id, &facts);
        gate_fields(&mut data, &verdict, &protection);
        let mut event =
            outbound_event(agent, &block_id, &conversation_id, EventKind::EmailBlocked, data, now);
        event.message_id = None;
        store.emit_event(event).await?;
        return Err(SendError::Blocked(reason.clone()));
    }
    let draft_json = serde_json::to_string(&out.draft).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut message = NewOutboundMessage {
        id: id.clone(),
        account_id: agent.account_id.clone(),
        agent_email: agent.email.clone(),
        status: MessageStatus::Accepted,
        review_status: None,
        delivery_status: None,
        message_type: out.message_type,
        method: if loopback { SendMethod::Loopback } else { SendMethod::Smtp },
        sent_as: "own_address".into(),
        header_from: agent.email.clone(),
        to: to.clone(),
        cc: cc.clone(),
        bcc: bcc.clone(),
        reply_to: bare(&checked.reply_to),
        subject: out.draft.subject.clone(),
        rfc_message_id: compose::rfc_message_id(&id, &agent.domain),
        in_reply_to: out.draft.in_reply_to.clone(),
        references: out.draft.references.clone(),
        conversation_id: conversation_id.clone(),
        raw: None,
        draft: draft_json,
        size_bytes: 0,
        provider_message_id: None,
        created_at: now,
        flag_reason: None,
        scheduled_at: send_at,
    };
    let mut insert = OutboundInsert {
        message: message.clone(),
        attachments: Vec::new(),
        hold: None,
        twin: None,
        events: Vec::new(),
        jobs: Vec::new(),
        idempotency: None,
        lifecycle: Vec::new(),
    };
    let stage = |reason| NewStage::new(&id, Direction::Outbound, reason, now);
    let mut ledger = vec![stage(Reason::OutboundApi)];
    if let Verdict::Flag { reason, .. } = &verdict {
        // Sent as usual, but marked, and the account hears of it.
        message.flag_reason = Some(reason.clone());
        let mut data = outbound_data(agent, &id, &facts);
        gate_fields(&mut data, &verdict, &protection);
        insert.events.push(outbound_event(agent, &id, &conversation_id, EventKind::EmailFlagged, data, now));
    }
    let outcome = if let Verdict::Review { .. } = &verdict {
        let expires_at = now.plus_secs(protection.holds.ttl_seconds);
        message.status = MessageStatus::PendingReview;
        message.review_status = Some(ReviewStatus::PendingReview);
        let mut data = outbound_data(agent, &id, &facts);
        gate_fields(&mut data, &verdict, &protection);
        if let Some(obj) = data.as_object_mut() {
            obj.insert("approval_expires_at".into(), json!(expires_at));
        }
        insert.events.push(outbound_event(
            agent,
            &id,
            &conversation_id,
            EventKind::EmailReviewRequested,
            data,
            now,
        ));
        insert.hold = Some(NewHold {
            direction: Direction::Outbound,
            reason: verdict.hold_reason().to_string(),
            on_expiry: protection.holds.on_expiry,
            expires_at,
        });
        if !protection.holds.suppress_notifications {
            insert.jobs.push(NewJob { kind: JobKind::ReviewNotify, ref_id: id.clone(), run_at: now });
        }
        ledger.push(stage(Reason::HoldCreated));
        Outcome::Held { id: id.clone(), expires_at, scheduled_at: send_at }
    } else {
        let (_, raw) = compose_for(agent, &out.draft, &checked, &id, &conversation_id)?;
        insert.attachments = attachment_rows(&raw);
        message.size_bytes = raw.len() as i64;
        let outcome = if loopback {
            message.status = MessageStatus::Sent;
            message.delivery_status = Some(DeliveryStatus::Sent);
            message.provider_message_id = Some(format!("<{}@loopback.{}>", &id[4..], agent.domain));
            ledger.push(stage(Reason::OutboundSubmission));
            ledger.push(stage(Reason::LoopbackAccepted));
            ledger = lifecycle::in_order(ledger);
            let mut sent = outbound_data(agent, &id, &facts);
            if let Some(obj) = sent.as_object_mut() {
                obj.insert("method".into(), json!("loopback"));
                obj.insert("lifecycle_transitions".into(), lifecycle::views(&ledger[ledger.len() - 1..]));
            }
            insert.events.push(outbound_event(agent, &id, &conversation_id, EventKind::EmailSent, sent, now));
            let (twin, received) = loopback_twin(agent, &id, &raw, &conversation_id, now);
            insert.twin = Some(twin);
            insert.events.push(received);
            Outcome::Loopback { id: id.clone() }
        } else {
            message.status = MessageStatus::Accepted;
            message.delivery_status = Some(DeliveryStatus::Accepted);
            let run_at = send_at.unwrap_or(now);
            insert.jobs.push(NewJob { kind: JobKind::Submit, ref_id: id.clone(), run_at });
            let queued = stage(Reason::OutboundSubmission);
            ledger.push(match send_at {
                Some(at) => queued.evidence("scheduled_at", at.to_rfc3339()),
                None => queued,
            });
            match send_at {
                Some(at) => Outcome::Scheduled { id: id.clone(), at },
                None => Outcome::Accepted { id: id.clone() },
            }
        };
        message.raw = Some(raw);
        outcome
    };
    insert.message = message;
    // (A loopback twin's own rows are written with the twin.)
    insert.lifecycle = lifecycle::in_order(ledger);
    insert.idempotency = sealed(secret, &out.idempotency, &outcome);
    store.insert_outbound(insert).await?;
    tracing::info!(
        "NOQUEUE: outbound msg={id} agent={} rcpts={} type={} outcome={}",
        agent.email,
        envelope.len(),
        out.message_type,
        match &outcome {
            Outcome::Accepted { .. } => "accepted",
            Outcome::Scheduled { .. } => "scheduled",
            Outcome::Held { .. } => "pending_review",
            Outcome::Loopback { .. } => "loopback",
        }
    );
    Ok(outcome)
}
