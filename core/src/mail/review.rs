//! Deciding a hold (contract §7): approve (with a reviewer's optional edits), reject (with a
//! reason), or let it expire into its `on_expiry` outcome. The REST API, the magic-link pages
//! and the expiry sweep all come here, and every decision is one compare-and-set transition:
//! whoever moves the message out of `pending_review` first wins, every other attempt sees
//! "not pending" and changes nothing. That is what makes two replicas sweeping the same
//! expired hold apply `on_expiry` exactly once.

use crate::mail::event::{OutboundFacts, Received, outbound_data, outbound_event, with_fields};
use crate::mail::lifecycle::{self, NewStage, Reason};
use crate::mail::outbound::send::{attachment_rows, compose_for, is_loopback, loopback_twin};
use crate::mail::outbound::{Draft, DraftAttachment, DraftError, address::bare};
use crate::secret::Secret;
use crate::store::{
    Agent, Hold, HoldDecision, IdempotencyDone, Message, MessageUpdate, NewEvent, NewJob, Store, StoreError,
    Transition,
};
use crate::time::Timestamp;
use crate::vocab::{
    DeliveryStatus, Direction, EventKind, HoldState, JobKind, MessageStatus, OnExpiry, ReviewStatus,
    SendMethod, optional_str,
};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such held message")]
    NotFound,
    #[error("the message is not pending review")]
    NotPending,
    /// The hold's window closed; its `on_expiry` outcome is the expiry sweep's to apply.
    #[error("the review window of this message has closed")]
    Expired,
    #[error(transparent)]
    Draft(#[from] DraftError),
    #[error("composing the message failed: {0}")]
    Compose(#[from] std::io::Error),
    #[error("the stored draft cannot be read: {0}")]
    BadDraft(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A recipient is suppressed: the hold stays pending (422 `recipient_suppressed`).
    #[error("recipient {address} is suppressed ({by})")]
    Suppressed { address: String, by: crate::vocab::SuppressionSource },
}

/// A reviewer's changes to a held outbound message (`ApproveRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Option<Vec<DraftAttachment>>,
}

impl Edits {
    /// Applies the edits; `true` when anything changed.
    fn apply(self, d: &mut Draft) -> bool {
        let before = d.clone();
        if let Some(v) = self.to {
            d.to = v;
        }
        if let Some(v) = self.cc {
            d.cc = v;
        }
        if let Some(v) = self.bcc {
            d.bcc = v;
        }
        if let Some(v) = self.subject {
            d.subject = v;
        }
        if let Some(v) = self.text {
            d.text = Some(v);
        }
        if let Some(v) = self.html {
            d.html = Some(v);
        }
        if let Some(v) = self.attachments {
            d.attachments = v;
        }
        *d != before
    }
}

/// Who decided: a person (their key, a magic link) or the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    Reviewer(String),
    Expiry,
}

impl DecidedBy {
    fn label(&self) -> String {
        match self {
            Self::Reviewer(who) => who.clone(),
            Self::Expiry => "expiry".into(),
        }
    }

    fn auto(&self) -> bool {
        *self == Self::Expiry
    }
}

/// The result of a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// Outbound, queued for submission.
    Queued {
        id: String,
        edited: bool,
    },
    /// Outbound to the agent's own address, delivered at once.
    Loopback {
        id: String,
        edited: bool,
    },
    /// Inbound, now in the inbox.
    Released {
        id: String,
    },
    Rejected {
        id: String,
        reason: String,
    },
}

impl Decided {
    /// The contract's response body and status code (`SendResultView` / `RejectResultView`).
    pub fn view(&self) -> (u16, Value) {
        match self {
            Self::Queued { id, edited } => (
                202,
                json!({"status": "accepted", "message_id": id, "method": "smtp", "sent_as": "own_address", "edited": edited}),
            ),
            Self::Loopback { id, edited } => (
                200,
                json!({"status": "sent", "message_id": id, "method": "loopback", "sent_as": "own_address", "edited": edited}),
            ),
            Self::Released { id } => (200, json!({"status": "review_approved", "message_id": id})),
            Self::Rejected { id, reason } => {
                (200, json!({"status": "review_rejected", "message_id": id, "rejection_reason": reason}))
            }
        }
    }
}

struct Context {
    hold: Hold,
    message: Message,
    agent: Agent,
}

async fn load(
    store: &dyn Store,
    message_id: &str,
    by: &DecidedBy,
    now: Timestamp,
) -> Result<Context, ReviewError> {
    let hold = store.get_hold(message_id).await?.ok_or(ReviewError::NotFound)?;
    let message = store.find_message(message_id).await?.ok_or(ReviewError::NotFound)?;
    let agent = store.find_live_agent(&hold.agent_email).await?.ok_or(ReviewError::NotFound)?;
    if hold.state != HoldState::Pending {
        return Err(ReviewError::NotPending);
    }
    // Past its deadline a hold belongs to its on_expiry outcome, even before a sweep ran.
    if *by != DecidedBy::Expiry && hold.expires_at <= now {
        return Err(ReviewError::Expired);
    }
    Ok(Context { hold, message, agent })
}

fn event(cx: &Context, kind: EventKind, data: Value, at: Timestamp) -> NewEvent {
    outbound_event(
        &cx.agent,
        &cx.message.id,
        cx.message.conversation_id.as_deref().unwrap_or(""),
        kind,
        data,
        at,
    )
}

/// The `email.received` payload of a stored inbound message (released from review).
async fn received_from_row(store: &dyn Store, m: &Message) -> Result<Value, StoreError> {
    let attachments = store.list_attachments(&m.id).await?;
    let authentication: Value =
        m.authentication.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(Value::Null);
    Ok(Received {
        message_id: &m.id,
        agent_email: &m.agent_email,
        delivered_to: &m.delivered_to,
        header_from: m.header_from.as_deref(),
        envelope_from: m.envelope_from.as_deref(),
        verified_domain: m.verified_domain.as_deref(),
        authentication,
        to: &m.to,
        cc: &m.cc,
        reply_to: &m.reply_to,
        subject: &m.subject,
        received_at: m.created_at,
        attachments: &attachments,
        conversation_id: m.conversation_id.as_deref(),
    }
    .data())
}

/// Approves a hold. Outbound: composes the (possibly edited) draft and queues it, or delivers
/// a self-send at once. Inbound: releases the message to the inbox (`email.received` now).
pub async fn approve(
    store: &dyn Store,
    secret: &Secret,
    message_id: &str,
    edits: Edits,
    by: DecidedBy,
    idempotency: Option<(crate::ids::AccountId, String)>,
    now: Timestamp,
) -> Result<Decided, ReviewError> {
    let cx = load(store, message_id, &by, now).await?;
    let auto = by.auto();
    let hold_state = if auto { HoldState::ExpiredApproved } else { HoldState::Approved };
    let direction = cx.hold.direction;
    let stage = |reason| NewStage::new(&cx.message.id, direction, reason, now);
    let decision = stage(if auto { Reason::ExpiredApproved } else { Reason::ReviewApproved })
        .evidence("review_resolution", by.label());
    let mut t = Transition {
        message_id: cx.message.id.clone(),
        hold: Some(HoldDecision { state: hold_state, decided_by: by.label(), reject_reason: None }),
        at: now,
        ..Transition::default()
    };
    let decided = if cx.hold.direction == Direction::Inbound {
        t.from = vec![MessageStatus::Held];
        t.set = MessageUpdate {
            status: Some(MessageStatus::Received),
            review_status: Some(if auto {
                ReviewStatus::ReviewExpiredApproved
            } else {
                ReviewStatus::ReviewApproved
            }),
            ..MessageUpdate::default()
        };
        let approved = json!({
            "message_id": cx.message.id, "direction": "inbound", "agent_email": cx.agent.email,
            "from": cx.message.header_from, "subject": cx.message.subject, "message_type": "received",
        });
        let approved = if auto { with_fields(approved, json!({"auto_resolved": true})) } else { approved };
        t.events.push(event(&cx, EventKind::EmailReviewApproved, approved, now));
        t.lifecycle = lifecycle::in_order(vec![decision.clone(), stage(Reason::InboundProcessing)]);
        t.events.push(event(
            &cx,
            EventKind::EmailReceived,
            with_fields(
                received_from_row(store, &cx.message).await?,
                json!({"lifecycle_transitions": lifecycle::views(&t.lifecycle)}),
            ),
            now,
        ));
        Decided::Released { id: cx.message.id.clone() }
    } else {
        let stored = store.get_draft(&cx.message.id).await?.ok_or(ReviewError::NotFound)?;
        let mut draft: Draft =
            serde_json::from_str(&stored).map_err(|e| ReviewError::BadDraft(e.to_string()))?;
        let edited = edits.apply(&mut draft);
        let checked = draft.check()?;
        let conversation_id = cx.message.conversation_id.clone().unwrap_or_default();
        let (_, raw) = compose_for(&cx.agent, &draft, &checked, &cx.message.id, &conversation_id)?;
        let (to, cc, bcc) = (bare(&checked.to), bare(&checked.cc), bare(&checked.bcc));
        if let Some(s) =
            crate::mail::outbound::send::first_suppressed(store, &cx.agent, &[&to, &cc, &bcc]).await?
        {
            return Err(ReviewError::Suppressed { address: s.address, by: s.source });
        }
        let facts = OutboundFacts {
            to: &to,
            cc: &cc,
            bcc: &bcc,
            subject: &draft.subject,
            message_type: cx.message.message_type,
            conversation_id: &conversation_id,
        };
        let loopback = is_loopback(&cx.agent, &checked);
        let method = if loopback { SendMethod::Loopback } else { SendMethod::Smtp };
        let approved = with_fields(
            outbound_data(&cx.agent, &cx.message.id, &facts),
            json!({"method": method, "edited": edited}),
        );
        let approved = if auto { with_fields(approved, json!({"auto_resolved": true})) } else { approved };
        t.events.push(event(&cx, EventKind::EmailReviewApproved, approved, now));
        t.from = vec![MessageStatus::PendingReview];
        t.attachments = Some(attachment_rows(&raw));
        t.set = MessageUpdate {
            review_status: Some(if auto { ReviewStatus::ReviewExpiredApproved } else { ReviewStatus::Sent }),
            method: Some(method),
            size_bytes: Some(raw.len() as i64),
            draft: edited.then(|| serde_json::to_string(&draft).unwrap_or(stored.clone())),
            to: Some(to.clone()),
            cc: Some(cc.clone()),
            bcc: Some(bcc.clone()),
            subject: Some(draft.subject.clone()),
            ..MessageUpdate::default()
        };
        let decided = if loopback {
            t.set.status = Some(MessageStatus::Sent);
            t.set.delivery_status = Some(DeliveryStatus::Sent);
            t.set.provider_message_id =
                Some(format!("<{}@loopback.{}>", &cx.message.id[4..], cx.agent.domain));
            t.lifecycle = lifecycle::in_order(vec![
                decision.clone(),
                stage(Reason::OutboundSubmission),
                stage(Reason::LoopbackAccepted),
            ]);
            let sent = with_fields(
                outbound_data(&cx.agent, &cx.message.id, &facts),
                json!({"method": "loopback", "lifecycle_transitions": lifecycle::views(&t.lifecycle[2..])}),
            );
            t.events.push(event(&cx, EventKind::EmailSent, sent, now));
            let (twin, received) = loopback_twin(&cx.agent, &cx.message.id, &raw, &conversation_id, now);
            t.twin = Some(twin);
            t.events.push(received);
            Decided::Loopback { id: cx.message.id.clone(), edited }
        } else {
            t.set.status = Some(MessageStatus::Accepted);
            t.set.delivery_status = Some(DeliveryStatus::Accepted);
            // A held schedule survives the hold: sent at its time, or now when that passed.
            let run_at = cx.message.scheduled_at.filter(|at| *at > now).unwrap_or(now);
            t.jobs.push(NewJob { kind: JobKind::Submit, ref_id: cx.message.id.clone(), run_at });
            t.lifecycle = lifecycle::in_order(vec![decision.clone(), stage(Reason::OutboundSubmission)]);
            Decided::Queued { id: cx.message.id.clone(), edited }
        };
        t.set.raw = Some(raw);
        decided
    };
    t.idempotency = sealed(secret, &idempotency, &decided);
    if !store.transition(t).await? {
        return Err(ReviewError::NotPending);
    }
    tracing::info!(
        "NOQUEUE: review msg={} agent={} direction={} decision=approve by={}",
        cx.message.id,
        cx.agent.email,
        cx.hold.direction,
        by.label()
    );
    Ok(decided)
}

fn sealed(
    secret: &Secret,
    idem: &Option<(crate::ids::AccountId, String)>,
    d: &Decided,
) -> Option<IdempotencyDone> {
    let (account, key) = idem.as_ref()?;
    let (status, body) = d.view();
    let body = crate::seal::seal(
        secret,
        crate::mail::outbound::send::IDEMPOTENCY_SEAL,
        body.to_string().as_bytes(),
    )?;
    Some(IdempotencyDone { account_id: account.clone(), key: key.clone(), status, body })
}

/// Rejects a hold: the message stays stored (hidden if inbound) and is never sent.
pub async fn reject(
    store: &dyn Store,
    message_id: &str,
    reason: Option<String>,
    by: DecidedBy,
    now: Timestamp,
) -> Result<Decided, ReviewError> {
    let cx = load(store, message_id, &by, now).await?;
    let auto = by.auto();
    let reason = reason.unwrap_or_default();
    let inbound = cx.hold.direction == Direction::Inbound;
    let mut data = json!({
        "message_id": cx.message.id, "direction": cx.hold.direction, "agent_email": cx.agent.email,
        "message_type": if inbound { "received" } else { optional_str(cx.message.message_type) }, "reason": reason,
    });
    if auto {
        data = with_fields(data, json!({"auto_resolved": true}));
    }
    let t = Transition {
        message_id: cx.message.id.clone(),
        from: vec![if inbound { MessageStatus::Held } else { MessageStatus::PendingReview }],
        set: MessageUpdate {
            status: Some(if inbound { MessageStatus::Rejected } else { MessageStatus::ReviewRejected }),
            review_status: Some(if auto {
                ReviewStatus::ReviewExpiredRejected
            } else {
                ReviewStatus::ReviewRejected
            }),
            ..MessageUpdate::default()
        },
        hold: Some(HoldDecision {
            state: if auto { HoldState::ExpiredRejected } else { HoldState::Rejected },
            decided_by: by.label(),
            reject_reason: Some(reason.clone()).filter(|r| !r.is_empty()),
        }),
        events: vec![event(&cx, EventKind::EmailReviewRejected, data, now)],
        lifecycle: vec![
            NewStage::new(
                &cx.message.id,
                cx.hold.direction,
                if auto { Reason::ExpiredRejected } else { Reason::ReviewRejected },
                now,
            )
            .evidence("review_resolution", by.label()),
        ],
        at: now,
        ..Transition::default()
    };
    if !store.transition(t).await? {
        return Err(ReviewError::NotPending);
    }
    tracing::info!(
        "NOQUEUE: review msg={} agent={} direction={} decision=reject by={}",
        cx.message.id,
        cx.agent.email,
        cx.hold.direction,
        by.label()
    );
    Ok(Decided::Rejected { id: cx.message.id.clone(), reason })
}

/// Applies the hold's `on_expiry`; `None` when someone else decided it first.
pub async fn expire(
    store: &dyn Store,
    secret: &Secret,
    hold: &Hold,
    now: Timestamp,
) -> Result<Option<Decided>, ReviewError> {
    let result = if hold.on_expiry == OnExpiry::Approve {
        approve(store, secret, &hold.message_id, Edits::default(), DecidedBy::Expiry, None, now).await
    } else {
        reject(store, &hold.message_id, None, DecidedBy::Expiry, now).await
    };
    match result {
        Ok(d) => Ok(Some(d)),
        Err(ReviewError::NotPending | ReviewError::Expired) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One sweep: every due hold, up to `batch`; returns how many this call decided.
pub async fn sweep(
    store: &dyn Store,
    secret: &Secret,
    now: Timestamp,
    batch: u32,
) -> Result<usize, StoreError> {
    let mut decided = 0;
    for hold in store.due_holds(now, batch).await? {
        match expire(store, secret, &hold, now).await {
            Ok(Some(_)) => decided += 1,
            Ok(None) => {}
            Err(ReviewError::Store(e)) => return Err(e),
            Err(e) => {
                // A draft that no longer composes (say, an attachment limit changed): reject
                // it rather than retry forever.
                tracing::warn!(
                    "NOQUEUE: review msg={} expiry could not approve: {e}; rejecting",
                    hold.message_id
                );
                if let Err(e) = reject(
                    store,
                    &hold.message_id,
                    Some(format!("expired and could not be sent: {e}")),
                    DecidedBy::Expiry,
                    now,
                )
                .await
                {
                    tracing::warn!("NOQUEUE: review msg={} expiry reject failed: {e}", hold.message_id);
                }
            }
        }
    }
    Ok(decided)
}
