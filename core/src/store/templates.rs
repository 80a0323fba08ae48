//! Stored templates ([`crate::template`]): an account's, newest first, each alias unique within
//! the account, at most [`MAX_TEMPLATES`] of them.

use super::sql::ts;
use super::{After, PageQuery, SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Templates per account: far beyond any real catalog, small enough that a hostile key cannot
/// fill the database with them.
pub const MAX_TEMPLATES: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub id: String,
    pub account_id: AccountId,
    pub alias: Option<String>,
    pub name: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub from_starter_alias: Option<String>,
    pub from_starter_version: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Why a template write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateWrite {
    Done,
    AliasTaken,
    LimitReached,
    NotFound,
}

const COLS: &str = "id, account_id, alias, name, subject, text_body, html_body, from_starter_alias, \
     from_starter_version, created_at, updated_at";

fn template(row: &AnyRow) -> StoreResult<StoredTemplate> {
    Ok(StoredTemplate {
        id: row.try_get("id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        alias: row.try_get("alias")?,
        name: row.try_get("name")?,
        subject: row.try_get("subject")?,
        text: row.try_get("text_body")?,
        html: row.try_get("html_body")?,
        from_starter_alias: row.try_get("from_starter_alias")?,
        from_starter_version: row.try_get("from_starter_version")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

#[async_trait]
pub trait TemplateStore: Send + Sync {
    async fn list_templates(&self, account: &AccountId, page: &PageQuery)
    -> StoreResult<Vec<StoredTemplate>>;
    async fn get_template(&self, account: &AccountId, id: &str) -> StoreResult<Option<StoredTemplate>>;
    async fn template_by_alias(
        &self,
        account: &AccountId,
        alias: &str,
    ) -> StoreResult<Option<StoredTemplate>>;
    async fn create_template(&self, t: &StoredTemplate) -> StoreResult<TemplateWrite>;
    /// Writes every field of `t` (its id and account name the row).
    async fn update_template(&self, t: &StoredTemplate) -> StoreResult<TemplateWrite>;
    async fn delete_template(&self, account: &AccountId, id: &str) -> StoreResult<bool>;
}

async fn alias_taken(conn: &mut sqlx::AnyConnection, t: &StoredTemplate) -> StoreResult<bool> {
    let Some(alias) = &t.alias else { return Ok(false) };
    let row = sqlx::query("SELECT id FROM templates WHERE account_id = $1 AND alias = $2 AND id <> $3")
        .bind(t.account_id.as_str())
        .bind(alias.as_str())
        .bind(t.id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

#[async_trait]
impl TemplateStore for SqlStore {
    async fn list_templates(
        &self,
        account: &AccountId,
        page: &PageQuery,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let after =
            if page.after.is_some() { "AND (created_at < $3 OR (created_at = $3 AND id < $4))" } else { "" };
        let sql = format!(
            "SELECT {COLS} FROM templates WHERE account_id = $1 {after} ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let mut q = sqlx::query(&sql).bind(account.as_str()).bind(i64::from(page.limit) + 1);
        if let Some(After { created_at, key }) = &page.after {
            q = q.bind(created_at.as_micros()).bind(key.as_str());
        }
        q.fetch_all(&self.pool).await?.iter().map(template).collect()
    }

    async fn get_template(&self, account: &AccountId, id: &str) -> StoreResult<Option<StoredTemplate>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM templates WHERE account_id = $1 AND id = $2"))
            .bind(account.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(template).transpose()
    }

    async fn template_by_alias(
        &self,
        account: &AccountId,
        alias: &str,
    ) -> StoreResult<Option<StoredTemplate>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM templates WHERE account_id = $1 AND alias = $2"))
            .bind(account.as_str())
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(template).transpose()
    }

    async fn create_template(&self, t: &StoredTemplate) -> StoreResult<TemplateWrite> {
        let mut tx = self.begin_write().await?;
        // The account row is the lock both the count and the alias check run under.
        self.lock_account(&mut tx, &t.account_id).await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM templates WHERE account_id = $1")
            .bind(t.account_id.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if n >= MAX_TEMPLATES {
            return Ok(TemplateWrite::LimitReached);
        }
        if alias_taken(&mut tx, t).await? {
            return Ok(TemplateWrite::AliasTaken);
        }
        sqlx::query(&format!(
            "INSERT INTO templates ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(t.id.as_str())
        .bind(t.account_id.as_str())
        .bind(t.alias.as_deref())
        .bind(t.name.as_str())
        .bind(t.subject.as_str())
        .bind(t.text.as_str())
        .bind(t.html.as_deref())
        .bind(t.from_starter_alias.as_deref())
        .bind(t.from_starter_version.as_deref())
        .bind(t.created_at.as_micros())
        .bind(t.updated_at.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TemplateWrite::Done)
    }

    async fn update_template(&self, t: &StoredTemplate) -> StoreResult<TemplateWrite> {
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, &t.account_id).await?;
        if alias_taken(&mut tx, t).await? {
            return Ok(TemplateWrite::AliasTaken);
        }
        let done = sqlx::query(
            "UPDATE templates SET alias = $3, name = $4, subject = $5, text_body = $6, html_body = $7,
                 updated_at = $8
             WHERE account_id = $1 AND id = $2",
        )
        .bind(t.account_id.as_str())
        .bind(t.id.as_str())
        .bind(t.alias.as_deref())
        .bind(t.name.as_str())
        .bind(t.subject.as_str())
        .bind(t.text.as_str())
        .bind(t.html.as_deref())
        .bind(t.updated_at.as_micros())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(TemplateWrite::NotFound);
        }
        tx.commit().await?;
        Ok(TemplateWrite::Done)
    }

    async fn delete_template(&self, account: &AccountId, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM templates WHERE account_id = $1 AND id = $2")
            .bind(account.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
