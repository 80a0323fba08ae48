//! Retention: the trash purged once its window has passed, and (when the operator asks) the
//! bodies of old mail dropped. Each call does a bounded batch, so a purge of a large backlog
//! never holds one long transaction; the janitor repeats batches within a budget. A lease
//! keeps the replicas from doing the same work at the same time.

use super::{SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Takes the lease `name` for `holder` until `until` when it is free, expired (at `now`)
    /// or already `holder`'s; whether `holder` holds it now.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
    /// Deletes up to `limit` messages that went to the trash before `before`; how many.
    async fn purge_trashed_messages(&self, before: Timestamp, limit: i64) -> StoreResult<u64>;
    /// Up to `limit` agents that went to the trash before `before`, oldest first.
    async fn trashed_agents(&self, before: Timestamp, limit: i64) -> StoreResult<Vec<(AccountId, String)>>;
    /// Deletes up to `limit` messages of an agent that is still in the trash since before
    /// `before` (a restored agent keeps its mail).
    async fn purge_agent_messages(
        &self,
        account: &AccountId,
        email: &str,
        before: Timestamp,
        limit: i64,
    ) -> StoreResult<u64>;
    /// Purges an agent that is still in the trash since before `before`: the row (first, so
    /// a concurrent restore waits and then finds nothing), its remaining messages,
    /// conversations and holds, and its keys revoked; `false` when it was restored.
    async fn purge_trashed_agent(
        &self,
        account: &AccountId,
        email: &str,
        before: Timestamp,
    ) -> StoreResult<bool>;
    /// Drops the raw MIME, the draft (what the agent asked to send, attachments included) and
    /// the attachment rows of up to `limit` messages created
    /// before `before` whose story is over (nothing held, queued or being sent); how many.
    async fn drop_bodies(&self, before: Timestamp, limit: i64) -> StoreResult<u64>;
}

/// Statuses after which a message's body is no longer needed by postagent itself.
const FINISHED: &str = "('received', 'rejected', 'sent', 'failed', 'bounced')";

#[async_trait]
impl RetentionStore for SqlStore {
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at < $3 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now.as_micros())
        .bind(until.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_trashed_messages(&self, before: Timestamp, limit: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let ids = batch(
            &mut tx,
            "SELECT id FROM messages WHERE deleted_at IS NOT NULL AND deleted_at < $1 ORDER BY deleted_at LIMIT $2",
            before,
            limit,
        )
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // The trash condition again: a message restored since the select stays (PostgreSQL
        // re-checks only the outer condition of a row that changed meanwhile). Attachments and
        // holds go with their message (ON DELETE CASCADE); queued work naming it goes too.
        let list = super::sql::placeholders(ids.len());
        let n = ids.len();
        let delete_sql = format!(
            "DELETE FROM messages WHERE id IN ({list}) AND deleted_at IS NOT NULL AND deleted_at < ${}",
            n + 1
        );
        let jobs_sql =
            format!("DELETE FROM jobs WHERE kind IN ('submit', 'review_notify') AND ref_id IN ({list})");
        let mut delete = sqlx::query(&delete_sql);
        let mut jobs = sqlx::query(&jobs_sql);
        for id in &ids {
            delete = delete.bind(id);
            jobs = jobs.bind(id);
        }
        let done = delete.bind(before.as_micros()).execute(&mut *tx).await?.rows_affected();
        jobs.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn trashed_agents(&self, before: Timestamp, limit: i64) -> StoreResult<Vec<(AccountId, String)>> {
        let rows = sqlx::query(
            "SELECT account_id, email FROM agents WHERE deleted_at IS NOT NULL AND deleted_at < $1
             ORDER BY deleted_at LIMIT $2",
        )
        .bind(before.as_micros())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((AccountId::from_stored(r.try_get("account_id")?), r.try_get("email")?)))
            .collect()
    }

    async fn purge_agent_messages(
        &self,
        account: &AccountId,
        email: &str,
        before: Timestamp,
        limit: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let trashed = format!(
            "SELECT email FROM agents WHERE email = $1 AND account_id = $2 AND deleted_at IS NOT NULL
             AND deleted_at < $3{}",
            self.lock_rows()
        );
        let still = sqlx::query(&trashed)
            .bind(email)
            .bind(account.as_str())
            .bind(before.as_micros())
            .fetch_optional(&mut *tx)
            .await?;
        if still.is_none() {
            tx.rollback().await?;
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM messages WHERE id IN (
                 SELECT id FROM messages WHERE agent_email = $1 AND account_id = $2 LIMIT $3)",
        )
        .bind(email)
        .bind(account.as_str())
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn purge_trashed_agent(
        &self,
        account: &AccountId,
        email: &str,
        before: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query(
            "DELETE FROM agents WHERE email = $1 AND account_id = $2 AND deleted_at IS NOT NULL AND deleted_at < $3",
        )
        .bind(email)
        .bind(account.as_str())
        .bind(before.as_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if gone == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        super::agents::drop_agent_rows(&mut tx, account, email).await?;
        tx.commit().await?;
        self.directory_changed().await;
        Ok(true)
    }

    async fn drop_bodies(&self, before: Timestamp, limit: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let picked = format!(
            "SELECT id FROM messages
             WHERE (raw_message IS NOT NULL OR draft IS NOT NULL) AND created_at < $1 AND status IN {FINISHED}
             ORDER BY created_at LIMIT $2"
        );
        let ids = batch(&mut tx, &picked, before, limit).await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let list = super::sql::placeholders(ids.len());
        let clear_sql = format!(
            "UPDATE messages SET raw_message = NULL, draft = NULL, body_text = NULL, body_html = NULL,
                    draft_attachments = NULL, size_bytes = 0
             WHERE id IN ({list})"
        );
        let files_sql = format!("DELETE FROM attachments WHERE message_id IN ({list})");
        let mut clear = sqlx::query(&clear_sql);
        let mut files = sqlx::query(&files_sql);
        for id in &ids {
            clear = clear.bind(id);
            files = files.bind(id);
        }
        let done = clear.execute(&mut *tx).await?.rows_affected();
        files.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// The ids a batch works on: `sql` selects `id` with `$1` a time bound and `$2` the limit.
async fn batch(
    tx: &mut super::sql::WriteTx,
    sql: &str,
    before: Timestamp,
    limit: i64,
) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(sql).bind(before.as_micros()).bind(limit).fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?)
}
