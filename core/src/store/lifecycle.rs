//! The lifecycle ledger's rows ([`crate::mail::lifecycle`]): written by the transaction of
//! the change they record (an inbound insert, an outbound insert, a transition, a suppression),
//! read back in ascending `(occurred_at, id)` order.

use super::sql::{ts, word};
use super::{After, PageQuery, SqlStore, StoreError, StoreResult};
use crate::mail::lifecycle::{NewStage, Reason};
use crate::time::DAY_MICROS;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Appends `rows` to their messages' ledgers. The account and agent columns (what the
/// metrics group by) are copied from the message row, which the same transaction wrote or
/// locked, so a row can never name another tenant. A row whose id is already there (a
/// [`NewStage::keyed`] report seen twice) is skipped. The daily rollups the metrics read
/// ([`super::ledger_metrics`]) move in the same transaction: a reason's `messages` only on
/// the message's first row of that reason, the day's message count with its first row.
/// (A message's first rows, written with the message, go through [`insert_first_stages`].)
pub(super) async fn insert_stages(conn: &mut sqlx::AnyConnection, rows: &[NewStage]) -> StoreResult<()> {
    let mut messages: Vec<&str> = Vec::new();
    for r in rows {
        if !messages.contains(&r.message_id.as_str()) {
            messages.push(&r.message_id);
        }
    }
    for message_id in messages {
        let before: std::collections::HashSet<String> =
            sqlx::query("SELECT DISTINCT reason_code FROM message_lifecycle WHERE message_id = $1")
                .bind(message_id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get("reason_code"))
                .collect::<Result<_, _>>()?;
        // (reason, new messages, new rows), in first-appearance order.
        let mut added: Vec<(Reason, i64, i64)> = Vec::new();
        for r in rows.iter().filter(|r| r.message_id == message_id) {
            if insert_row(conn, r).await? {
                match added.iter_mut().find(|(reason, ..)| *reason == r.reason) {
                    Some(a) => a.2 += 1,
                    None => added.push((r.reason, i64::from(!before.contains(r.reason.as_str())), 1)),
                }
            }
        }
        for (reason, first, n) in &added {
            sqlx::query(&format!(
                "INSERT INTO lifecycle_daily (account_id, agent_email, day, reason_code, messages, observations)
                 SELECT account_id, agent_email, created_at / {DAY_MICROS}, $2, $3, $4 FROM messages WHERE id = $1
                 ON CONFLICT (account_id, day, agent_email, reason_code) DO UPDATE SET
                     messages = lifecycle_daily.messages + excluded.messages,
                     observations = lifecycle_daily.observations + excluded.observations"
            ))
            .bind(message_id)
            .bind(reason.as_str())
            .bind(*first)
            .bind(*n)
            .execute(&mut *conn)
            .await?;
        }
        // A message stored before the ledger existed (counted in its day by the migration)
        // gets a ledger with its first row.
        if before.is_empty() && !added.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO message_daily (account_id, agent_email, day, messages, with_lifecycle)
                 SELECT account_id, agent_email, created_at / {DAY_MICROS}, 0, 1 FROM messages WHERE id = $1
                 ON CONFLICT (account_id, day, agent_email) DO UPDATE SET
                     with_lifecycle = message_daily.with_lifecycle + 1"
            ))
            .bind(message_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Who a freshly stored message belongs to, and when it was made.
pub(super) struct Owner<'a> {
    pub account_id: &'a str,
    pub agent_email: &'a str,
    pub created_at: crate::time::Timestamp,
}

/// The first rows of a message this transaction just stored (`owner`'s): nothing to look up
/// and nothing to collide with, so the rows, the day's counts per reason and the day's
/// message count are three statements whatever the rows.
pub(super) async fn insert_first_stages(
    conn: &mut sqlx::AnyConnection,
    owner: &Owner<'_>,
    rows: &[NewStage],
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let day = owner.created_at.as_micros().div_euclid(DAY_MICROS);
    let mut sql = String::from(
        "INSERT INTO message_lifecycle (id, message_id, account_id, agent_email, direction, recipient, stage,
             outcome, reason_code, retryable, evidence, correlation_ids, occurred_at, message_created_at) VALUES ",
    );
    sql += &super::sql::value_rows(rows.len(), 14);
    let mut q = sqlx::query(&sql);
    for r in rows {
        q = q.bind(r.id.as_str()).bind(r.message_id.as_str()).bind(owner.account_id).bind(owner.agent_email);
        q = bind_stage(q, r).bind(owner.created_at.as_micros());
    }
    q.execute(&mut *conn).await?;
    // One rollup row per reason (a statement may not touch one row twice).
    let mut reasons: Vec<(Reason, i64)> = Vec::new();
    for r in rows {
        match reasons.iter_mut().find(|(reason, _)| *reason == r.reason) {
            Some(x) => x.1 += 1,
            None => reasons.push((r.reason, 1)),
        }
    }
    let sql = format!(
        "INSERT INTO lifecycle_daily (account_id, agent_email, day, reason_code, messages, observations) VALUES {}
         ON CONFLICT (account_id, day, agent_email, reason_code) DO UPDATE SET
             messages = lifecycle_daily.messages + excluded.messages,
             observations = lifecycle_daily.observations + excluded.observations",
        super::sql::value_rows(reasons.len(), 6)
    );
    let mut q = sqlx::query(&sql);
    for (reason, n) in &reasons {
        q = q
            .bind(owner.account_id)
            .bind(owner.agent_email)
            .bind(day)
            .bind(reason.as_str())
            .bind(1_i64)
            .bind(*n);
    }
    q.execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO message_daily (account_id, agent_email, day, messages, with_lifecycle) VALUES ($1, $2, $3, 1, 1)
         ON CONFLICT (account_id, day, agent_email) DO UPDATE SET
             messages = message_daily.messages + 1, with_lifecycle = message_daily.with_lifecycle + 1",
    )
    .bind(owner.account_id)
    .bind(owner.agent_email)
    .bind(day)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The columns a stage fills the same way in both inserts, in their order: `direction`
/// through `occurred_at`.
fn bind_stage<'q>(q: AnyQuery<'q>, r: &'q NewStage) -> AnyQuery<'q> {
    let json = |m: &serde_json::Map<String, serde_json::Value>| {
        serde_json::to_string(m).unwrap_or_else(|_| "{}".into())
    };
    q.bind(r.direction.as_str())
        .bind(r.recipient.as_deref())
        .bind(r.reason.stage().as_str())
        .bind(r.reason.outcome().as_str())
        .bind(r.reason.as_str())
        .bind(i64::from(r.reason.retryable()))
        .bind(json(&r.evidence))
        .bind(json(&r.correlation_ids))
        .bind(r.occurred_at.as_micros())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// One ledger row; `false` when its id was already there.
async fn insert_row(conn: &mut sqlx::AnyConnection, r: &NewStage) -> StoreResult<bool> {
    let done = bind_stage(
        sqlx::query(
            "INSERT INTO message_lifecycle (id, message_id, account_id, agent_email, direction, recipient,
             stage, outcome, reason_code, retryable, evidence, correlation_ids, occurred_at,
             message_created_at)
         SELECT $1, id, account_id, agent_email, $2, $3, $4, $5, $6, $7, $8, $9, $10, created_at
         FROM messages WHERE id = $11
         ON CONFLICT (id) DO NOTHING",
        )
        .bind(r.id.as_str()),
        r,
    )
    .bind(r.message_id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
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
