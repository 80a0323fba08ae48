//! The outbox and the event log. An event row is written in the transaction of the change
//! it reports, and so are its webhook deliveries and their jobs: once the change is
//! committed, every matching subscription is certain to hear of it, exactly once per
//! subscription, whichever replica stored it. The bus is told after the commit.

use super::sql::{Backend, ts, word, word_list};
use super::{
    DeliveryCounts, EventFilter, EventStore, NewEvent, Redelivery, SqlStore, StoreError, StoreResult,
    StoredEvent, WebhookFilters,
};
use crate::bus::BusMessage;
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::{EventKind, EventStatus, JobKind};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

pub(super) fn json_vec(row: &AnyRow, col: &str) -> StoreResult<Vec<String>> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// Inserts `event` and, for each enabled webhook of the account that subscribes to its type
/// and whose filters match (or only `event.only_webhook`), a pending delivery and its job.
/// Returns the bus message to publish once the transaction commits, and the delivery ids.
pub(super) async fn insert_event(
    store: &SqlStore,
    conn: &mut sqlx::AnyConnection,
    event: &NewEvent,
) -> StoreResult<(BusMessage, Vec<String>)> {
    let now = event.created_at.as_micros();
    let hooks = sqlx::query(
        "SELECT id, event_types, agent_filter, conversation_filter, label_filter FROM webhooks
         WHERE account_id = $1 AND enabled = 1",
    )
    .bind(event.account_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut matched = Vec::new();
    for h in &hooks {
        let id: String = h.try_get("id")?;
        let wanted = match &event.only_webhook {
            Some(only) => *only == id,
            None => {
                let filters = WebhookFilters {
                    agent_emails: json_vec(h, "agent_filter")?,
                    conversation_ids: json_vec(h, "conversation_filter")?,
                    labels: json_vec(h, "label_filter")?,
                };
                word_list::<EventKind>(h, "event_types")?.contains(&event.kind)
                    && filters.matches(
                        event.agent_email.as_deref(),
                        event.conversation_id.as_deref(),
                        &event.labels,
                    )
            }
        };
        if wanted {
            matched.push(id);
        }
    }
    let status = if matched.is_empty() { EventStatus::NoMatch } else { EventStatus::Processed };
    // Event ids are deterministic: the same event recorded twice (a redelivered bounce, a
    // submission retried after its worker died) is one event, delivered once.
    let inserted = sqlx::query(
        "INSERT INTO events (id, account_id, type, agent_email, message_id, conversation_id, payload,
             status, internal, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(event.id.as_str())
    .bind(event.account_id.as_str())
    .bind(event.kind.as_str())
    .bind(event.agent_email.as_deref())
    .bind(event.message_id.as_deref())
    .bind(event.conversation_id.as_deref())
    .bind(event.payload.as_str())
    .bind(status.as_str())
    .bind(i64::from(event.internal))
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        matched.clear();
    }
    let mut deliveries = Vec::with_capacity(matched.len());
    for webhook_id in &matched {
        deliveries
            .push(schedule_delivery(conn, webhook_id, &event.id, event.kind, false, event.created_at).await?);
    }
    let msg = BusMessage::Event {
        event_id: event.id.clone(),
        kind: event.kind,
        agent_email: event.agent_email.clone(),
        deliveries: matched.len(),
        payload: Some(event.payload.as_str().into()),
    };
    store.notify_in_tx(conn, &msg).await?;
    Ok((msg, deliveries))
}

/// A pending delivery of `event_id` to `webhook_id`, due at `at`, with its job.
pub(super) async fn schedule_delivery(
    conn: &mut sqlx::AnyConnection,
    webhook_id: &str,
    event_id: &str,
    event_type: EventKind,
    redelivery: bool,
    at: Timestamp,
) -> StoreResult<String> {
    let id = crate::ids::mint("whd_", 16);
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, status, next_retry_at,
             redelivery, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $5, $5)",
    )
    .bind(id.as_str())
    .bind(webhook_id)
    .bind(event_id)
    .bind(event_type.as_str())
    .bind(at.as_micros())
    .bind(i64::from(redelivery))
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO jobs (kind, ref_id, run_at, created_at) VALUES ($1, $2, $3, $3)")
        .bind(JobKind::Webhook.as_str())
        .bind(id.as_str())
        .bind(at.as_micros())
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

const EVENT_COLS: &str =
    "id, account_id, type, agent_email, message_id, conversation_id, payload, status, created_at";

fn event(row: &AnyRow) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        id: row.try_get("id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        kind: word(row, "type")?,
        agent_email: row.try_get("agent_email")?,
        message_id: row.try_get("message_id")?,
        conversation_id: row.try_get("conversation_id")?,
        payload: row.try_get("payload")?,
        status: word(row, "status")?,
        created_at: ts(row, "created_at")?,
    })
}

impl SqlStore {
    /// Tells every replica (and this process) that agents or agent domains changed, after
    /// the change committed. A lost notification costs a cache its TTL, never correctness.
    /// On SQLite the bus stays in this process: a change another process makes (the
    /// `admin` command) reaches a running service's caches only by their TTL (5 s).
    pub(super) async fn directory_changed(&self) {
        let msg = BusMessage::Directory;
        if self.backend == Backend::Postgres
            && let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::bus::CHANNEL)
                .bind(self.bus.wire(&msg))
                .execute(&self.pool)
                .await
        {
            tracing::warn!(error = %e, "cannot announce a directory change to other replicas");
        }
        self.bus.publish(msg);
    }

    /// On PostgreSQL, queues `msg` for the other replicas; it is sent when `conn`'s
    /// transaction commits. Nothing to do on SQLite, whose writers share one process.
    pub(super) async fn notify_in_tx(
        &self,
        conn: &mut sqlx::AnyConnection,
        msg: &BusMessage,
    ) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::bus::CHANNEL)
                .bind(self.bus.wire(msg))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl EventStore for SqlStore {
    fn bus(&self) -> &crate::bus::EventBus {
        &self.bus
    }

    async fn tell_replicas(&self, msg: BusMessage) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::bus::CHANNEL)
                .bind(self.bus.wire(&msg))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn emit_event(&self, event: NewEvent) -> StoreResult<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let (msg, deliveries) = insert_event(self, &mut tx, &event).await?;
        tx.commit().await?;
        self.bus.publish(msg);
        Ok(deliveries)
    }

    async fn list_events(
        &self,
        account: &AccountId,
        f: &EventFilter,
        after: Option<&super::After>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        // Forward in time: the log is read like a feed, resuming after the last event seen.
        let (at, key) =
            after.map_or((i64::MIN, String::new()), |a| (a.created_at.as_micros(), a.key.clone()));
        // One message's events are read by its index (the console's history, `?message_id=`):
        // written as `$7 = '' OR …`, the condition would hide the index from SQLite's planner.
        let by_message = if f.message_id.is_some() { "message_id = $7" } else { "$7 = ''" };
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events
             WHERE account_id = $1 AND internal = 0 AND (created_at > $2 OR (created_at = $2 AND id > $3))
               AND ($4 = '' OR type = $4) AND ($5 = '' OR agent_email = $5)
               AND ($6 = '' OR conversation_id = $6) AND {by_message}
               AND created_at >= $8 AND created_at <= $9
             ORDER BY created_at, id LIMIT $10"
        );
        let rows = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(at)
            .bind(key)
            .bind(f.kind.map_or("", EventKind::as_str))
            .bind(f.agent_email.clone().unwrap_or_default())
            .bind(f.conversation_id.clone().unwrap_or_default())
            .bind(f.message_id.clone().unwrap_or_default())
            .bind(f.since.map_or(i64::MIN, Timestamp::as_micros))
            .bind(f.until.map_or(i64::MAX, Timestamp::as_micros))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event).collect()
    }

    async fn get_event(&self, account: &AccountId, id: &str) -> StoreResult<Option<StoredEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM events WHERE id = $1 AND account_id = $2 AND internal = 0"
        ))
        .bind(id)
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(event).transpose()
    }

    async fn delivery_counts(&self, event_id: &str) -> StoreResult<DeliveryCounts> {
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT webhook_id) AS matched,
                    COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS pending,
                    COALESCE(SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), 0) AS delivered,
                    COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed
             FROM webhook_deliveries WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(DeliveryCounts {
            matched_webhooks: row.try_get("matched")?,
            pending: row.try_get("pending")?,
            delivered: row.try_get("delivered")?,
            failed: row.try_get("failed")?,
        })
    }

    async fn redeliver(
        &self,
        account: &AccountId,
        event_id: &str,
        webhook_id: Option<&str>,
        now: Timestamp,
        dedupe_since: Timestamp,
    ) -> StoreResult<Vec<Redelivery>> {
        let mut tx = self.begin_write().await?;
        let ev = sqlx::query("SELECT type FROM events WHERE id = $1 AND account_id = $2")
            .bind(event_id)
            .bind(account.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let kind: EventKind = word(&ev, "type")?;
        // The webhooks this event matched the first time (and that still exist).
        let rows = sqlx::query(
            "SELECT DISTINCT w.id, w.enabled FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.event_id = $1 AND w.account_id = $2 ORDER BY w.id",
        )
        .bind(event_id)
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut targets: Vec<(String, bool)> = Vec::new();
        for r in &rows {
            targets.push((r.try_get("id")?, r.try_get::<i64, _>("enabled")? != 0));
        }
        if let Some(only) = webhook_id {
            targets.retain(|(id, _)| id == only);
            if targets.is_empty() {
                return Err(StoreError::Precondition("webhook_never_matched"));
            }
        }
        let mut out = Vec::new();
        for (id, enabled) in targets {
            if !enabled {
                out.push(Redelivery::Skipped { webhook_id: id, reason: "webhook is disabled".into() });
                continue;
            }
            // Asking again within the window returns the replay already scheduled (the
            // contract's server-minted `replay:<event>:<webhook>` idempotency key).
            let recent = sqlx::query(
                "SELECT id FROM webhook_deliveries
                 WHERE event_id = $1 AND webhook_id = $2 AND redelivery = 1 AND created_at >= $3
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(event_id)
            .bind(id.as_str())
            .bind(dedupe_since.as_micros())
            .fetch_optional(&mut *tx)
            .await?;
            let delivery_id = match recent {
                Some(r) => r.try_get("id")?,
                None => schedule_delivery(&mut tx, &id, event_id, kind, true, now).await?,
            };
            out.push(Redelivery::Scheduled { webhook_id: id, delivery_id });
        }
        self.notify_in_tx(&mut tx, &BusMessage::Work).await?;
        tx.commit().await?;
        self.bus.publish(BusMessage::Work);
        Ok(out)
    }

    async fn unread_envelopes(&self, agent_email: &str, limit: u32) -> StoreResult<Vec<(String, String)>> {
        // Oldest first; a message without its stored envelope is skipped (fail closed).
        let rows = sqlx::query(
            "SELECT e.id, e.payload FROM messages m
             JOIN events e ON e.message_id = m.id AND e.type = 'email.received'
             WHERE m.agent_email = $1 AND m.direction = 'inbound' AND m.read_status = 'unread'
               AND m.status = 'received' AND m.deleted_at IS NULL
             ORDER BY m.created_at, m.id LIMIT $2",
        )
        .bind(agent_email)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("payload")?))).collect()
    }

    async fn event_payload(&self, event_id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT payload FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("payload")).transpose()?)
    }

    async fn expire_events(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM events WHERE created_at < $1")
            .bind(before.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
