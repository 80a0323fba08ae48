//! Agents (the mailboxes), their trash and restore.

use super::sql::{conflict_as, opt_ts, ts};
use super::{Agent, AgentStore, NewAgent, PageQuery, SqlStore, StoreError, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const AGENT_COLS: &str =
    "a.email, a.account_id, a.domain, a.name, a.created_at, a.deleted_at, d.verified AS domain_verified";
const FROM: &str = "agents a LEFT JOIN domains d ON d.domain = a.domain";

fn agent(row: &AnyRow) -> StoreResult<Agent> {
    Ok(Agent {
        email: row.try_get("email")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        domain: row.try_get("domain")?,
        name: row.try_get("name")?,
        created_at: ts(row, "created_at")?,
        deleted_at: opt_ts(row, "deleted_at")?,
        domain_verified: row.try_get::<Option<i64>, _>("domain_verified")?.unwrap_or(0) != 0,
    })
}

impl SqlStore {
    async fn agent_by_email(&self, email: &str) -> StoreResult<Option<Agent>> {
        self.fetch_by(&format!("SELECT {AGENT_COLS} FROM {FROM} WHERE a.email = $1"), email, agent).await
    }
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn create_agent(&self, new: NewAgent) -> StoreResult<Agent> {
        let mut tx = self.begin_write().await?;
        if new.require_verified_domain {
            // Locks the domain row on PostgreSQL (SQLite's BEGIN IMMEDIATE already excludes
            // other writers), so delete_domain waits for this insert or sees its result.
            let row = sqlx::query(&format!(
                "SELECT verified FROM domains WHERE domain = $1 AND account_id = $2{}",
                self.lock_rows()
            ))
            .bind(new.domain.as_str())
            .bind(new.account_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => return Err(StoreError::Precondition("domain_not_registered")),
                Some(r) if r.try_get::<i64, _>("verified")? == 0 => {
                    return Err(StoreError::Precondition("domain_not_verified"));
                }
                Some(_) => {}
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO agents (email, account_id, domain, name, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(new.email.as_str())
        .bind(new.account_id.as_str())
        .bind(new.domain.as_str())
        .bind(new.name.as_str())
        .bind(Timestamp::now().as_micros())
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("agent"))?
        .rows_affected()
            == 1;
        tx.commit().await?;
        let existing = self.agent_by_email(&new.email).await?.ok_or(StoreError::NotFound)?;
        if inserted {
            self.directory_changed().await;
            return Ok(existing);
        }
        if existing.account_id == new.account_id && existing.deleted_at.is_some() {
            Err(StoreError::Conflict("agent_in_trash"))
        } else {
            Err(StoreError::Conflict("agent"))
        }
    }

    async fn get_agent(&self, account: &AccountId, email: &str) -> StoreResult<Option<Agent>> {
        Ok(self.agent_by_email(email).await?.filter(|a| &a.account_id == account))
    }

    async fn find_live_agent(&self, email: &str) -> StoreResult<Option<Agent>> {
        Ok(self.agent_by_email(email).await?.filter(|a| a.deleted_at.is_none()))
    }

    async fn list_agents(
        &self,
        account: &AccountId,
        trash: bool,
        page: &PageQuery,
    ) -> StoreResult<Vec<Agent>> {
        let trash_cond = if trash { "a.deleted_at IS NOT NULL" } else { "a.deleted_at IS NULL" };
        let sql = format!(
            "SELECT {AGENT_COLS} FROM {FROM}
             WHERE a.account_id = $1 AND {trash_cond}
               AND (a.created_at < $2 OR (a.created_at = $2 AND a.email < $3))
             ORDER BY a.created_at DESC, a.email DESC LIMIT $4"
        );
        self.fetch_page(&sql, account, page, agent).await
    }

    async fn rename_agent(&self, account: &AccountId, email: &str, name: &str) -> StoreResult<Option<Agent>> {
        let done = sqlx::query(
            "UPDATE agents SET name = $3 WHERE email = $1 AND account_id = $2 AND deleted_at IS NULL",
        )
        .bind(email)
        .bind(account.as_str())
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_agent(account, email).await
    }

    async fn trash_agent(&self, account: &AccountId, email: &str, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE agents SET deleted_at = $3 WHERE email = $1 AND account_id = $2 AND deleted_at IS NULL",
        )
        .bind(email)
        .bind(account.as_str())
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        let trashed = done.rows_affected() == 1;
        if trashed {
            self.directory_changed().await;
        }
        Ok(trashed)
    }

    async fn purge_agent(&self, account: &AccountId, email: &str) -> StoreResult<Option<u64>> {
        let mut tx = self.begin_write().await?;
        let messages = drop_agent_rows(&mut tx, account, email).await?;
        let gone = sqlx::query("DELETE FROM agents WHERE email = $1 AND account_id = $2")
            .bind(email)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        self.directory_changed().await;
        Ok(Some(messages))
    }

    async fn restore_agent(&self, account: &AccountId, email: &str) -> StoreResult<Option<Agent>> {
        let mut tx = self.begin_write().await?;
        let trashed = sqlx::query(
            "SELECT deleted_at FROM agents WHERE email = $1 AND account_id = $2 AND deleted_at IS NOT NULL",
        )
        .bind(email)
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = trashed else { return Ok(None) };
        let since: i64 = row.try_get("deleted_at")?;
        sqlx::query("UPDATE agents SET deleted_at = NULL WHERE email = $1 AND account_id = $2")
            .bind(email)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        // Time in the trash does not count against a pending hold (the sweep skips trashed
        // agents), so its deadline moves on by as long (contract §7.4).
        let in_trash = (Timestamp::now().as_micros() - since).max(0);
        sqlx::query(
            "UPDATE holds SET expires_at = expires_at + $2 WHERE agent_email = $1 AND state = 'pending'",
        )
        .bind(email)
        .bind(in_trash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.directory_changed().await;
        self.get_agent(account, email).await
    }
}

/// What goes with an agent, permanently deleted or purged from the trash: its messages
/// (attachments and holds cascade), conversations and holds, and its keys revoked (a later
/// agent at the same address is a different mailbox and must not inherit them). The number
/// of messages deleted.
pub(super) async fn drop_agent_rows(
    tx: &mut super::sql::WriteTx,
    account: &AccountId,
    email: &str,
) -> StoreResult<u64> {
    let messages = sqlx::query("DELETE FROM messages WHERE agent_email = $1 AND account_id = $2")
        .bind(email)
        .bind(account.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    for table in ["conversations", "holds", "contact_engagements", "lifecycle_daily", "message_daily"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE agent_email = $1 AND account_id = $2"))
            .bind(email)
            .bind(account.as_str())
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "UPDATE api_keys SET revoked_at = $3
         WHERE agent_email = $1 AND account_id = $2 AND revoked_at IS NULL",
    )
    .bind(email)
    .bind(account.as_str())
    .bind(Timestamp::now().as_micros())
    .execute(&mut **tx)
    .await?;
    Ok(messages)
}
