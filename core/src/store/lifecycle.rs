//! The lifecycle ledger's rows ([`crate::mail::lifecycle`]): written by the transaction of
//! the change they record (an inbound insert, an outbound insert, a transition, a suppression),
//! read back in ascending `(occurred_at, id)` order.

use super::sql::{ts, word};
use super::{After, PageQuery, SqlStore, StoreError, StoreResult};
use crate::mail::lifecycle::NewStage;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Appends `rows` to their messages' ledgers. The account and agent columns (what the
/// metrics group by) are copied from the message row, which the same transaction wrote or
/// locked, so a row can never name another tenant. A row whose id is already there (a
/// [`NewStage::keyed`] report seen twice) is skipped.
pub(super) async fn insert_stages(conn: &mut sqlx::AnyConnection, rows: &[NewStage]) -> StoreResult<()> {
    for r in rows {
        let json = |m: &serde_json::Map<String, serde_json::Value>| {
            serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
        };
        sqlx::query(
            "INSERT INTO message_lifecycle (id, message_id, account_id, agent_email, direction, recipient,
                 stage, outcome, reason_code, retryable, evidence, correlation_ids, occurred_at,
                 message_created_at)
             SELECT $1, id, account_id, agent_email, $2, $3, $4, $5, $6, $7, $8, $9, $10, created_at
             FROM messages WHERE id = $11
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(r.id.as_str())
        .bind(r.direction.as_str())
        .bind(r.recipient.as_deref())
        .bind(r.reason.stage().as_str())
        .bind(r.reason.outcome().as_str())
        .bind(r.reason.as_str())
        .bind(i64::from(r.reason.retryable()))
        .bind(json(&r.evidence))
        .bind(json(&r.correlation_ids))
        .bind(r.occurred_at.as_micros())
        .bind(r.message_id.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn object(row: &AnyRow, col: &str) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("lifecycle {col}: {e}")))
}

fn stage(row: &AnyRow) -> StoreResult<NewStage> {
    Ok(NewStage {
        id: row.try_get("id")?,
        message_id: row.try_get("message_id")?,
        direction: word(row, "direction")?,
        recipient: row.try_get("recipient")?,
        reason: word(row, "reason_code")?,
        evidence: object(row, "evidence")?,
        correlation_ids: object(row, "correlation_ids")?,
        occurred_at: ts(row, "occurred_at")?,
    })
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// A page of one message's ledger, oldest first (`limit + 1` rows).
    async fn list_lifecycle(&self, message_id: &str, page: &PageQuery) -> StoreResult<Vec<NewStage>>;
}

#[async_trait]
impl LifecycleStore for SqlStore {
    async fn list_lifecycle(&self, message_id: &str, page: &PageQuery) -> StoreResult<Vec<NewStage>> {
        let after = if page.after.is_some() {
            "AND (occurred_at > $3 OR (occurred_at = $3 AND id > $4))"
        } else {
            ""
        };
        let sql = format!(
            "SELECT id, message_id, direction, recipient, reason_code, evidence, correlation_ids, occurred_at
             FROM message_lifecycle WHERE message_id = $1 {after}
             ORDER BY occurred_at, id LIMIT $2"
        );
        let mut q = sqlx::query(&sql).bind(message_id).bind(i64::from(page.limit) + 1);
        if let Some(After { created_at, key }) = &page.after {
            q = q.bind(created_at.as_micros()).bind(key.as_str());
        }
        q.fetch_all(&self.pool).await?.iter().map(stage).collect()
    }
}
