//! `Idempotency-Key` bookkeeping: one row per (account, key) holding the request fingerprint
//! and, once done, the response to replay.

use super::{IdempotencyBegin, IdempotencyStore, SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl IdempotencyStore for SqlStore {
    async fn idempotency_begin(
        &self,
        account: &AccountId,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<IdempotencyBegin> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (account_id, key, fingerprint, state, created_at)
             VALUES ($1, $2, $3, 'in_flight', $4) ON CONFLICT (account_id, key) DO NOTHING",
        )
        .bind(account.as_str())
        .bind(key)
        .bind(fingerprint)
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(IdempotencyBegin::Started);
        }
        let row = sqlx::query(
            "SELECT fingerprint, state, response_status, response_body FROM idempotency_keys
             WHERE account_id = $1 AND key = $2",
        )
        .bind(account.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Released between our insert and select: treat as a concurrent first use.
            return Ok(IdempotencyBegin::InFlight);
        };
        let stored: String = row.try_get("fingerprint")?;
        if !crate::sign::ct_eq(stored.as_bytes(), fingerprint.as_bytes()) {
            return Ok(IdempotencyBegin::Mismatch);
        }
        let state: String = row.try_get("state")?;
        if state != "done" {
            let taken_over = sqlx::query(
                "UPDATE idempotency_keys SET created_at = $3
                 WHERE account_id = $1 AND key = $2 AND state = 'in_flight' AND created_at < $4",
            )
            .bind(account.as_str())
            .bind(key)
            .bind(now.as_micros())
            .bind(stale_before.as_micros())
            .execute(&self.pool)
            .await?
            .rows_affected()
                == 1;
            return Ok(if taken_over { IdempotencyBegin::Started } else { IdempotencyBegin::InFlight });
        }
        let status: Option<i64> = row.try_get("response_status")?;
        let body: Option<String> = row.try_get("response_body")?;
        Ok(IdempotencyBegin::Replay {
            status: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(200),
            body: body.unwrap_or_default(),
        })
    }

    async fn idempotency_finish(
        &self,
        account: &AccountId,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4
             WHERE account_id = $1 AND key = $2",
        )
        .bind(account.as_str())
        .bind(key)
        .bind(i64::from(status))
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotency_release(&self, account: &AccountId, key: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND state = 'in_flight'",
        )
        .bind(account.as_str())
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn idempotency_expire(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
