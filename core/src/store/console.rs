//! Console sign-ins and sessions (docs/console.md). A login row stands for one emailed link
//! (its mail goes out as a `console_sign_in` job in the same transaction); a session row for
//! one signed-in browser, found by the SHA-256 of its cookie.

use super::sql::{opt_ts, ts};
use super::{SqlStore, StoreResult};
use crate::bus::BusMessage;
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::JobKind;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Sessions listed at most per account (older ones still work; the page says how many).
pub const MAX_LISTED_SESSIONS: u32 = 200;

/// An emailed sign-in link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLogin {
    pub id: String,
    pub account_id: AccountId,
    pub email: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id: String,
    pub account_id: AccountId,
    /// The address the link went to, or `api_key:<key id>`.
    pub signed_in_as: String,
    pub user_agent: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

pub struct NewConsoleSession<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub account_id: &'a AccountId,
    pub signed_in_as: &'a str,
    pub user_agent: &'a str,
    pub now: Timestamp,
    pub expires_at: Timestamp,
}

const LOGIN_COLS: &str = "id, account_id, email, created_at, expires_at, used_at";
const SESSION_COLS: &str =
    "id, account_id, signed_in_as, user_agent, created_at, last_seen_at, expires_at, revoked_at";

fn login(row: &AnyRow) -> StoreResult<ConsoleLogin> {
    Ok(ConsoleLogin {
        id: row.try_get("id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        email: row.try_get("email")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
        used_at: opt_ts(row, "used_at")?,
    })
}

fn session(row: &AnyRow) -> StoreResult<ConsoleSession> {
    Ok(ConsoleSession {
        id: row.try_get("id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        signed_in_as: row.try_get("signed_in_as")?,
        user_agent: row.try_get("user_agent")?,
        created_at: ts(row, "created_at")?,
        last_seen_at: ts(row, "last_seen_at")?,
        expires_at: ts(row, "expires_at")?,
        revoked_at: opt_ts(row, "revoked_at")?,
    })
}

/// A session's `last_seen_at` is written at most this often (a page view is then a read).
const TOUCH_EVERY_MICROS: i64 = 60_000_000;

#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// The accounts whose owner or reviewer is `email` (case-insensitive), oldest first.
    async fn console_accounts(&self, email: &str) -> StoreResult<Vec<AccountId>>;
    /// Stores a login and queues its mail, in one transaction.
    async fn create_console_login(&self, login: &ConsoleLogin) -> StoreResult<()>;
    async fn get_console_login(&self, id: &str) -> StoreResult<Option<ConsoleLogin>>;
    /// Marks the login used if it is unused and unexpired; whether this call did.
    async fn use_console_login(&self, id: &str, now: Timestamp) -> StoreResult<bool>;

    async fn create_console_session(&self, new: NewConsoleSession<'_>) -> StoreResult<()>;
    /// The live session with this token hash: not revoked, before its absolute expiry and
    /// seen since `idle_since`. Stamps `last_seen_at` (at most once a minute).
    async fn console_session(
        &self,
        token_hash: &str,
        now: Timestamp,
        idle_since: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>>;
    /// The account's live sessions, newest first.
    async fn list_console_sessions(
        &self,
        account: &AccountId,
        now: Timestamp,
        idle_since: Timestamp,
    ) -> StoreResult<Vec<ConsoleSession>>;
    /// Revokes one of the account's sessions; `false` when it has none by that id.
    async fn revoke_console_session(
        &self,
        account: &AccountId,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Revokes every live session of the account signed in as `signed_in_as` (the sessions a
    /// revoked API key opened); how many.
    async fn revoke_console_sessions_of(
        &self,
        account: &AccountId,
        signed_in_as: &str,
        now: Timestamp,
    ) -> StoreResult<u64>;
    /// Drops logins and sessions that ended before `before`.
    async fn expire_console(&self, before: Timestamp) -> StoreResult<u64>;
}

impl SqlStore {
    /// Revokes the account's live sessions whose `column` (one of ours, never input) is `value`.
    async fn revoke_sessions_where(
        &self,
        column: &'static str,
        account: &AccountId,
        value: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let done = sqlx::query(&format!(
            "UPDATE console_sessions SET revoked_at = $3
             WHERE account_id = $1 AND {column} = $2 AND revoked_at IS NULL"
        ))
        .bind(account.as_str())
        .bind(value)
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl ConsoleStore for SqlStore {
    async fn console_accounts(&self, email: &str) -> StoreResult<Vec<AccountId>> {
        let rows = sqlx::query(
            "SELECT id FROM accounts WHERE lower(email) = lower($1) OR lower(reviewer_email) = lower($1)
             ORDER BY created_at LIMIT 10",
        )
        .bind(email)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(AccountId::from_stored(r.try_get("id")?))).collect()
    }

    async fn create_console_login(&self, l: &ConsoleLogin) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO console_logins (id, account_id, email, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&l.id)
        .bind(l.account_id.as_str())
        .bind(&l.email)
        .bind(l.created_at.as_micros())
        .bind(l.expires_at.as_micros())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO jobs (kind, ref_id, run_at, created_at) VALUES ($1, $2, $3, $3)")
            .bind(JobKind::ConsoleSignIn.as_str())
            .bind(&l.id)
            .bind(l.created_at.as_micros())
            .execute(&mut *tx)
            .await?;
        let msg = BusMessage::Jobs { kind: JobKind::ConsoleSignIn };
        self.notify_in_tx(&mut tx, &msg).await?;
        tx.commit().await?;
        self.bus.publish(msg);
        Ok(())
    }

    async fn get_console_login(&self, id: &str) -> StoreResult<Option<ConsoleLogin>> {
        let row = sqlx::query(&format!("SELECT {LOGIN_COLS} FROM console_logins WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(login).transpose()
    }

    async fn use_console_login(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE console_logins SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(id)
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_console_session(&self, s: NewConsoleSession<'_>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id, token_hash, account_id, signed_in_as, user_agent,
                 created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(s.id)
        .bind(s.token_hash)
        .bind(s.account_id.as_str())
        .bind(s.signed_in_as)
        .bind(s.user_agent)
        .bind(s.now.as_micros())
        .bind(s.expires_at.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn console_session(
        &self,
        token_hash: &str,
        now: Timestamp,
        idle_since: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM console_sessions
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3"
        ))
        .bind(token_hash)
        .bind(now.as_micros())
        .bind(idle_since.as_micros())
        .fetch_optional(&self.pool)
        .await?;
        let Some(s) = row.as_ref().map(session).transpose()? else { return Ok(None) };
        if now.as_micros() - s.last_seen_at.as_micros() >= TOUCH_EVERY_MICROS {
            sqlx::query("UPDATE console_sessions SET last_seen_at = $2 WHERE id = $1")
                .bind(&s.id)
                .bind(now.as_micros())
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(s))
    }

    async fn list_console_sessions(
        &self,
        account: &AccountId,
        now: Timestamp,
        idle_since: Timestamp,
    ) -> StoreResult<Vec<ConsoleSession>> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM console_sessions
             WHERE account_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(account.as_str())
        .bind(now.as_micros())
        .bind(idle_since.as_micros())
        .bind(i64::from(MAX_LISTED_SESSIONS))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session).collect()
    }

    async fn revoke_console_session(
        &self,
        account: &AccountId,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        Ok(self.revoke_sessions_where("id", account, id, now).await? == 1)
    }

    async fn revoke_console_sessions_of(
        &self,
        account: &AccountId,
        signed_in_as: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        self.revoke_sessions_where("signed_in_as", account, signed_in_as, now).await
    }

    async fn expire_console(&self, before: Timestamp) -> StoreResult<u64> {
        let logins = sqlx::query("DELETE FROM console_logins WHERE expires_at < $1")
            .bind(before.as_micros())
            .execute(&self.pool)
            .await?
            .rows_affected();
        let sessions = sqlx::query(
            "DELETE FROM console_sessions WHERE expires_at < $1 OR (revoked_at IS NOT NULL AND revoked_at < $1)",
        )
        .bind(before.as_micros())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(logins + sessions)
    }
}
