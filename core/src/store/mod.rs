//! The store: one trait (split by resource so each file stays focused), one SQL
//! implementation that serves both SQLite and PostgreSQL through sqlx, each backend with its
//! own migrations. The backend is chosen by the URL scheme.
//!
//! Why one SQL implementation and not two: the queries are the same text on both backends
//! (`$N` placeholders work in SQLite too), and writing each one twice is how the two drift
//! apart. Where the dialects really differ (claiming work, write transactions, migrations,
//! locking) the code branches on [`Backend`] in one place.

mod account_data;
mod accounts;
mod agents;
mod console;
mod contacts;
mod conversations;
mod domains;
mod engagements;
mod events;
mod group_commit;
mod idempotency;
mod jobs;
mod ledger_metrics;
mod lifecycle;
mod messages;
mod models;
mod outbound;
mod rate_limits;
mod retention;
mod rows;
mod sql;
mod suppressions;
mod templates;
mod webhooks;

pub use account_data::{
    AccountDataStore, AccountRecords, AgentRecord, DeletedAccount, DomainRecord, ExportedMessage,
};
pub use console::{ConsoleLogin, ConsoleSession, ConsoleStore, MAX_LISTED_SESSIONS, NewConsoleSession};
pub use contacts::{
    Contact, ContactFilter, ContactStore, Import, ImportOutcome, ImportReversal, ImportRow, MAX_CONTACTS,
    OnConflict, stored_object,
};
pub use engagements::{Engagement, EngagementFilter, EngagementStore, EngagementWrite, Upserted};
pub use ledger_metrics::{Cohort, GroupSize, MetricsStore, ReasonCount, Split, WebhookCounts};
pub use lifecycle::LifecycleStore;
pub use models::*;
pub use outbound::OutboundStore;
pub use rate_limits::RateLimitStore;
pub use retention::RetentionStore;
pub use sql::{Backend, SqlStore};
pub use suppressions::{SoftBounceRun, Suppression, SuppressionStore};
pub use templates::{MAX_TEMPLATES, StoredTemplate, TemplateStore, TemplateWrite};
pub use webhooks::MAX_WEBHOOKS;

use crate::ids::{AccountId, ApiKeyId};
use crate::time::Timestamp;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value is already taken; the string names what.
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    /// A rule checked inside the transaction failed; the string names it.
    #[error("precondition failed: {0}")]
    Precondition(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL: {0}")]
    BadUrl(String),
    #[error("stored row is not valid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A failure the caller should answer with "try again later" (SMTP 4xx, HTTP 503): the
    /// database is unreachable, overloaded, or a lock could not be had in time.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => matches!(
                db.code().as_deref(),
                // SQLite: BUSY, LOCKED, BUSY_RECOVERY, BUSY_SNAPSHOT.
                Some("5" | "6" | "261" | "517")
                // PostgreSQL: serialization failure, deadlock, shutting down, too many connections.
                | Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
            ),
            Self::Database(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A keyset position: lists are ordered by `(created_at, key)` newest first and resume
/// strictly after this position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created_at: Timestamp,
    pub key: String,
}

/// Which slice of a list to read. Implementations return up to `limit + 1` rows so the
/// caller can tell whether another page exists.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub after: Option<After>,
    pub limit: u32,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, email: &str) -> StoreResult<Account>;
    async fn get_account(&self, id: &AccountId) -> StoreResult<Option<Account>>;
    async fn find_account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    /// Every account, oldest first (operator tooling; deployments have few).
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn account_usage(&self, id: &AccountId, month_start: Timestamp) -> StoreResult<Usage>;
    /// Where review notices go; `None` means the account's own email.
    async fn set_reviewer_email(&self, id: &AccountId, reviewer: Option<&str>) -> StoreResult<bool>;
    /// Whether some account's review notices go to `email` (its reviewer, or its own address
    /// when it has none), compared case-insensitively.
    async fn is_reviewer_address(&self, email: &str) -> StoreResult<bool>;

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, account: &AccountId, page: &PageQuery) -> StoreResult<Vec<ApiKey>>;
    /// Marks the key revoked; `false` when it does not exist for this account.
    async fn revoke_api_key(&self, account: &AccountId, id: &ApiKeyId, now: Timestamp) -> StoreResult<bool>;
    /// Finds a live key by hash (not revoked, not expired, and for an agent key, its agent not
    /// in the trash) and stamps `last_used_at` at most once a minute.
    async fn authenticate(&self, key_hash: &str, now: Timestamp) -> StoreResult<Option<ApiKey>>;
}

#[async_trait]
pub trait DomainStore: Send + Sync {
    /// Claim-or-create: the caller's own existing row comes back with `created = false`;
    /// a domain held by another account is `Conflict("domain")`.
    async fn register_domain(&self, new: NewDomain) -> StoreResult<(Domain, bool)>;
    async fn get_domain(&self, account: &AccountId, domain: &str) -> StoreResult<Option<Domain>>;
    /// The registration of `domain`, whichever account holds it (for the takeover rules).
    async fn find_domain(&self, domain: &str) -> StoreResult<Option<Domain>>;
    /// Moves the registration `held` (as read by [`Store::find_domain`]) to `new`'s account,
    /// if it is still that very claim (same account, same creation time: not one deleted and
    /// made afresh meanwhile), unverified and not operator-owned: verified at once with
    /// `check`, else a fresh unverified claim. Whether it did.
    async fn take_over_domain(
        &self,
        held: &Domain,
        new: &NewDomain,
        check: Option<DomainCheck>,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Deletes registrations left unverified since before `before`; how many.
    async fn expire_unverified_domains(&self, before: Timestamp) -> StoreResult<u64>;
    async fn list_domains(&self, account: &AccountId, page: &PageQuery) -> StoreResult<Vec<Domain>>;
    /// Records a probe of `domain` as registered by `account` with `token`. A row that changed
    /// hands (deleted and re-registered, with a new token) while the probe ran is left alone:
    /// `false`.
    async fn record_domain_check(
        &self,
        account: &AccountId,
        domain: &str,
        token: &str,
        check: DomainCheck,
    ) -> StoreResult<bool>;
    /// Whether mail for `domain` belongs to postagent: a verified registered domain of any
    /// account (the shared domain is configuration, not a row).
    async fn is_agent_domain(&self, domain: &str) -> StoreResult<bool>;
    /// Marks the account's domain operator-owned and verified (no DNS needed).
    async fn claim_operator_domain(
        &self,
        account: &AccountId,
        domain: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// `Conflict("agents")` while agents (live or in trash) use the domain.
    async fn delete_domain(&self, account: &AccountId, domain: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// `Conflict("agent")` when the address is taken, `Conflict("agent_in_trash")` when it
    /// is the caller's own trashed agent. With `new.require_verified_domain`, the domain must be
    /// the account's and verified (`Precondition("domain_not_registered" |
    /// "domain_not_verified")`), checked in the same transaction as the insert so a concurrent
    /// domain delete cannot strand the agent.
    async fn create_agent(&self, new: NewAgent) -> StoreResult<Agent>;
    /// Includes trashed agents; callers decide whether trash is visible.
    async fn get_agent(&self, account: &AccountId, email: &str) -> StoreResult<Option<Agent>>;
    /// Looks an agent up across accounts (mail routing, RCPT checks). Trash excluded.
    async fn find_live_agent(&self, email: &str) -> StoreResult<Option<Agent>>;
    async fn list_agents(
        &self,
        account: &AccountId,
        trash: bool,
        page: &PageQuery,
    ) -> StoreResult<Vec<Agent>>;
    async fn rename_agent(&self, account: &AccountId, email: &str, name: &str) -> StoreResult<Option<Agent>>;
    async fn trash_agent(&self, account: &AccountId, email: &str, now: Timestamp) -> StoreResult<bool>;
    /// Deletes the agent and its messages; returns the number of messages deleted.
    async fn purge_agent(&self, account: &AccountId, email: &str) -> StoreResult<Option<u64>>;
    async fn restore_agent(&self, account: &AccountId, email: &str) -> StoreResult<Option<Agent>>;
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job, or moves an existing `(kind, ref_id)` job's `run_at` earlier.
    async fn enqueue_job(
        &self,
        kind: crate::vocab::JobKind,
        ref_id: &str,
        run_at: Timestamp,
    ) -> StoreResult<()>;
    /// Claims up to `limit` due jobs of `kind` for `worker` until `now + lease_secs`. No two
    /// workers, in this process or another replica, hold the same job at once.
    async fn claim_jobs(
        &self,
        kind: crate::vocab::JobKind,
        worker: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> StoreResult<Vec<Job>>;
    /// Removes a finished job; `false` if the lease was lost to another worker.
    /// Removes a claimed job whose message is in the trash, only while it still is (a
    /// restore in between keeps the job, which runs again when its lease ends).
    async fn drop_job_of_trashed(&self, job_id: i64, worker: &str, message_id: &str) -> StoreResult<bool>;
    async fn complete_job(&self, job_id: i64, worker: &str) -> StoreResult<bool>;
    /// Puts a job back for a later try with the reason.
    async fn retry_job(&self, job_id: i64, worker: &str, run_at: Timestamp, error: &str)
    -> StoreResult<bool>;
    /// Gives back every lease `worker` holds (graceful shutdown).
    async fn release_jobs(&self, worker: &str) -> StoreResult<u64>;
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Starts a keyed request. An `in_flight` row older than `stale_before` belongs to a
    /// request that died without finishing or releasing it; the caller takes it over.
    async fn idempotency_begin(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<IdempotencyBegin>;
    async fn idempotency_finish(
        &self,
        account: &AccountId,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()>;
    /// Forgets an in-flight key whose request failed (errors are not cached).
    async fn idempotency_release(&self, account: &AccountId, key: &str) -> StoreResult<()>;
    /// Deletes rows older than `before`; returns how many.
    async fn idempotency_expire(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores an inbound message, its attachment metadata, its hold (if any) and its events
    /// (`email.received`, or the review/block events) in one transaction; a message already
    /// stored for this agent and source is left as is.
    async fn insert_inbound(
        &self,
        msg: NewInboundMessage,
        attachments: Vec<NewAttachment>,
        events: Vec<NewEvent>,
    ) -> StoreResult<Inserted>;
    /// The newest conversation id among the agent's messages whose Message-ID (or provider
    /// id) is one of `rfc_ids`.
    async fn find_conversation(&self, agent_email: &str, rfc_ids: &[String]) -> StoreResult<Option<String>>;
    async fn list_messages(
        &self,
        account: &AccountId,
        agent_email: &str,
        filter: &MessageFilter,
        page: &PageQuery,
    ) -> StoreResult<Vec<Message>>;
    async fn get_message(
        &self,
        account: &AccountId,
        agent_email: &str,
        id: &str,
    ) -> StoreResult<Option<Message>>;
    /// A message by id alone (capability-token downloads, which carry no account).
    async fn find_message(&self, id: &str) -> StoreResult<Option<Message>>;
    async fn get_raw(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn list_attachments(&self, message_id: &str) -> StoreResult<Vec<AttachmentMeta>>;
    /// Flips an unread inbound message to read; `true` when it changed.
    async fn mark_read(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
    async fn set_labels(&self, id: &str, labels: &[String], now: Timestamp) -> StoreResult<()>;
    /// `Some(t)` moves a live message to the trash, `None` restores a trashed one.
    async fn set_message_trashed(&self, id: &str, trashed: Option<Timestamp>) -> StoreResult<bool>;
    /// Deletes a message that is in the trash.
    async fn purge_message(&self, id: &str) -> StoreResult<bool>;
    /// The agent's conversations, most recently active first; `since`/`until` bound the last
    /// message time. Keyset on (last_message_at, id).
    async fn list_conversations(
        &self,
        account: &AccountId,
        agent_email: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        page: &PageQuery,
    ) -> StoreResult<Vec<ConversationSummary>>;
    async fn get_conversation(
        &self,
        account: &AccountId,
        agent_email: &str,
        id: &str,
    ) -> StoreResult<Option<ConversationSummary>>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// This process's bus, told of every event this store commits.
    fn bus(&self) -> &crate::bus::EventBus;
    /// Tells the other replicas (PostgreSQL NOTIFY), not this process: the caller has
    /// already acted locally, and hearing its own message late would undo newer local state.
    async fn tell_replicas(&self, msg: crate::bus::BusMessage) -> StoreResult<()>;
    /// Stores an event on its own (test deliveries, events not tied to another change) with
    /// its deliveries, then tells the bus. Returns the ids of the deliveries it scheduled.
    async fn emit_event(&self, event: NewEvent) -> StoreResult<Vec<String>>;
    /// The account's event log, oldest first, strictly after `after`; up to `limit + 1` rows.
    async fn list_events(
        &self,
        account: &AccountId,
        filter: &EventFilter,
        after: Option<&After>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>>;
    async fn get_event(&self, account: &AccountId, id: &str) -> StoreResult<Option<StoredEvent>>;
    async fn delivery_counts(&self, event_id: &str) -> StoreResult<DeliveryCounts>;
    /// Schedules the stored event again, with its original id and bytes, to `webhook_id` or
    /// to every webhook it matched before. A replay already scheduled since `dedupe_since`
    /// is returned instead of a new one. `NotFound` for another account's event,
    /// `Precondition("webhook_never_matched")` for a webhook that never received it.
    async fn redeliver(
        &self,
        account: &AccountId,
        event_id: &str,
        webhook_id: Option<&str>,
        now: Timestamp,
        dedupe_since: Timestamp,
    ) -> StoreResult<Vec<Redelivery>>;
    /// `(event id, envelope)` of up to `limit` unread, live inbound messages of the agent,
    /// oldest first (the WebSocket drain).
    async fn unread_envelopes(&self, agent_email: &str, limit: u32) -> StoreResult<Vec<(String, String)>>;
    async fn event_payload(&self, event_id: &str) -> StoreResult<Option<String>>;
    /// Deletes events (and their deliveries) created before `before`.
    async fn expire_events(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// `Precondition("webhook_limit_reached")` past [`MAX_WEBHOOKS`].
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook>;
    async fn get_webhook(&self, account: &AccountId, id: &str) -> StoreResult<Option<Webhook>>;
    async fn list_webhooks(&self, account: &AccountId, page: &PageQuery) -> StoreResult<Vec<Webhook>>;
    /// `Precondition("webhook_cooldown")` when re-enabling a webhook auto-disabled after
    /// `cooldown_since`. Re-enabling clears the failure history.
    async fn update_webhook(
        &self,
        account: &AccountId,
        id: &str,
        patch: WebhookPatch,
        now: Timestamp,
        cooldown_since: Timestamp,
    ) -> StoreResult<Option<Webhook>>;
    async fn delete_webhook(&self, account: &AccountId, id: &str) -> StoreResult<bool>;
    /// Webhooks whose current or previous secret is still stored in the clear, as `(id,
    /// secret, previous_secret)` (at most `limit`).
    async fn plain_webhook_secrets(&self, limit: u32) -> StoreResult<Vec<(String, String, Option<String>)>>;
    /// Replaces both secrets of webhook `id` if they are still `(old, old_previous)`; whether
    /// it did (a concurrent rotation or another replica's migration wins).
    async fn replace_webhook_secrets(
        &self,
        id: &str,
        old: (&str, Option<&str>),
        new: (&str, Option<&str>),
    ) -> StoreResult<bool>;
    /// The current secret becomes the previous one (signing until `previous_until`).
    async fn rotate_webhook_secret(
        &self,
        account: &AccountId,
        id: &str,
        new_secret: &str,
        previous_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Newest first; `status` filters.
    async fn list_deliveries(
        &self,
        account: &AccountId,
        webhook_id: &str,
        status: Option<crate::vocab::DeliveryState>,
        page: &PageQuery,
    ) -> StoreResult<Vec<Delivery>>;
    /// One delivery with every try.
    async fn get_delivery(
        &self,
        account: &AccountId,
        webhook_id: &str,
        id: &str,
    ) -> StoreResult<Option<(Delivery, Vec<DeliveryAttempt>)>>;
    /// What a worker needs to try `delivery_id`; `None` when the delivery or its event is gone.
    async fn delivery_work(&self, delivery_id: &str) -> StoreResult<Option<DeliveryWork>>;
    /// Records finished tries in one transaction, each applying its outcome if its worker
    /// still holds its job (else only the attempt row is kept); one flag per try.
    async fn finish_attempts(&self, batch: &[FinishedAttempt]) -> StoreResult<Vec<bool>>;
    /// Moves the job to `until` without counting a try (the webhook is disabled).
    async fn postpone_delivery(
        &self,
        job_id: i64,
        worker: &str,
        until: Timestamp,
        reason: &str,
    ) -> StoreResult<()>;
    /// Gives up on a delivery without a try (its webhook was deleted).
    async fn fail_delivery(
        &self,
        job_id: i64,
        delivery_id: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Clears rotation secrets past their grace and deletes finished deliveries created
    /// before `deliveries_before`.
    async fn sweep_webhooks(&self, now: Timestamp, deliveries_before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// A trivial round trip to the database.
    async fn ping(&self) -> StoreResult<()>;
    /// `sqlite` or `postgres`, for logs and the health endpoint.
    fn backend_name(&self) -> &'static str;
    /// Queue depths by job kind, holds by state and outbound messages by status, for the
    /// metrics listener.
    async fn gauges(&self) -> StoreResult<Gauges>;
}

/// Counts read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub jobs: Vec<(String, i64)>,
    pub holds: Vec<(String, i64)>,
    pub outbound: Vec<(String, i64)>,
}

/// Everything the product stores.
pub trait Store:
    AccountStore
    + DomainStore
    + AgentStore
    + MessageStore
    + EventStore
    + WebhookStore
    + JobQueue
    + IdempotencyStore
    + OutboundStore
    + SuppressionStore
    + RateLimitStore
    + ConsoleStore
    + RetentionStore
    + AccountDataStore
    + LifecycleStore
    + TemplateStore
    + ContactStore
    + EngagementStore
    + MetricsStore
    + StoreHealth
{
}
impl<
    T: AccountStore
        + DomainStore
        + AgentStore
        + MessageStore
        + EventStore
        + WebhookStore
        + JobQueue
        + IdempotencyStore
        + OutboundStore
        + SuppressionStore
        + RateLimitStore
        + ConsoleStore
        + RetentionStore
        + AccountDataStore
        + LifecycleStore
        + TemplateStore
        + ContactStore
        + EngagementStore
        + MetricsStore
        + StoreHealth,
> Store for T
{
}
