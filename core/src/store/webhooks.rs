//! Webhook subscriptions, their delivery log, and the worker's side of a delivery: loading
//! one try's work and recording how it ended (attempt row, delivery state, webhook health
//! and the job, in one transaction).

use super::events::json_vec;
use super::sql::{flag, opt_ts, ts};
use super::sql::{word, word_list, word_list_json};
use super::{
    AttemptNext, AttemptRecord, Delivery, DeliveryAttempt, DeliveryWork, FinishedAttempt, NewWebhook,
    PageQuery, SqlStore, StoreError, StoreResult, Webhook, WebhookFilters, WebhookPatch, WebhookStore,
};
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::{DeliveryState, JobKind};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// At most this many subscriptions per account (contract §8.6).
pub const MAX_WEBHOOKS: i64 = 50;

const WEBHOOK_COLS: &str = "id, account_id, url, description, secret, previous_secret, previous_secret_expires_at, \
     enabled, disabled_reason, auto_disabled_at, last_delivered_at, failing_since, event_types, agent_filter, \
     conversation_filter, label_filter, created_at";

fn webhook(row: &AnyRow) -> StoreResult<Webhook> {
    Ok(Webhook {
        id: row.try_get("id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_secret_expires_at: opt_ts(row, "previous_secret_expires_at")?,
        enabled: flag(row, "enabled")?,
        disabled_reason: row.try_get("disabled_reason")?,
        auto_disabled_at: opt_ts(row, "auto_disabled_at")?,
        last_delivered_at: opt_ts(row, "last_delivered_at")?,
        failing_since: opt_ts(row, "failing_since")?,
        events: word_list(row, "event_types")?,
        filters: WebhookFilters {
            agent_emails: json_vec(row, "agent_filter")?,
            conversation_ids: json_vec(row, "conversation_filter")?,
            labels: json_vec(row, "label_filter")?,
        },
        created_at: ts(row, "created_at")?,
    })
}

const DELIVERY_COLS: &str = "id, webhook_id, event_id, event_type, status, attempt_count, next_retry_at, \
     last_status_code, last_error, last_attempt_at, created_at";

/// [`DELIVERY_COLS`] of the table aliased `d`.
fn qualified_delivery_cols() -> String {
    DELIVERY_COLS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ")
}

fn delivery(row: &AnyRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_type: word(row, "event_type")?,
        status: word(row, "status")?,
        attempts: row.try_get("attempt_count")?,
        next_retry_at: ts(row, "next_retry_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        last_attempt_at: opt_ts(row, "last_attempt_at")?,
        created_at: ts(row, "created_at")?,
    })
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Records one finished try on `conn` (inside the caller's transaction); `false` when the
/// lease was lost (only the attempt row is written then).
async fn record_attempt(
    conn: &mut sqlx::AnyConnection,
    job_id: i64,
    worker: &str,
    delivery_id: &str,
    webhook_id: &str,
    record: &AttemptRecord,
) -> StoreResult<bool> {
    let a = &record.attempt;
    let at = a.created_at.as_micros();
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, duration_ms, response_body, error,
             created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(delivery_id)
    .bind(a.attempt)
    .bind(a.status_code)
    .bind(a.duration_ms)
    .bind(a.response_body.as_deref())
    .bind(a.error.as_deref())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    // The job first: it tells whether this worker still holds the delivery.
    let job = match &record.next {
        AttemptNext::Retry(t) => {
            sqlx::query(
                "UPDATE jobs SET run_at = $3, last_error = $4, locked_until = NULL, locked_by = NULL
             WHERE id = $1 AND locked_by = $2",
            )
            .bind(job_id)
            .bind(worker)
            .bind(t.as_micros())
            .bind(a.error.as_deref())
            .execute(&mut *conn)
            .await?
        }
        _ => {
            sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2")
                .bind(job_id)
                .bind(worker)
                .execute(&mut *conn)
                .await?
        }
    };
    if job.rows_affected() == 0 {
        // The lease ran out and another worker owns the delivery now: keep the record of
        // this try, leave the state to the new owner.
        return Ok(false);
    }
    let (status, next_at) = match &record.next {
        AttemptNext::Delivered => (DeliveryState::Delivered, a.created_at),
        AttemptNext::Retry(t) => (DeliveryState::Pending, *t),
        AttemptNext::Failed | AttemptNext::Gone => (DeliveryState::Failed, a.created_at),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempt_count = $3, last_status_code = $4,
             last_error = $5, last_attempt_at = $6, next_retry_at = $7, updated_at = $6
         WHERE id = $1",
    )
    .bind(delivery_id)
    .bind(status.as_str())
    .bind(a.attempt)
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(at)
    .bind(next_at.as_micros())
    .execute(&mut *conn)
    .await?;
    match &record.next {
        AttemptNext::Delivered => {
            // Only writes when something changes (or once a second), not on every success.
            sqlx::query(
                "UPDATE webhooks SET last_delivered_at = $2, failing_since = NULL
                 WHERE id = $1 AND (failing_since IS NOT NULL OR last_delivered_at IS NULL
                                    OR last_delivered_at < $3)",
            )
            .bind(webhook_id)
            .bind(at)
            .bind(at - 1_000_000)
            .execute(&mut *conn)
            .await?;
        }
        AttemptNext::Gone => {
            sqlx::query(
                "UPDATE webhooks SET enabled = 0, auto_disabled_at = $2,
                     disabled_reason = 'the endpoint answered 410 Gone'
                 WHERE id = $1 AND enabled = 1",
            )
            .bind(webhook_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        AttemptNext::Retry(_) | AttemptNext::Failed => {
            sqlx::query("UPDATE webhooks SET failing_since = COALESCE(failing_since, $2) WHERE id = $1")
                .bind(webhook_id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            if let Some((window_start, min_failures)) = record.auto_disable {
                sqlx::query(
                    "UPDATE webhooks SET enabled = 0, auto_disabled_at = $2,
                         disabled_reason = 'failing continuously for the auto-disable window'
                     WHERE id = $1 AND enabled = 1 AND failing_since <= $3
                       AND (SELECT COUNT(*) FROM webhook_attempts a
                            JOIN webhook_deliveries d ON d.id = a.delivery_id
                            WHERE d.webhook_id = $1 AND a.created_at >= webhooks.failing_since) >= $4",
                )
                .bind(webhook_id)
                .bind(at)
                .bind(window_start.as_micros())
                .bind(min_failures)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(true)
}

impl SqlStore {
    async fn webhook_by_id(&self, conn: &mut sqlx::AnyConnection, id: &str) -> StoreResult<Option<Webhook>> {
        let row = sqlx::query(&format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(webhook).transpose()
    }
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(&self, new: NewWebhook) -> StoreResult<Webhook> {
        let mut tx = self.begin_write().await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE account_id = $1")
            .bind(new.account_id.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count >= MAX_WEBHOOKS {
            return Err(StoreError::Precondition("webhook_limit_reached"));
        }
        let at = new.created_at.as_micros();
        sqlx::query(
            "INSERT INTO webhooks (id, account_id, url, description, secret, event_types, agent_filter,
                 conversation_filter, label_filter, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(new.id.as_str())
        .bind(new.account_id.as_str())
        .bind(new.url.as_str())
        .bind(new.description.as_str())
        .bind(new.secret.as_str())
        .bind(word_list_json(&new.events))
        .bind(json(&new.filters.agent_emails))
        .bind(json(&new.filters.conversation_ids))
        .bind(json(&new.filters.labels))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let created = self.webhook_by_id(&mut tx, &new.id).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_webhook(&self, account: &AccountId, id: &str) -> StoreResult<Option<Webhook>> {
        let row =
            sqlx::query(&format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = $1 AND account_id = $2"))
                .bind(id)
                .bind(account.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(webhook).transpose()
    }

    async fn list_webhooks(&self, account: &AccountId, page: &PageQuery) -> StoreResult<Vec<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE account_id = $1
               AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        self.fetch_page(&sql, account, page, webhook).await
    }

    async fn update_webhook(
        &self,
        account: &AccountId,
        id: &str,
        patch: WebhookPatch,
        now: Timestamp,
        cooldown_since: Timestamp,
    ) -> StoreResult<Option<Webhook>> {
        let mut tx = self.begin_write().await?;
        let Some(mut w) = self.webhook_by_id(&mut tx, id).await?.filter(|w| w.account_id == *account) else {
            return Ok(None);
        };
        if patch.enabled == Some(true) && !w.enabled && w.auto_disabled_at.is_some_and(|t| t > cooldown_since)
        {
            return Err(StoreError::Precondition("webhook_cooldown"));
        }
        if let Some(url) = patch.url {
            w.url = url;
        }
        if let Some(d) = patch.description {
            w.description = d;
        }
        if let Some(e) = patch.events {
            w.events = e;
        }
        if let Some(f) = patch.filters {
            w.filters = f;
        }
        let reenabled = patch.enabled == Some(true) && !w.enabled;
        if let Some(enabled) = patch.enabled {
            w.enabled = enabled;
        }
        sqlx::query(
            "UPDATE webhooks SET url = $2, description = $3, event_types = $4, agent_filter = $5,
                 conversation_filter = $6, label_filter = $7, enabled = $8, updated_at = $9,
                 auto_disabled_at = CASE WHEN $10 = 1 THEN NULL ELSE auto_disabled_at END,
                 disabled_reason = CASE WHEN $10 = 1 THEN NULL ELSE disabled_reason END,
                 failing_since = CASE WHEN $10 = 1 THEN NULL ELSE failing_since END
             WHERE id = $1",
        )
        .bind(id)
        .bind(w.url.as_str())
        .bind(w.description.as_str())
        .bind(word_list_json(&w.events))
        .bind(json(&w.filters.agent_emails))
        .bind(json(&w.filters.conversation_ids))
        .bind(json(&w.filters.labels))
        .bind(i64::from(w.enabled))
        .bind(now.as_micros())
        .bind(i64::from(reenabled))
        .execute(&mut *tx)
        .await?;
        let updated = self.webhook_by_id(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn delete_webhook(&self, account: &AccountId, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        // Its deliveries go with it (ON DELETE CASCADE); so must their jobs.
        sqlx::query(
            "DELETE FROM jobs WHERE kind = $1 AND ref_id IN
                 (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                  WHERE w.id = $2 AND w.account_id = $3)",
        )
        .bind(JobKind::Webhook.as_str())
        .bind(id)
        .bind(account.as_str())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn plain_webhook_secrets(&self, limit: u32) -> StoreResult<Vec<(String, String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, secret, previous_secret FROM webhooks
             WHERE substr(secret, 1, 6) = 'whsec_' OR substr(previous_secret, 1, 6) = 'whsec_'
             ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("secret")?, r.try_get("previous_secret")?)))
            .collect()
    }

    async fn replace_webhook_secrets(
        &self,
        id: &str,
        old: (&str, Option<&str>),
        new: (&str, Option<&str>),
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET secret = $2, previous_secret = $3
             WHERE id = $1 AND secret = $4 AND COALESCE(previous_secret, '') = COALESCE($5, '')",
        )
        .bind(id)
        .bind(new.0)
        .bind(new.1)
        .bind(old.0)
        .bind(old.1)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn rotate_webhook_secret(
        &self,
        account: &AccountId,
        id: &str,
        new_secret: &str,
        previous_until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_expires_at = $3, secret = $4,
                 updated_at = $5
             WHERE id = $1 AND account_id = $2",
        )
        .bind(id)
        .bind(account.as_str())
        .bind(previous_until.as_micros())
        .bind(new_secret)
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_deliveries(
        &self,
        account: &AccountId,
        webhook_id: &str,
        status: Option<DeliveryState>,
        page: &PageQuery,
    ) -> StoreResult<Vec<Delivery>> {
        let (at, key) = match &page.after {
            Some(a) => (a.created_at.as_micros(), a.key.clone()),
            None => (i64::MAX, String::new()),
        };
        let cols = qualified_delivery_cols();
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.webhook_id = $1 AND w.account_id = $2 AND ($3 = '' OR d.status = $3)
               AND (d.created_at < $4 OR (d.created_at = $4 AND d.id < $5))
             ORDER BY d.created_at DESC, d.id DESC LIMIT $6"
        ))
        .bind(webhook_id)
        .bind(account.as_str())
        .bind(status.map_or("", DeliveryState::as_str))
        .bind(at)
        .bind(key)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery).collect()
    }

    async fn get_delivery(
        &self,
        account: &AccountId,
        webhook_id: &str,
        id: &str,
    ) -> StoreResult<Option<(Delivery, Vec<DeliveryAttempt>)>> {
        let cols = qualified_delivery_cols();
        let row = sqlx::query(&format!(
            "SELECT {cols} FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = $1 AND d.webhook_id = $2 AND w.account_id = $3"
        ))
        .bind(id)
        .bind(webhook_id)
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(d) = row.as_ref().map(delivery).transpose()? else { return Ok(None) };
        let rows = sqlx::query(
            "SELECT attempt, status_code, duration_ms, response_body, error, created_at FROM webhook_attempts
             WHERE delivery_id = $1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let attempts = rows
            .iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    attempt: r.try_get("attempt")?,
                    status_code: r.try_get("status_code")?,
                    duration_ms: r.try_get("duration_ms")?,
                    response_body: r.try_get("response_body")?,
                    error: r.try_get("error")?,
                    created_at: ts(r, "created_at")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some((d, attempts)))
    }

    async fn delivery_work(&self, delivery_id: &str) -> StoreResult<Option<DeliveryWork>> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(&format!(
            "SELECT {}, e.payload, e.message_id, m.postfix_queue_id FROM webhook_deliveries d
             LEFT JOIN events e ON e.id = d.event_id LEFT JOIN messages m ON m.id = e.message_id
             WHERE d.id = $1",
            qualified_delivery_cols()
        ))
        .bind(delivery_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let d = delivery(&row)?;
        let payload: Option<String> = row.try_get("payload")?;
        let message_id: Option<String> = row.try_get("message_id")?;
        let queue_id: Option<String> = row.try_get("postfix_queue_id")?;
        let hook = self.webhook_by_id(&mut conn, &d.webhook_id).await?;
        Ok(payload.map(|payload| DeliveryWork { delivery: d, webhook: hook, payload, message_id, queue_id }))
    }

    async fn finish_attempts(&self, batch: &[FinishedAttempt]) -> StoreResult<Vec<bool>> {
        // One transaction (one commit, one fsync) for a batch of finished tries.
        let mut tx = self.begin_write().await?;
        let mut held = Vec::with_capacity(batch.len());
        for f in batch {
            held.push(
                record_attempt(&mut tx, f.job_id, &f.worker, &f.delivery_id, &f.webhook_id, &f.record)
                    .await?,
            );
        }
        tx.commit().await?;
        Ok(held)
    }

    async fn postpone_delivery(
        &self,
        job_id: i64,
        worker: &str,
        until: Timestamp,
        reason: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE jobs SET run_at = $3, last_error = $4, locked_until = NULL, locked_by = NULL
             WHERE id = $1 AND locked_by = $2 RETURNING ref_id",
        )
        .bind(job_id)
        .bind(worker)
        .bind(until.as_micros())
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = moved {
            let id: String = row.try_get("ref_id")?;
            sqlx::query("UPDATE webhook_deliveries SET next_retry_at = $2 WHERE id = $1")
                .bind(id)
                .bind(until.as_micros())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fail_delivery(
        &self,
        job_id: i64,
        delivery_id: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(delivery_id)
        .bind(reason)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE id = $1").bind(job_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sweep_webhooks(&self, now: Timestamp, deliveries_before: Timestamp) -> StoreResult<u64> {
        let secrets = sqlx::query(
            "UPDATE webhooks SET previous_secret = NULL, previous_secret_expires_at = NULL
             WHERE previous_secret_expires_at IS NOT NULL AND previous_secret_expires_at <= $1",
        )
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        let old = sqlx::query("DELETE FROM webhook_deliveries WHERE created_at < $1 AND status <> 'pending'")
            .bind(deliveries_before.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(secrets.rows_affected() + old.rows_affected())
    }
}
