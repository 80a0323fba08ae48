//! The work queue every background worker claims from.

use super::sql::Backend;
use super::{Job, JobQueue, SqlStore, StoreResult};
use crate::time::Timestamp;
use crate::vocab::JobKind;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl JobQueue for SqlStore {
    async fn enqueue_job(&self, kind: JobKind, ref_id: &str, run_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO jobs (kind, ref_id, run_at, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, ref_id) DO UPDATE SET run_at = CASE
                 WHEN excluded.run_at < jobs.run_at THEN excluded.run_at ELSE jobs.run_at END",
        )
        .bind(kind.as_str())
        .bind(ref_id)
        .bind(run_at.as_micros())
        .bind(Timestamp::now().as_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_jobs(
        &self,
        kind: JobKind,
        worker: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        // Both backends take a lease; PostgreSQL also skips rows that a concurrent claimer has
        // locked, so replicas never queue behind each other. SQLite serialises writers with
        // BEGIN IMMEDIATE, which makes the select-then-update below atomic.
        let skip_locked = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET locked_until = $3, locked_by = $4, attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE kind = $1 AND run_at <= $2 AND (locked_until IS NULL OR locked_until <= $2)
                 ORDER BY run_at, id LIMIT $5 {skip_locked})
             RETURNING id, kind, ref_id, attempts"
        );
        // Most polls find nothing: ask with a plain read first, so an idle worker never takes
        // the write lock (SQLite has one writer at a time; the LMTP server needs it).
        let due = sqlx::query(
            "SELECT 1 AS due FROM jobs WHERE kind = $1 AND run_at <= $2
               AND (locked_until IS NULL OR locked_until <= $2) LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(now.as_micros())
        .fetch_optional(&self.pool)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(now.as_micros())
            .bind(now.plus_secs(lease_secs).as_micros())
            .bind(worker)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok(Job {
                    id: r.try_get("id")?,
                    kind: super::sql::word(r, "kind")?,
                    ref_id: r.try_get("ref_id")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn drop_job_of_trashed(&self, job_id: i64, worker: &str, message_id: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id = $1 AND locked_by = $2
               AND EXISTS (SELECT 1 FROM messages WHERE id = $3 AND deleted_at IS NOT NULL)",
        )
        .bind(job_id)
        .bind(worker)
        .bind(message_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_job(&self, job_id: i64, worker: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2")
            .bind(job_id)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retry_job(
        &self,
        job_id: i64,
        worker: &str,
        run_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET run_at = $3, last_error = $4, locked_until = NULL, locked_by = NULL
             WHERE id = $1 AND locked_by = $2",
        )
        .bind(job_id)
        .bind(worker)
        .bind(run_at.as_micros())
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_jobs(&self, worker: &str) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE jobs SET locked_until = NULL, locked_by = NULL WHERE locked_by = $1")
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
