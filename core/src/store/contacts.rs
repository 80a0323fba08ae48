//! Contacts (beta): the people an account corresponds with, keyed by canonical address, with
//! caller-owned metadata; bulk imports that can be reversed while untouched. One agent's
//! outreach with a contact lives in [`super::engagements`].

use super::sql::{opt_ts, ts};
use super::{After, PageQuery, SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored caller-owned JSON object (contact or outreach metadata) for the wire: `{}` if the
/// text is not one, so a view never carries null where the contract wants an object.
pub fn stored_object(text: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}))
}

/// Contacts per account.
pub const MAX_CONTACTS: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub account_id: AccountId,
    /// Canonical: bare and lowercase.
    pub address: String,
    pub display_name: String,
    /// A flat JSON object, as the caller gave it.
    pub metadata: String,
    /// `manual`, `import` or `inbound`.
    pub source: String,
    pub import_batch_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Narrows a contacts listing.
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub source: Option<String>,
    pub import_batch_id: Option<String>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
}

/// What an import does with an address the account already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Refresh the name (when given) and the metadata (when given).
    Merge,
    Skip,
}

/// One valid row of an import.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub address: String,
    pub display_name: Option<String>,
    pub metadata: Option<String>,
}

/// How one row of an import went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Created,
    Updated,
    /// Already there and `on_conflict: skip`.
    Skipped,
    LimitReached,
}

/// An import of valid rows, with the optional outreach enrolment of each.
#[derive(Debug, Clone)]
pub struct Import {
    pub account_id: AccountId,
    pub batch_id: String,
    pub rows: Vec<ImportRow>,
    pub on_conflict: OnConflict,
    /// `(agent, stage)`: enrol every row in this agent's outreach.
    pub enrol: Option<(String, String)>,
    pub at: Timestamp,
}

/// What reversing an import removed and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReversal {
    pub contacts_deleted: u64,
    pub contacts_retained: u64,
    pub engagements_deleted: u64,
}

pub(super) const CONTACT_COLS: &str =
    "account_id, address, display_name, metadata, source, import_batch_id, created_at, updated_at";

pub(super) fn contact(row: &AnyRow) -> StoreResult<Contact> {
    Ok(Contact {
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        address: row.try_get("address")?,
        display_name: row.try_get("display_name")?,
        metadata: row.try_get("metadata")?,
        source: row.try_get("source")?,
        import_batch_id: row.try_get("import_batch_id")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

#[async_trait]
pub trait ContactStore: Send + Sync {
    async fn list_contacts(
        &self,
        account: &AccountId,
        filter: &ContactFilter,
        page: &PageQuery,
    ) -> StoreResult<Vec<Contact>>;
    async fn get_contact(&self, account: &AccountId, address: &str) -> StoreResult<Option<Contact>>;
    /// `Ok(false)` when the account has the address already; `LimitReached` as a
    /// [`super::StoreError::Precondition`].
    async fn insert_contact(&self, c: &Contact) -> StoreResult<bool>;
    /// Replaces the name and/or metadata while the row is still at `expected` (its
    /// `updated_at`, when the caller sent `If-Match`). `None`: not found; `Some(false)`: stale.
    async fn update_contact(
        &self,
        account: &AccountId,
        address: &str,
        display_name: Option<&str>,
        metadata: Option<&str>,
        expected: Option<Timestamp>,
        at: Timestamp,
    ) -> StoreResult<Option<bool>>;
    async fn delete_contact(&self, account: &AccountId, address: &str) -> StoreResult<bool>;
    /// All rows in one transaction; one outcome per row, in order.
    async fn import_contacts(&self, import: &Import) -> StoreResult<Vec<(ImportOutcome, bool)>>;
    /// Removes what the batch created and nobody touched since; `None` when the account has
    /// no such batch.
    async fn reverse_import(
        &self,
        account: &AccountId,
        batch_id: &str,
    ) -> StoreResult<Option<ImportReversal>>;
}

pub(super) async fn count_contacts(conn: &mut sqlx::AnyConnection, account: &AccountId) -> StoreResult<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM contacts WHERE account_id = $1")
        .bind(account.as_str())
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?)
}

pub(super) async fn insert_row(conn: &mut sqlx::AnyConnection, c: &Contact) -> StoreResult<()> {
    sqlx::query(&format!("INSERT INTO contacts ({CONTACT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
        .bind(c.account_id.as_str())
        .bind(c.address.as_str())
        .bind(c.display_name.as_str())
        .bind(c.metadata.as_str())
        .bind(c.source.as_str())
        .bind(c.import_batch_id.as_deref())
        .bind(c.created_at.as_micros())
        .bind(c.updated_at.as_micros())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Enrols `address` with `agent` unless it already is; `true` when this created it.
pub(super) async fn enrol(
    conn: &mut sqlx::AnyConnection,
    account: &AccountId,
    agent: &str,
    address: &str,
    stage: &str,
    batch: Option<&str>,
    at: Timestamp,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO contact_engagements (account_id, agent_email, address, stage, import_batch_id, created_at,
             updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (agent_email, address) DO NOTHING",
    )
    .bind(account.as_str())
    .bind(agent)
    .bind(address)
    .bind(stage)
    .bind(batch)
    .bind(at.as_micros())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl ContactStore for SqlStore {
    async fn list_contacts(
        &self,
        account: &AccountId,
        filter: &ContactFilter,
        page: &PageQuery,
    ) -> StoreResult<Vec<Contact>> {
        let mut sql = format!("SELECT {CONTACT_COLS} FROM contacts WHERE account_id = $1");
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        let mut binds: Vec<Result<String, i64>> = Vec::new();
        if let Some(s) = &filter.source {
            sql += &format!(" AND source = ${}", next());
            binds.push(Ok(s.clone()));
        }
        if let Some(b) = &filter.import_batch_id {
            sql += &format!(" AND import_batch_id = ${}", next());
            binds.push(Ok(b.clone()));
        }
        if let Some(t) = filter.created_after {
            sql += &format!(" AND created_at > ${}", next());
            binds.push(Err(t.as_micros()));
        }
        if let Some(t) = filter.created_before {
            sql += &format!(" AND created_at < ${}", next());
            binds.push(Err(t.as_micros()));
        }
        if let Some(After { created_at, key }) = &page.after {
            let (c, k) = (next(), next());
            sql += &format!(" AND (created_at < ${c} OR (created_at = ${c} AND address < ${k}))");
            binds.push(Err(created_at.as_micros()));
            binds.push(Ok(key.clone()));
        }
        sql += &format!(" ORDER BY created_at DESC, address DESC LIMIT ${}", next());
        let mut q = sqlx::query(&sql).bind(account.as_str());
        for b in binds {
            q = match b {
                Ok(s) => q.bind(s),
                Err(i) => q.bind(i),
            };
        }
        q = q.bind(i64::from(page.limit) + 1);
        q.fetch_all(&self.pool).await?.iter().map(contact).collect()
    }

    async fn get_contact(&self, account: &AccountId, address: &str) -> StoreResult<Option<Contact>> {
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE account_id = $1 AND address = $2"
        ))
        .bind(account.as_str())
        .bind(address)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(contact).transpose()
    }

    async fn insert_contact(&self, c: &Contact) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, &c.account_id).await?;
        let exists = sqlx::query("SELECT address FROM contacts WHERE account_id = $1 AND address = $2")
            .bind(c.account_id.as_str())
            .bind(c.address.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        if count_contacts(&mut tx, &c.account_id).await? >= MAX_CONTACTS {
            return Err(super::StoreError::Precondition("contact_limit_reached"));
        }
        insert_row(&mut tx, c).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn update_contact(
        &self,
        account: &AccountId,
        address: &str,
        display_name: Option<&str>,
        metadata: Option<&str>,
        expected: Option<Timestamp>,
        at: Timestamp,
    ) -> StoreResult<Option<bool>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT updated_at FROM contacts WHERE account_id = $1 AND address = $2{}",
            self.lock_rows()
        );
        let Some(row) =
            sqlx::query(&sql).bind(account.as_str()).bind(address).fetch_optional(&mut *tx).await?
        else {
            return Ok(None);
        };
        if expected.is_some_and(|e| Some(e) != opt_ts(&row, "updated_at").ok().flatten()) {
            return Ok(Some(false));
        }
        sqlx::query(
            "UPDATE contacts SET display_name = COALESCE($3, display_name), metadata = COALESCE($4, metadata),
                 edited = 1, updated_at = $5
             WHERE account_id = $1 AND address = $2",
        )
        .bind(account.as_str())
        .bind(address)
        .bind(display_name)
        .bind(metadata)
        .bind(at.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    async fn delete_contact(&self, account: &AccountId, address: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM contacts WHERE account_id = $1 AND address = $2")
            .bind(account.as_str())
            .bind(address)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn import_contacts(&self, import: &Import) -> StoreResult<Vec<(ImportOutcome, bool)>> {
        let account = &import.account_id;
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, account).await?;
        let mut count = count_contacts(&mut tx, account).await?;
        let mut out = Vec::with_capacity(import.rows.len());
        for r in &import.rows {
            let existing = sqlx::query("SELECT address FROM contacts WHERE account_id = $1 AND address = $2")
                .bind(account.as_str())
                .bind(r.address.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = match (existing, import.on_conflict) {
                (Some(_), OnConflict::Skip) => ImportOutcome::Skipped,
                (Some(_), OnConflict::Merge) => {
                    sqlx::query(
                        "UPDATE contacts SET display_name = COALESCE($3, display_name),
                             metadata = COALESCE($4, metadata), edited = 1, updated_at = $5
                         WHERE account_id = $1 AND address = $2",
                    )
                    .bind(account.as_str())
                    .bind(r.address.as_str())
                    .bind(r.display_name.as_deref())
                    .bind(r.metadata.as_deref())
                    .bind(import.at.as_micros())
                    .execute(&mut *tx)
                    .await?;
                    ImportOutcome::Updated
                }
                (None, _) if count >= MAX_CONTACTS => ImportOutcome::LimitReached,
                (None, _) => {
                    count += 1;
                    let c = Contact {
                        account_id: account.clone(),
                        address: r.address.clone(),
                        display_name: r.display_name.clone().unwrap_or_default(),
                        metadata: r.metadata.clone().unwrap_or_else(|| "{}".into()),
                        source: "import".into(),
                        import_batch_id: Some(import.batch_id.clone()),
                        created_at: import.at,
                        updated_at: import.at,
                    };
                    insert_row(&mut tx, &c).await?;
                    ImportOutcome::Created
                }
            };
            let enrolled = match (&import.enrol, outcome) {
                (_, ImportOutcome::LimitReached) | (None, _) => false,
                (Some((agent, stage)), _) => {
                    enrol(&mut tx, account, agent, &r.address, stage, Some(&import.batch_id), import.at)
                        .await?
                }
            };
            out.push((outcome, enrolled));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn reverse_import(
        &self,
        account: &AccountId,
        batch_id: &str,
    ) -> StoreResult<Option<ImportReversal>> {
        let mut tx = self.begin_write().await?;
        let q = |sql: &'static str| sqlx::query(sql).bind(account.as_str()).bind(batch_id);
        let contacts: i64 =
            q("SELECT COUNT(*) AS n FROM contacts WHERE account_id = $1 AND import_batch_id = $2")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let engagements: i64 =
            q("SELECT COUNT(*) AS n FROM contact_engagements WHERE account_id = $1 AND import_batch_id = $2")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if contacts == 0 && engagements == 0 {
            return Ok(None);
        }
        // An enrolment survives once edited; a contact survives once edited, while it is
        // enrolled anywhere, or once mail went either way with it.
        let engagements_deleted = q(
            "DELETE FROM contact_engagements WHERE account_id = $1 AND import_batch_id = $2 AND edited = 0",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let contacts_deleted = q(
            "DELETE FROM contacts WHERE account_id = $1 AND import_batch_id = $2 AND edited = 0
               AND NOT EXISTS (SELECT 1 FROM contact_engagements e
                               WHERE e.account_id = contacts.account_id AND e.address = contacts.address)
               AND NOT EXISTS (SELECT 1 FROM messages m
                               WHERE m.account_id = contacts.account_id AND m.created_at >= contacts.created_at
                                 AND (LOWER(m.header_from) = contacts.address
                                      OR m.to_addrs LIKE '%\"' || REPLACE(REPLACE(REPLACE(contacts.address,
                                             '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '\"%' ESCAPE '\\'))",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Some(ImportReversal {
            contacts_deleted,
            contacts_retained: u64::try_from(contacts).unwrap_or(0).saturating_sub(contacts_deleted),
            engagements_deleted,
        }))
    }
}
