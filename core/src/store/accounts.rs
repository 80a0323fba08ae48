//! Accounts, API keys and usage.

use super::sql::{conflict_as, opt_ts, ts};
use super::{Account, AccountStore, ApiKey, NewApiKey, PageQuery, SqlStore, StoreError, StoreResult, Usage};
use crate::apikey::KeyScope;
use crate::ids::{AccountId, ApiKeyId};
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const ACCOUNT_COLS: &str = "id, email, reviewer_email, plan_code, created_at";
const KEY_COLS: &str =
    "id, account_id, name, key_prefix, scope, agent_email, expires_at, last_used_at, created_at";

fn account(row: &AnyRow) -> StoreResult<Account> {
    Ok(Account {
        id: AccountId::from_stored(row.try_get("id")?),
        email: row.try_get("email")?,
        reviewer_email: row.try_get("reviewer_email")?,
        plan_code: row.try_get("plan_code")?,
        created_at: ts(row, "created_at")?,
    })
}

fn api_key(row: &AnyRow) -> StoreResult<ApiKey> {
    let scope: String = row.try_get("scope")?;
    Ok(ApiKey {
        id: ApiKeyId::from_stored(row.try_get("id")?),
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        scope: KeyScope::parse(&scope).ok_or_else(|| StoreError::Corrupt(format!("key scope {scope:?}")))?,
        agent_email: row.try_get("agent_email")?,
        expires_at: opt_ts(row, "expires_at")?,
        last_used_at: opt_ts(row, "last_used_at")?,
        created_at: ts(row, "created_at")?,
    })
}

async fn count(
    store: &SqlStore,
    sql: &str,
    account: &AccountId,
    since: Option<Timestamp>,
) -> StoreResult<i64> {
    let mut q = sqlx::query(sql).bind(account.as_str());
    if let Some(since) = since {
        q = q.bind(since.as_micros());
    }
    Ok(q.fetch_one(&store.pool).await?.try_get::<i64, _>(0)?)
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, email: &str) -> StoreResult<Account> {
        let row = sqlx::query(&format!(
            "INSERT INTO accounts (id, email, created_at) VALUES ($1, $2, $3) RETURNING {ACCOUNT_COLS}"
        ))
        .bind(AccountId::mint().as_str())
        .bind(email)
        .bind(Timestamp::now().as_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(conflict_as("account"))?;
        account(&row)
    }

    async fn is_reviewer_address(&self, email: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM accounts WHERE lower(COALESCE(reviewer_email, email)) = lower($1)",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn set_reviewer_email(&self, id: &AccountId, reviewer: Option<&str>) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE accounts SET reviewer_email = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(reviewer)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_account(&self, id: &AccountId) -> StoreResult<Option<Account>> {
        self.fetch_by(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"), id.as_str(), account)
            .await
    }

    async fn find_account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        self.fetch_by(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE email = $1"), email, account).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account).collect()
    }

    async fn account_usage(&self, id: &AccountId, month_start: Timestamp) -> StoreResult<Usage> {
        Ok(Usage {
            agents: count(
                self,
                "SELECT COUNT(*) FROM agents WHERE account_id = $1 AND deleted_at IS NULL",
                id,
                None,
            )
            .await?,
            domains: count(self, "SELECT COUNT(*) FROM domains WHERE account_id = $1", id, None).await?,
            messages_month: count(
                self,
                "SELECT COUNT(*) FROM messages WHERE account_id = $1 AND created_at >= $2",
                id,
                Some(month_start),
            )
            .await?,
            storage_bytes: count(
                self,
                "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM messages WHERE account_id = $1",
                id,
                None,
            )
            .await?,
        })
    }

    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, account_id, name, key_prefix, key_hash, scope, agent_email, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {KEY_COLS}"
        ))
        .bind(ApiKeyId::mint().as_str())
        .bind(key.account_id.as_str())
        .bind(key.name)
        .bind(key.key_prefix)
        .bind(key.key_hash)
        .bind(key.scope.as_str())
        .bind(key.agent_email)
        .bind(key.expires_at.map(Timestamp::as_micros))
        .bind(Timestamp::now().as_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(conflict_as("api key"))?;
        api_key(&row)
    }

    async fn list_api_keys(&self, account: &AccountId, page: &PageQuery) -> StoreResult<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys
             WHERE account_id = $1 AND revoked_at IS NULL AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        self.fetch_page(&sql, account, page, api_key).await
    }

    async fn revoke_api_key(&self, account: &AccountId, id: &ApiKeyId, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 WHERE account_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(account.as_str())
        .bind(id.as_str())
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn authenticate(&self, key_hash: &str, now: Timestamp) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS}, key_hash FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
               AND (scope = 'account' OR EXISTS (
                   SELECT 1 FROM agents g WHERE g.email = api_keys.agent_email
                      AND g.account_id = api_keys.account_id AND g.deleted_at IS NULL))"
        ))
        .bind(key_hash)
        .bind(now.as_micros())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // The index lookup found it; comparing the hashes again in constant time keeps the
        // final decision independent of how the database compared strings.
        let stored: String = row.try_get("key_hash")?;
        if !crate::sign::ct_eq(stored.as_bytes(), key_hash.as_bytes()) {
            return Ok(None);
        }
        let mut key = api_key(&row)?;
        // Stamp last use at most once a minute: a write per request would serialise every
        // API call on SQLite.
        let stale = key.last_used_at.is_none_or(|t| t.plus_secs(60) < now);
        if stale {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(key.id.as_str())
                .bind(now.as_micros())
                .execute(&self.pool)
                .await?;
            key.last_used_at = Some(now);
        }
        Ok(Some(key))
    }
}
