//! Rows as the rest of the program sees them.

use crate::apikey::KeyScope;
use crate::ids::{AccountId, ApiKeyId};
use crate::time::Timestamp;
use crate::vocab::{
    BounceType, DeliveryState, DeliveryStatus, Direction, EventKind, EventStatus, HoldState, JobKind,
    MessageStatus, MessageType, OnExpiry, ProbeStatus, ReadStatus, ReviewStatus, SendMethod,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub reviewer_email: Option<String>,
    pub plan_code: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub agents: i64,
    pub domains: i64,
    pub messages_month: i64,
    pub storage_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub account_id: AccountId,
    pub name: String,
    pub scope: KeyScope,
    pub agent_email: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub key_hash: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub name: String,
    pub key_prefix: String,
    pub scope: KeyScope,
    pub agent_email: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDomain {
    pub account_id: AccountId,
    pub domain: String,
    pub verification_token: String,
    /// Operator-owned domains are verified on creation.
    pub operator_owned: bool,
}

/// The state of one DNS probe: `found`, `missing`, `mismatch`, `deferred` or `pending`.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainCheck {
    pub verified: bool,
    pub txt_status: ProbeStatus,
    pub mx_status: ProbeStatus,
    pub checked_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub domain: String,
    pub account_id: AccountId,
    pub verification_token: String,
    pub verified: bool,
    pub operator_owned: bool,
    pub verified_at: Option<Timestamp>,
    pub last_checked_at: Option<Timestamp>,
    pub txt_status: ProbeStatus,
    pub mx_status: ProbeStatus,
    pub created_at: Timestamp,
    /// Live agents on this domain.
    pub agent_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAgent {
    pub account_id: AccountId,
    pub email: String,
    pub domain: String,
    pub name: String,
    /// False only for the shared domain, which is the operator's and not a row.
    pub require_verified_domain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub email: String,
    pub account_id: AccountId,
    pub domain: String,
    pub name: String,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// Whether the agent's domain is a verified registered domain (false for the shared
    /// domain, which is not a row; callers know it is always valid).
    pub domain_verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub ref_id: String,
    /// Including the one this claim starts.
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: the caller runs the request and then finishes or releases the key.
    Started,
    /// The same request completed before; replay its response.
    Replay { status: u16, body: String },
    /// The same key is being processed right now.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

/// An inbound message ready to store, for one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInboundMessage {
    pub id: String,
    pub account_id: AccountId,
    pub agent_email: String,
    /// The milter's message id when the signature verified, else a hash of the raw bytes:
    /// with the agent it identifies a redelivery.
    pub source_id: String,
    pub header_from: Option<String>,
    pub envelope_from: Option<String>,
    pub verified_domain: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Vec<String>,
    pub delivered_to: String,
    pub subject: String,
    pub rfc_message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub conversation_id: Option<String>,
    /// The contract's `authentication` object as JSON; `None` when unsigned or invalid.
    pub authentication: Option<String>,
    pub raw: Vec<u8>,
    pub size_bytes: i64,
    pub postfix_queue_id: Option<String>,
    pub created_at: Timestamp,
    /// `received`, or `held` / `rejected` when the agent's inbound gate says so.
    pub status: MessageStatus,
    pub review_status: Option<ReviewStatus>,
    pub flag_reason: Option<String>,
    /// Set when the message is held for review.
    /// System labels set at delivery (`e2a:auto-replied`…, loop protection).
    pub labels: Vec<String>,
    pub hold: Option<NewHold>,
    /// Its first lifecycle rows (accepted at the Postfix queue id, authentication, queued or
    /// held), written with the row.
    pub lifecycle: Vec<crate::mail::lifecycle::NewStage>,
}

/// A hold on a message: it waits for a reviewer until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHold {
    pub direction: Direction,
    /// The contract's `hold_reason` object as JSON.
    pub reason: String,
    pub on_expiry: OnExpiry,
    pub expires_at: Timestamp,
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub message_id: String,
    pub account_id: AccountId,
    pub agent_email: String,
    pub direction: Direction,
    pub reason: String,
    pub state: HoldState,
    pub on_expiry: OnExpiry,
    pub expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
    pub reject_reason: Option<String>,
    pub created_at: Timestamp,
}

/// An outbound message ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboundMessage {
    pub id: String,
    pub account_id: AccountId,
    pub agent_email: String,
    /// `accepted` (queued for submission), `pending_review` (held) or `sent` (loopback).
    pub status: MessageStatus,
    pub review_status: Option<ReviewStatus>,
    pub delivery_status: Option<DeliveryStatus>,
    pub message_type: MessageType,
    pub method: SendMethod,
    pub sent_as: String,
    pub header_from: String,
    /// Bare addresses, lowercase.
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: String,
    pub rfc_message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub conversation_id: String,
    /// The composed MIME; `None` while held (composed on approval).
    pub raw: Option<Vec<u8>>,
    /// The request as JSON (`outbound::Draft`).
    pub draft: String,
    pub size_bytes: i64,
    pub provider_message_id: Option<String>,
    pub created_at: Timestamp,
    /// Set when the outbound gate's action is `flag`: sent, but marked.
    pub flag_reason: Option<String>,
    /// A future `send_at`: the submission job runs then.
    pub scheduled_at: Option<Timestamp>,
}

/// An `Idempotency-Key` response committed with the change it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyDone {
    pub account_id: AccountId,
    pub key: String,
    pub status: u16,
    /// Sealed, as the idempotency layer stores it.
    pub body: String,
}

/// A job to add in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub ref_id: String,
    pub run_at: Timestamp,
}

/// One outbound insert: the row, its attachment metadata, an optional hold, an optional
/// inbound twin (a loopback self-send), its events and jobs, all in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundInsert {
    pub message: NewOutboundMessage,
    pub attachments: Vec<NewAttachment>,
    pub hold: Option<NewHold>,
    pub twin: Option<(NewInboundMessage, Vec<NewAttachment>)>,
    pub events: Vec<NewEvent>,
    pub jobs: Vec<NewJob>,
    pub idempotency: Option<IdempotencyDone>,
    /// Ledger rows of the message (and of its twin), written in the same transaction.
    pub lifecycle: Vec<crate::mail::lifecycle::NewStage>,
}

/// Column values a [`Transition`] sets; `None` leaves a column alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageUpdate {
    pub status: Option<MessageStatus>,
    pub review_status: Option<ReviewStatus>,
    pub read_status: Option<ReadStatus>,
    pub delivery_status: Option<DeliveryStatus>,
    pub delivery_detail: Option<String>,
    pub postfix_queue_id: Option<String>,
    pub provider_message_id: Option<String>,
    pub bounce_type: Option<BounceType>,
    pub raw: Option<Vec<u8>>,
    pub draft: Option<String>,
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    pub subject: Option<String>,
    pub size_bytes: Option<i64>,
    pub method: Option<SendMethod>,
}

/// How a hold was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldDecision {
    pub state: HoldState,
    pub decided_by: String,
    pub reject_reason: Option<String>,
}

/// A compare-and-set change of one message: applied only while its status is one of
/// `from` (and, with `hold`, while its hold is pending), with its events, jobs and attachment
/// rows in the same transaction. This is what makes concurrent workers, reviewers and
/// replicas safe: exactly one of them moves a message out of a state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    pub message_id: String,
    pub from: Vec<MessageStatus>,
    pub set: MessageUpdate,
    pub hold: Option<HoldDecision>,
    pub attachments: Option<Vec<NewAttachment>>,
    pub twin: Option<(NewInboundMessage, Vec<NewAttachment>)>,
    pub events: Vec<NewEvent>,
    pub jobs: Vec<NewJob>,
    pub idempotency: Option<IdempotencyDone>,
    /// Ledger rows recording this change, written only when it applies.
    pub lifecycle: Vec<crate::mail::lifecycle::NewStage>,
    /// Applies only while the message is out of the trash (the submitter taking it: a
    /// message trashed after it was read is not sent).
    pub unless_trashed: bool,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAttachment {
    pub index: i64,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub content_id: Option<String>,
    pub size_bytes: i64,
}

/// Attachment metadata as stored (the bytes stay inside the raw message).
pub type AttachmentMeta = NewAttachment;

/// An outbox row, written in the transaction of the change it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub account_id: AccountId,
    pub kind: EventKind,
    pub agent_email: Option<String>,
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
    /// For webhook label filters.
    pub labels: Vec<String>,
    /// The whole envelope `{type, id, schema_version, created_at, data}` as JSON.
    pub payload: String,
    pub created_at: Timestamp,
    /// Not part of the event log (test deliveries).
    pub internal: bool,
    /// Deliver to this webhook only, whatever its filters (test deliveries); `None` fans out
    /// to every enabled matching webhook of the account.
    pub only_webhook: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Stored,
    /// The same message reached this agent before; nothing was written.
    Duplicate {
        id: String,
    },
}

/// A stored message without its raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub account_id: AccountId,
    pub agent_email: String,
    pub direction: Direction,
    pub status: MessageStatus,
    pub review_status: Option<ReviewStatus>,
    /// Inbound mail only.
    pub read_status: Option<ReadStatus>,
    pub header_from: Option<String>,
    pub envelope_from: Option<String>,
    pub verified_domain: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub reply_to: Vec<String>,
    pub delivered_to: String,
    pub subject: String,
    pub rfc_message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub labels: Vec<String>,
    pub authentication: Option<String>,
    pub size_bytes: i64,
    pub delivery_status: Option<DeliveryStatus>,
    pub delivery_detail: Option<String>,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// The future instant a scheduled send asked for (kept after it is sent).
    pub scheduled_at: Option<Timestamp>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub provider_message_id: Option<String>,
    pub postfix_queue_id: Option<String>,
    /// Outbound mail only.
    pub message_type: Option<MessageType>,
    pub method: Option<SendMethod>,
    pub sent_as: Option<String>,
    pub flagged: bool,
    pub flag_reason: Option<String>,
    pub bounce_type: Option<BounceType>,
}

/// Inbox filters (contract §3.5). `None` means "no filter".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageFilter {
    pub direction: Option<Direction>,
    pub read_status: Option<ReadStatus>,
    pub from_contains: Option<String>,
    pub subject_contains: Option<String>,
    pub conversation_id: Option<String>,
    /// All must be present.
    pub labels: Vec<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub trash: bool,
    pub ascending: bool,
}

/// A conversation as the list shows it (derived from the agent's messages).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSummary {
    pub id: String,
    pub first_message_at: Timestamp,
    pub last_message_at: Timestamp,
    pub message_count: i64,
    pub inbound_count: i64,
    pub outbound_count: i64,
    pub has_unread: bool,
    pub latest_subject: String,
    pub latest_from: String,
}

/// Which events a webhook receives beyond its types: each non-empty list must match, and an
/// event without that attribute never matches a non-empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookFilters {
    pub agent_emails: Vec<String>,
    pub conversation_ids: Vec<String>,
    pub labels: Vec<String>,
}

impl WebhookFilters {
    /// Whether an event with these attributes passes.
    pub fn matches(
        &self,
        agent_email: Option<&str>,
        conversation_id: Option<&str>,
        labels: &[String],
    ) -> bool {
        let one = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
        };
        one(&self.agent_emails, agent_email)
            && one(&self.conversation_ids, conversation_id)
            && (self.labels.is_empty() || self.labels.iter().any(|l| labels.contains(l)))
    }
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub account_id: AccountId,
    pub url: String,
    pub description: String,
    pub secret: String,
    /// Still signing until `previous_secret_expires_at` (rotation grace).
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub auto_disabled_at: Option<Timestamp>,
    pub last_delivered_at: Option<Timestamp>,
    /// When the current run of failures began (cleared by a success).
    pub failing_since: Option<Timestamp>,
    pub events: Vec<EventKind>,
    pub filters: WebhookFilters,
    pub created_at: Timestamp,
}

impl Webhook {
    /// The previous secret while its grace period runs at `now`.
    pub fn live_previous_secret(&self, now: Timestamp) -> Option<&str> {
        match (&self.previous_secret, self.previous_secret_expires_at) {
            (Some(s), Some(until)) if until > now => Some(s.as_str()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    pub id: String,
    pub account_id: AccountId,
    pub url: String,
    pub description: String,
    pub secret: String,
    pub events: Vec<EventKind>,
    pub filters: WebhookFilters,
    pub created_at: Timestamp,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<EventKind>>,
    pub filters: Option<WebhookFilters>,
    pub enabled: Option<bool>,
}

/// One event's delivery to one webhook (its tries are [`DeliveryAttempt`]s).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: EventKind,
    pub status: DeliveryState,
    pub attempts: i64,
    pub next_retry_at: Timestamp,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    /// The start of the receiver's answer, truncated.
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub created_at: Timestamp,
}

/// What the worker needs for one try.
#[derive(Debug, Clone)]
pub struct DeliveryWork {
    pub delivery: Delivery,
    /// `None` when the webhook was deleted.
    pub webhook: Option<Webhook>,
    /// The stored envelope bytes, POSTed unchanged on every try.
    pub payload: String,
    /// The message the event is about, if any (for the log line).
    pub message_id: Option<String>,
    /// Its Postfix queue id, which leads the log line (NOQUEUE when there is none).
    pub queue_id: Option<String>,
}

/// How a try ended, and what happens next.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptNext {
    Delivered,
    /// Try again at this time.
    Retry(Timestamp),
    /// Give up (attempts exhausted, or a permanent refusal).
    Failed,
    /// The receiver answered 410 Gone: give up and disable the webhook.
    Gone,
}

/// A finished try, for [`crate::store::WebhookStore::finish_attempts`].
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: DeliveryAttempt,
    pub next: AttemptNext,
    /// Disable the webhook when its failures began at or before this time and number at
    /// least `.1` (the auto-disable window), checked after this failure is counted.
    pub auto_disable: Option<(Timestamp, i64)>,
}

/// A stored event as the log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: String,
    pub account_id: AccountId,
    pub kind: EventKind,
    pub agent_email: Option<String>,
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub payload: String,
    pub status: EventStatus,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub matched_webhooks: i64,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// Event log filters (contract §4.7).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub kind: Option<EventKind>,
    pub agent_email: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// The outcome of a redelivery request for one webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Redelivery {
    Scheduled { webhook_id: String, delivery_id: String },
    Skipped { webhook_id: String, reason: String },
}

/// A finished try with the job it belongs to, for [`crate::store::WebhookStore::finish_attempts`].
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub job_id: i64,
    pub worker: String,
    pub delivery_id: String,
    pub webhook_id: String,
    pub record: AttemptRecord,
}
