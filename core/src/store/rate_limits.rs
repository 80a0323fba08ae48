//! Rate-limit counters: fixed windows, one counter per bucket (`send:<agent>`,
//! `poll:<account>`…) and window. On PostgreSQL every replica counts in one row (an upsert
//! that returns the new count), so the budget is shared; on SQLite, which is one host, the
//! process counts in memory and pays no round trip.

use super::{Backend, SqlStore, StoreResult};
use async_trait::async_trait;
use sqlx::Row;

/// In-memory windows kept at most (SQLite); past it, windows older than the current are dropped.
const MAX_LOCAL_WINDOWS: usize = 100_000;

#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts one hit on `bucket` in the window starting at `window_start` (unix seconds) and
    /// returns the window's count, this hit included.
    async fn count_hit(&self, bucket: &str, window_start: i64) -> StoreResult<u64> {
        self.add_hits(bucket, window_start, 1).await
    }
    /// Counts `n` hits at once (a quota of recipients); the window's count after them.
    async fn add_hits(&self, bucket: &str, window_start: i64, n: u64) -> StoreResult<u64>;
    /// Drops windows that started before `before` (unix seconds).
    async fn expire_rate_windows(&self, before: i64) -> StoreResult<u64>;
}

#[async_trait]
impl RateLimitStore for SqlStore {
    async fn add_hits(&self, bucket: &str, window_start: i64, n: u64) -> StoreResult<u64> {
        if self.backend == Backend::Sqlite {
            let mut hits = self.local_hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if hits.len() >= MAX_LOCAL_WINDOWS {
                hits.retain(|(_, start), _| *start >= window_start);
            }
            let count = hits.entry((bucket.to_owned(), window_start)).or_insert(0);
            *count += n;
            return Ok(*count);
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, $3)
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + $3
             RETURNING hits",
        )
        .bind(bucket)
        .bind(window_start)
        .bind(n)
        .fetch_one(&self.pool)
        .await?;
        let hits: i64 = row.try_get("hits")?;
        Ok(u64::try_from(hits).unwrap_or(0))
    }

    async fn expire_rate_windows(&self, before: i64) -> StoreResult<u64> {
        if self.backend == Backend::Sqlite {
            let mut hits = self.local_hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let had = hits.len();
            hits.retain(|(_, start), _| *start >= before);
            return Ok((had - hits.len()) as u64);
        }
        let done = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
