//! Suppressed recipients: the account's list (permanent bounces, complaints, the operator) and
//! each agent's list (manual blocks, unsubscribes). An insert and its `*.suppression_added`
//! event commit together, and only a new entry emits one.

use super::sql::{ts, word};
use super::{NewEvent, PageQuery, SqlStore, StoreResult};
use crate::bus::BusMessage;
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::SuppressionSource;
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
    async fn add_suppression(&self, s: &Suppression, event: Option<NewEvent>) -> StoreResult<bool>;
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
}

#[async_trait]
impl SuppressionStore for SqlStore {
    async fn add_suppression(&self, s: &Suppression, event: Option<NewEvent>) -> StoreResult<bool> {
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
}
