//! Data rights: what the account export reads (its records, and its messages page by page so
//! a large account never sits in memory), and the account deletion: one transaction removing
//! every row that names the account, counted per table.

use super::messages::{MESSAGE_COLS, message};
use super::sql::{opt_ts, ts};
use super::{AttachmentMeta, Message, SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::HashMap;

/// Raw bytes read per export page at most (one message more when a single one is larger).
const EXPORT_PAGE_BYTES: i64 = 16 * 1024 * 1024;

/// One exported message: the row, its raw MIME, what the agent asked to send (the draft's
/// JSON, for outbound mail) and its attachments.
#[derive(Debug, Clone)]
pub struct ExportedMessage {
    pub message: Message,
    pub raw: Option<Vec<u8>>,
    pub draft: Option<String>,
    pub attachments: Vec<AttachmentMeta>,
}

/// The account's records besides its messages, as rows to shape.
#[derive(Debug, Clone, Default)]
pub struct AccountRecords {
    /// `(id, email, created_at)`.
    pub account: Option<(AccountId, String, Timestamp)>,
    /// `(domain, verified, verification_token, created_at, verified_at, last_checked_at, agent_count)`.
    pub domains: Vec<DomainRecord>,
    pub agents: Vec<AgentRecord>,
    /// `(id, name, key_prefix, scope, agent_email, created_at, last_used_at, expires_at, revoked_at)`.
    pub api_keys: Vec<Value>,
    /// `(address, agent_email or "", source, reason, created_at)`.
    pub suppressions: Vec<Value>,
    /// Holds: the protection decisions taken on the account's mail.
    pub holds: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct DomainRecord {
    pub domain: String,
    pub verified: bool,
    pub verification_token: String,
    pub created_at: Timestamp,
    pub verified_at: Option<Timestamp>,
    pub last_checked_at: Option<Timestamp>,
    pub agent_count: i64,
}

#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub email: String,
    pub domain: String,
    pub name: String,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    pub domain_verified: bool,
    /// The protection configuration as stored (the contract's JSON), if set.
    pub protection: Option<Value>,
    pub inbound_7d: i64,
    pub outbound_7d: i64,
    pub pending: i64,
}

/// What an account deletion removed, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedAccount {
    pub messages: u64,
    pub agents: u64,
    pub domains: u64,
    pub api_keys: u64,
    pub sessions: u64,
    pub agent_suppressions: u64,
    pub suppressions: u64,
    pub events: u64,
    pub webhooks: u64,
    pub conversations: u64,
    pub jobs: u64,
}

#[async_trait]
pub trait AccountDataStore: Send + Sync {
    /// The account's records besides its messages (`since_7d` bounds the per-agent counts).
    async fn account_records(&self, account: &AccountId, since_7d: Timestamp) -> StoreResult<AccountRecords>;
    /// Up to `limit` of the account's messages after `after` (`(created_at, id)`), in that
    /// order, with their bodies and attachments.
    async fn export_messages(
        &self,
        account: &AccountId,
        after: Option<&(Timestamp, String)>,
        limit: i64,
    ) -> StoreResult<Vec<ExportedMessage>>;
    /// Deletes the account and everything that names it, in one transaction; `None` when
    /// there is no such account.
    async fn delete_account(&self, account: &AccountId) -> StoreResult<Option<DeletedAccount>>;
    /// Rows that still name the account, per table (empty after a deletion): the check an
    /// operator (and the tests) can run.
    async fn rows_naming(&self, account: &AccountId) -> StoreResult<Vec<(&'static str, i64)>>;
}

/// Every table with an `account_id` column.
const ACCOUNT_TABLES: &[&str] = &[
    "accounts",
    "api_keys",
    "domains",
    "agents",
    "conversations",
    "messages",
    "message_lifecycle",
    "events",
    "webhooks",
    "holds",
    "idempotency_keys",
    "suppressions",
    "soft_bounces",
    "console_logins",
    "console_sessions",
    "templates",
    "contacts",
    "contact_engagements",
    "lifecycle_daily",
    "message_daily",
];

#[async_trait]
impl AccountDataStore for SqlStore {
    async fn account_records(&self, account: &AccountId, since_7d: Timestamp) -> StoreResult<AccountRecords> {
        let id = account.as_str();
        let mut out = AccountRecords::default();
        let row = sqlx::query("SELECT id, email, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(out) };
        out.account = Some((
            AccountId::from_stored(row.try_get("id")?),
            row.try_get("email")?,
            ts(&row, "created_at")?,
        ));
        for r in sqlx::query(
            "SELECT d.domain, d.verified, d.verification_token, d.created_at, d.verified_at, d.last_checked_at,
                    (SELECT COUNT(*) FROM agents a WHERE a.domain = d.domain AND a.account_id = d.account_id
                      AND a.deleted_at IS NULL) AS agent_count
             FROM domains d WHERE d.account_id = $1 ORDER BY d.created_at, d.domain",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            out.domains.push(DomainRecord {
                domain: r.try_get("domain")?,
                verified: r.try_get::<i64, _>("verified")? != 0,
                verification_token: r.try_get("verification_token")?,
                created_at: ts(&r, "created_at")?,
                verified_at: opt_ts(&r, "verified_at")?,
                last_checked_at: opt_ts(&r, "last_checked_at")?,
                agent_count: r.try_get("agent_count")?,
            });
        }
        let mut recent: HashMap<(String, String), i64> = HashMap::new();
        for r in sqlx::query(
            "SELECT agent_email, direction, COUNT(*) AS n FROM messages
             WHERE account_id = $1 AND created_at >= $2 GROUP BY agent_email, direction",
        )
        .bind(id)
        .bind(since_7d.as_micros())
        .fetch_all(&self.pool)
        .await?
        {
            recent.insert((r.try_get("agent_email")?, r.try_get("direction")?), r.try_get("n")?);
        }
        let mut pending: HashMap<String, i64> = HashMap::new();
        for r in sqlx::query(
            "SELECT agent_email, COUNT(*) AS n FROM holds WHERE account_id = $1 AND state = 'pending' GROUP BY agent_email",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            pending.insert(r.try_get("agent_email")?, r.try_get("n")?);
        }
        for r in sqlx::query(
            "SELECT a.email, a.domain, a.name, a.created_at, a.deleted_at, d.verified AS domain_verified, p.config
             FROM agents a LEFT JOIN domains d ON d.domain = a.domain
             LEFT JOIN agent_protection p ON p.agent_email = a.email
             WHERE a.account_id = $1 ORDER BY a.created_at, a.email",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            let email: String = r.try_get("email")?;
            let config: Option<String> = r.try_get("config")?;
            let n = |k: &str| recent.get(&(email.clone(), k.to_owned())).copied().unwrap_or(0);
            out.agents.push(AgentRecord {
                domain: r.try_get("domain")?,
                name: r.try_get("name")?,
                created_at: ts(&r, "created_at")?,
                deleted_at: opt_ts(&r, "deleted_at")?,
                domain_verified: r.try_get::<Option<i64>, _>("domain_verified")?.unwrap_or(0) != 0,
                protection: config.and_then(|c| serde_json::from_str(&c).ok()),
                inbound_7d: n("inbound"),
                outbound_7d: n("outbound"),
                pending: pending.get(&email).copied().unwrap_or(0),
                email,
            });
        }
        for r in sqlx::query(
            "SELECT id, name, key_prefix, scope, agent_email, created_at, last_used_at, expires_at, revoked_at
             FROM api_keys WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            let mut k = json!({
                "id": r.try_get::<String, _>("id")?,
                "name": r.try_get::<String, _>("name")?,
                "key_prefix": r.try_get::<String, _>("key_prefix")?,
                "scope": r.try_get::<String, _>("scope")?,
                "created_at": ts(&r, "created_at")?,
            });
            for col in ["last_used_at", "expires_at", "revoked_at"] {
                if let Some(t) = opt_ts(&r, col)? {
                    k[col] = json!(t);
                }
            }
            if let Some(a) = r.try_get::<Option<String>, _>("agent_email")? {
                k["agent_email"] = a.into();
            }
            out.api_keys.push(k);
        }
        for r in sqlx::query(
            "SELECT address, agent_email, source, reason, created_at FROM suppressions
             WHERE account_id = $1 ORDER BY created_at, agent_email, address",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            let mut s = json!({
                "address": r.try_get::<String, _>("address")?,
                "source": r.try_get::<String, _>("source")?,
                "created_at": ts(&r, "created_at")?,
            });
            let agent: String = r.try_get("agent_email")?;
            if !agent.is_empty() {
                s["agent_email"] = agent.into();
            }
            if let Some(reason) = r.try_get::<Option<String>, _>("reason")? {
                s["reason"] = reason.into();
            }
            out.suppressions.push(s);
        }
        for r in sqlx::query(
            "SELECT message_id, agent_email, direction, reason, state, decided_by, reject_reason, created_at, decided_at
             FROM holds WHERE account_id = $1 ORDER BY created_at, message_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            let reason: String = r.try_get("reason")?;
            let mut h = json!({
                "message_id": r.try_get::<String, _>("message_id")?,
                "agent_email": r.try_get::<String, _>("agent_email")?,
                "direction": r.try_get::<String, _>("direction")?,
                "reason": serde_json::from_str::<Value>(&reason).unwrap_or(Value::Null),
                "state": r.try_get::<String, _>("state")?,
                "created_at": ts(&r, "created_at")?,
            });
            for col in ["decided_by", "reject_reason"] {
                if let Some(v) = r.try_get::<Option<String>, _>(col)? {
                    h[col] = v.into();
                }
            }
            if let Some(t) = opt_ts(&r, "decided_at")? {
                h["decided_at"] = json!(t);
            }
            out.holds.push(h);
        }
        Ok(out)
    }

    async fn export_messages(
        &self,
        account: &AccountId,
        after: Option<&(Timestamp, String)>,
        limit: i64,
    ) -> StoreResult<Vec<ExportedMessage>> {
        let (at, id) = after.map_or((i64::MIN, String::new()), |(t, i)| (t.as_micros(), i.clone()));
        // The page's ids and sizes first; bodies are then read for as many as fit in
        // EXPORT_PAGE_BYTES (at least one), so a page of large mail stays small in memory.
        let heads = sqlx::query(
            "SELECT id, size_bytes FROM messages
             WHERE account_id = $1 AND created_at >= $2 AND (created_at > $2 OR id > $3)
             ORDER BY created_at, id LIMIT $4",
        )
        .bind(account.as_str())
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut ids: Vec<String> = Vec::new();
        let mut bytes = 0i64;
        for r in &heads {
            let size: i64 = r.try_get("size_bytes")?;
            if !ids.is_empty() && bytes + size > EXPORT_PAGE_BYTES {
                break;
            }
            bytes += size;
            ids.push(r.try_get("id")?);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {MESSAGE_COLS}, raw_message, draft FROM messages WHERE id IN ({}) ORDER BY created_at, id",
            super::sql::placeholders(ids.len())
        );
        let mut q = sqlx::query(&sql);
        for i in &ids {
            q = q.bind(i.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut page = Vec::with_capacity(rows.len());
        for r in &rows {
            page.push(ExportedMessage {
                message: message(r)?,
                raw: r.try_get("raw_message")?,
                draft: r.try_get("draft")?,
                attachments: Vec::new(),
            });
        }
        if page.is_empty() {
            return Ok(page);
        }
        let sql = format!(
            "SELECT message_id, idx, filename, content_type, content_id, size_bytes FROM attachments
             WHERE message_id IN ({}) ORDER BY message_id, idx",
            super::sql::placeholders(page.len())
        );
        let mut q = sqlx::query(&sql);
        for m in &page {
            q = q.bind(m.message.id.as_str());
        }
        let mut files: HashMap<String, Vec<AttachmentMeta>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            files.entry(r.try_get("message_id")?).or_default().push(AttachmentMeta {
                index: r.try_get("idx")?,
                filename: r.try_get("filename")?,
                content_type: r.try_get("content_type")?,
                content_id: r.try_get("content_id")?,
                size_bytes: r.try_get("size_bytes")?,
            });
        }
        for m in &mut page {
            m.attachments = files.remove(&m.message.id).unwrap_or_default();
        }
        Ok(page)
    }

    async fn delete_account(&self, account: &AccountId) -> StoreResult<Option<DeletedAccount>> {
        let id = account.as_str();
        let mut tx = self.begin_write().await?;
        // The account row locked first (PostgreSQL): a concurrent write that names the account
        // through a foreign key waits for this transaction, then fails on the missing row.
        let lock = format!("SELECT email, reviewer_email FROM accounts WHERE id = $1{}", self.lock_rows());
        let row = sqlx::query(&lock).bind(id).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let email: String = row.try_get("email")?;
        let reviewer: Option<String> = row.try_get("reviewer_email")?;
        // Queued work first, while the rows it names can still be found.
        let jobs = sqlx::query(
            "DELETE FROM jobs WHERE
                (kind IN ('submit', 'review_notify') AND ref_id IN (SELECT id FROM messages WHERE account_id = $1))
             OR (kind = 'webhook' AND ref_id IN (SELECT d.id FROM webhook_deliveries d
                    JOIN webhooks w ON w.id = d.webhook_id WHERE w.account_id = $1))
             OR (kind = 'console_sign_in' AND ref_id IN (SELECT id FROM console_logins WHERE account_id = $1))",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut gone = DeletedAccount { jobs, ..DeletedAccount::default() };
        del(&mut tx, id, "DELETE FROM message_lifecycle WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM lifecycle_daily WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM message_daily WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM templates WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM contact_engagements WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM contacts WHERE account_id = $1").await?;
        gone.messages = del(&mut tx, id, "DELETE FROM messages WHERE account_id = $1").await?;
        gone.conversations = del(&mut tx, id, "DELETE FROM conversations WHERE account_id = $1").await?;
        gone.events = del(&mut tx, id, "DELETE FROM events WHERE account_id = $1").await?;
        gone.webhooks = del(&mut tx, id, "DELETE FROM webhooks WHERE account_id = $1").await?;
        gone.agent_suppressions =
            del(&mut tx, id, "DELETE FROM suppressions WHERE account_id = $1 AND agent_email <> ''").await?;
        gone.suppressions = del(&mut tx, id, "DELETE FROM suppressions WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM soft_bounces WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM holds WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM idempotency_keys WHERE account_id = $1").await?;
        gone.sessions = del(&mut tx, id, "DELETE FROM console_sessions WHERE account_id = $1").await?;
        del(&mut tx, id, "DELETE FROM console_logins WHERE account_id = $1").await?;
        // Agent protection goes with its agent (ON DELETE CASCADE).
        gone.agents = del(&mut tx, id, "DELETE FROM agents WHERE account_id = $1").await?;
        gone.domains = del(&mut tx, id, "DELETE FROM domains WHERE account_id = $1").await?;
        gone.api_keys = del(&mut tx, id, "DELETE FROM api_keys WHERE account_id = $1").await?;
        // Rate windows name the account (`poll:<id>`, `agent_creation:<id>`, `recipients:<id>`,
        // `send:<id>:<agent>`) or its addresses (`console-login:<email>`): matched exactly.
        let (sql, binds) = rate_windows(id, &email, reviewer.as_deref());
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        q.execute(&mut *tx).await?;
        del(&mut tx, id, "DELETE FROM accounts WHERE id = $1").await?;
        tx.commit().await?;
        self.directory_changed().await;
        Ok(Some(gone))
    }

    async fn rows_naming(&self, account: &AccountId) -> StoreResult<Vec<(&'static str, i64)>> {
        let id = account.as_str();
        let mut left = Vec::new();
        for table in ACCOUNT_TABLES {
            let column = if *table == "accounts" { "id" } else { "account_id" };
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = $1");
            let n: i64 = sqlx::query(&sql).bind(id).fetch_one(&self.pool).await?.try_get("n")?;
            if n > 0 {
                left.push((*table, n));
            }
        }
        let email: Option<String> = sqlx::query("SELECT email FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("email"))
            .transpose()?;
        let (sql, binds) = rate_windows(id, email.as_deref().unwrap_or(""), None);
        let count = sql.replacen("DELETE FROM rate_limits", "SELECT COUNT(*) AS n FROM rate_limits", 1);
        let mut q = sqlx::query(&count);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let n: i64 = q.fetch_one(&self.pool).await?.try_get("n")?;
        if n > 0 {
            left.push(("rate_limits", n));
        }
        Ok(left)
    }
}

/// `sql` (a `DELETE … WHERE account_id = $1`) for the account; rows removed.
async fn del(tx: &mut super::sql::WriteTx, id: &str, sql: &str) -> StoreResult<u64> {
    Ok(sqlx::query(sql).bind(id).execute(&mut **tx).await?.rows_affected())
}

/// The statement deleting an account's rate windows, exactly: its own buckets by name, its
/// agents' send buckets by prefix (the id escaped for LIKE), its addresses' sign-in buckets.
fn rate_windows(id: &str, email: &str, reviewer: Option<&str>) -> (String, Vec<String>) {
    let escaped: String = id
        .chars()
        .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
        .collect();
    let binds = vec![
        format!("poll:{id}"),
        format!("agent_creation:{id}"),
        format!("recipients:{id}"),
        format!("console-login:{email}"),
        format!("console-login:{}", reviewer.unwrap_or(email)),
        format!("send:{escaped}:%"),
    ];
    (
        "DELETE FROM rate_limits WHERE bucket IN ($1, $2, $3, $4, $5) OR bucket LIKE $6 ESCAPE '\\'"
            .to_owned(),
        binds,
    )
}
