//! Suppressed recipients: the account's list (permanent bounces, complaints, the operator) and
//! each agent's list (manual blocks, unsubscribes). An insert and its `*.suppression_added`
//! event commit together, and only a new entry emits one.

use super::sql::{ts, word};
use super::{NewEvent, PageQuery, SqlStore, StoreResult};
use crate::bus::BusMessage;
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::{MessageStatus, SuppressionSource};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub account_id: AccountId,
    /// `None` on the account's list.
    pub agent_email: Option<String>,
    pub address: String,
    pub source: SuppressionSource,
    pub reason: Option<String>,
    pub source_message_id: Option<String>,
    pub created_at: Timestamp,
}

const COLS: &str = "account_id, agent_email, address, source, reason, source_message_id, created_at";

fn suppression(row: &AnyRow) -> StoreResult<Suppression> {
    let agent: String = row.try_get("agent_email")?;
    Ok(Suppression {
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        agent_email: (!agent.is_empty()).then_some(agent),
        address: row.try_get("address")?,
        source: word(row, "source")?,
        reason: row.try_get("reason")?,
        source_message_id: row.try_get("source_message_id")?,
        created_at: ts(row, "created_at")?,
    })
}

#[async_trait]
pub trait SuppressionStore: Send + Sync {
    /// Adds `s` (its address lowercase) unless that list already has the address; `event` is
    /// emitted in the same transaction, only for a new entry. `true` when added.
    /// Adds `s` (with its event and the ledger rows it records) unless the list has it.
    async fn add_suppression(
        &self,
        s: &Suppression,
        event: Option<NewEvent>,
        ledger: Vec<crate::mail::lifecycle::NewStage>,
    ) -> StoreResult<bool>;
    /// A page of one list, newest first: the account's (`agent = None`) or an agent's.
    async fn list_suppressions(
        &self,
        account: &AccountId,
        agent: Option<&str>,
        page: &PageQuery,
    ) -> StoreResult<Vec<Suppression>>;
    /// Removes an address from one list; `false` when it was not there.
    async fn delete_suppression(
        &self,
        account: &AccountId,
        agent: Option<&str>,
        address: &str,
    ) -> StoreResult<bool>;
    /// The entries that stop mail from `agent` to any of `addresses` (lowercase): the account's
    /// list first, then the agent's own, in the order of `addresses`.
    async fn suppressed(
        &self,
        account: &AccountId,
        agent: &str,
        addresses: &[String],
    ) -> StoreResult<Vec<Suppression>>;
    /// Records that `message` soft-bounced for `address` (once; a repeated DSN is no news).
    async fn record_soft_bounce(
        &self,
        account: &AccountId,
        address: &str,
        message_id: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// The length of the run of soft bounces `run.message_id` is part of: among
    /// `run.agent`'s messages to `run.address` that went out (sent or bounced) since
    /// `run.since`, in the order they were sent, the unbroken sequence of soft-bounced ones
    /// around it (DSNs may arrive in any order). 0 when the message is not among them.
    async fn soft_bounce_run(&self, run: &SoftBounceRun<'_>) -> StoreResult<u32>;
    /// Drops soft bounces recorded before `before`.
    async fn expire_soft_bounces(&self, before: Timestamp) -> StoreResult<u64>;
}

/// The question [`SuppressionStore::soft_bounce_run`] answers.
#[derive(Debug, Clone)]
pub struct SoftBounceRun<'a> {
    pub account: &'a AccountId,
    pub agent: &'a str,
    pub address: &'a str,
    pub since: Timestamp,
    pub message_id: &'a str,
}

/// Most messages looked at for one run: an address with more mail than this in the window
/// counts its run among the newest ones.
const RUN_SCAN: i64 = 1000;

#[async_trait]
impl SuppressionStore for SqlStore {
    async fn add_suppression(
        &self,
        s: &Suppression,
        event: Option<NewEvent>,
        ledger: Vec<crate::mail::lifecycle::NewStage>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO suppressions (account_id, agent_email, address, source, reason, source_message_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (account_id, agent_email, address) DO NOTHING",
        )
        .bind(s.account_id.as_str())
        .bind(s.agent_email.as_deref().unwrap_or(""))
        .bind(s.address.to_ascii_lowercase())
        .bind(s.source.as_str())
        .bind(s.reason.as_deref())
        .bind(s.source_message_id.as_deref())
        .bind(s.created_at.as_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let mut published: Option<BusMessage> = None;
        if inserted && let Some(e) = &event {
            published = Some(super::events::insert_event(self, &mut tx, e).await?.0);
        }
        if inserted {
            super::lifecycle::insert_stages(&mut tx, &ledger).await?;
        }
        tx.commit().await?;
        if let Some(p) = published {
            self.bus.publish(p);
        }
        Ok(inserted)
    }

    async fn list_suppressions(
        &self,
        account: &AccountId,
        agent: Option<&str>,
        page: &PageQuery,
    ) -> StoreResult<Vec<Suppression>> {
        let (at, key) = match &page.after {
            Some(a) => (a.created_at.as_micros(), a.key.clone()),
            None => (i64::MAX, String::new()),
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM suppressions
             WHERE account_id = $1 AND agent_email = $2
               AND (created_at < $3 OR (created_at = $3 AND address < $4))
             ORDER BY created_at DESC, address DESC LIMIT $5"
        ))
        .bind(account.as_str())
        .bind(agent.unwrap_or(""))
        .bind(at)
        .bind(key)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(suppression).collect()
    }

    async fn delete_suppression(
        &self,
        account: &AccountId,
        agent: Option<&str>,
        address: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM suppressions WHERE account_id = $1 AND agent_email = $2 AND address = $3",
        )
        .bind(account.as_str())
        .bind(agent.unwrap_or(""))
        .bind(address.to_ascii_lowercase())
        .execute(&mut *tx)
        .await?;
        // Lifting an account-level entry forgets the soft bounces that may have put it there:
        // the next soft bounce starts a new run instead of re-suppressing at once.
        if agent.is_none() {
            sqlx::query("DELETE FROM soft_bounces WHERE account_id = $1 AND address = $2")
                .bind(account.as_str())
                .bind(address.to_ascii_lowercase())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn suppressed(
        &self,
        account: &AccountId,
        agent: &str,
        addresses: &[String],
    ) -> StoreResult<Vec<Suppression>> {
        let mut found = Vec::new();
        // One indexed lookup per recipient (a send has at most 50): no IN-list building.
        for address in addresses {
            let rows = sqlx::query(&format!(
                "SELECT {COLS} FROM suppressions
                 WHERE account_id = $1 AND address = $2 AND agent_email IN ('', $3)
                 ORDER BY agent_email"
            ))
            .bind(account.as_str())
            .bind(address.to_ascii_lowercase())
            .bind(agent)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                found.push(suppression(row)?);
            }
        }
        Ok(found)
    }

    async fn record_soft_bounce(
        &self,
        account: &AccountId,
        address: &str,
        message_id: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO soft_bounces (account_id, address, message_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, address, message_id) DO NOTHING",
        )
        .bind(account.as_str())
        .bind(address.to_ascii_lowercase())
        .bind(message_id)
        .bind(at.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn soft_bounce_run(&self, run: &SoftBounceRun<'_>) -> StoreResult<u32> {
        let address = run.address.to_ascii_lowercase();
        // Address lists are JSON arrays of lowercase addresses: a quoted match is exact (LIKE's
        // wildcards are escaped). The agent's index bounds the scan to its outbound mail of
        // the window.
        let quoted = super::messages::contains_pattern(&serde_json::to_string(&address).unwrap_or_default());
        let went_out =
            [MessageStatus::Sent, MessageStatus::Bounced].map(|w| format!("'{}'", w.as_str())).join(", ");
        let rows = sqlx::query(&format!(
            "SELECT m.id, b.message_id AS soft FROM messages m
             LEFT JOIN soft_bounces b ON b.account_id = m.account_id AND b.address = $3 AND b.message_id = m.id
             WHERE m.agent_email = $1 AND m.direction = 'outbound' AND m.account_id = $2
               AND m.created_at >= $4 AND m.status IN ({went_out})
               AND (m.to_addrs LIKE $5 ESCAPE '\\' OR m.cc_addrs LIKE $5 ESCAPE '\\' OR m.bcc_addrs LIKE $5 ESCAPE '\\')
             ORDER BY m.created_at DESC, m.id DESC LIMIT $6"
        ))
        .bind(run.agent)
        .bind(run.account.as_str())
        .bind(&address)
        .bind(run.since.as_micros())
        .bind(quoted)
        .bind(RUN_SCAN)
        .fetch_all(&self.pool)
        .await?;
        let mut soft = Vec::with_capacity(rows.len());
        let mut at = None;
        for (i, row) in rows.iter().enumerate() {
            let id: String = row.try_get("id")?;
            let bounced: Option<String> = row.try_get("soft")?;
            if id == run.message_id {
                at = Some(i);
            }
            soft.push(bounced.is_some());
        }
        let Some(at) = at.filter(|i| soft[*i]) else { return Ok(0) };
        let newer = soft[..at].iter().rev().take_while(|s| **s).count();
        let older = soft[at + 1..].iter().take_while(|s| **s).count();
        Ok(u32::try_from(1 + newer + older).unwrap_or(u32::MAX))
    }

    async fn expire_soft_bounces(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM soft_bounces WHERE created_at < $1")
            .bind(before.as_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
