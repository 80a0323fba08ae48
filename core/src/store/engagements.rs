//! One agent's outreach with a contact (beta): the caller's stage, metadata and next action,
//! and what the store derives from real mail on every read (first and last outbound, last
//! inbound, counts, whether the contact replied, whether a suppression blocks it), so the
//! facts can never drift from the messages they come from.

use super::contacts::{Contact, MAX_CONTACTS, count_contacts, enrol, insert_row};
use super::sql::{opt_ts, ts};
use super::{After, PageQuery, SqlStore, StoreError, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engagement {
    pub account_id: AccountId,
    pub agent_email: String,
    pub address: String,
    pub stage: String,
    pub metadata: String,
    pub next_action_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub contact_name: String,
    pub contact_metadata: String,
    pub first_outbound_at: Option<Timestamp>,
    pub last_outbound_at: Option<Timestamp>,
    pub outbound_count: i64,
    pub last_inbound_at: Option<Timestamp>,
    pub inbound_count: i64,
    pub last_conversation_id: Option<String>,
    pub suppression_source: Option<String>,
    pub suppression_reason: Option<String>,
}

impl Engagement {
    /// The contact answered after this agent first wrote.
    pub fn replied(&self) -> bool {
        matches!((self.last_inbound_at, self.first_outbound_at), (Some(i), Some(o)) if i > o)
    }
}

/// Narrows an outreach listing.
#[derive(Debug, Clone, Default)]
pub struct EngagementFilter {
    pub stage: Option<String>,
    pub replied: Option<bool>,
    pub suppressed: Option<bool>,
    pub next_action_before: Option<Timestamp>,
    pub last_outbound_before: Option<Timestamp>,
}

/// An enrolment or an update of its caller-owned fields.
#[derive(Debug, Clone)]
pub struct EngagementWrite {
    pub account_id: AccountId,
    pub agent_email: String,
    pub address: String,
    pub stage: Option<String>,
    pub metadata: Option<String>,
    /// `Some(None)` clears the schedule.
    pub next_action_at: Option<Option<Timestamp>>,
    /// `If-Match`: `Some(None)` is `*` (any existing row), `Some(Some(t))` that version.
    pub expected: Option<Option<Timestamp>>,
    pub at: Timestamp,
}

/// How an upsert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    /// `If-Match` did not hold.
    Stale,
}

/// Mail between the agent and the contact since the enrolment: outbound that left (sent or
/// bounced) to it, inbound from it that DMARC verified and the inbox received.
const OUT: &str = "FROM messages m WHERE m.agent_email = e.agent_email AND m.direction = 'outbound'
       AND m.status IN ('sent', 'bounced') AND m.created_at >= e.created_at
       AND (m.to_addrs LIKE e.quoted ESCAPE '\\' OR m.cc_addrs LIKE e.quoted ESCAPE '\\')";
const IN: &str = "FROM messages m WHERE m.agent_email = e.agent_email AND m.direction = 'inbound'
       AND m.status = 'received' AND m.verified_domain IS NOT NULL AND m.created_at >= e.created_at
       AND LOWER(m.header_from) = e.address";
const SUPPRESSION: &str = "FROM suppressions s WHERE s.account_id = e.account_id AND s.address = e.address
       AND (s.agent_email = '' OR s.agent_email = e.agent_email) ORDER BY s.agent_email LIMIT 1";

fn select(page: &str) -> String {
    let enrolments = ENROLMENTS.replace("{page}", page);
    format!(
        "SELECT e.account_id, e.agent_email, e.address, e.stage, e.metadata, e.next_action_at, e.created_at,
             e.updated_at, COALESCE(c.display_name, '') AS contact_name,
             COALESCE(c.metadata, '{{}}') AS contact_metadata,
             (SELECT MIN(m.created_at) {OUT}) AS first_outbound_at,
             (SELECT MAX(m.created_at) {OUT}) AS last_outbound_at,
             (SELECT COUNT(*) {OUT}) AS outbound_count,
             (SELECT MAX(m.created_at) {IN}) AS last_inbound_at,
             (SELECT COUNT(*) {IN}) AS inbound_count,
             (SELECT m.conversation_id FROM messages m WHERE m.agent_email = e.agent_email
                AND m.conversation_id IS NOT NULL AND m.conversation_id <> ''
                AND ((m.direction = 'inbound' AND m.status = 'received' AND LOWER(m.header_from) = e.address)
                     OR (m.direction = 'outbound' AND m.to_addrs LIKE e.quoted ESCAPE '\\'))
                ORDER BY m.created_at DESC LIMIT 1) AS last_conversation_id,
             (SELECT s.source {SUPPRESSION}) AS suppression_source,
             (SELECT s.reason {SUPPRESSION}) AS suppression_reason
         FROM ({enrolments}) e
         LEFT JOIN contacts c ON c.account_id = e.account_id AND c.address = e.address"
    )
}

/// The agent's enrolments, each with its address as a `LIKE` pattern matching it quoted in
/// a stored JSON address list, wildcards escaped (`_` and `%` are legal in local parts).
/// `{page}` narrows them before any of the per-row subqueries run.
const ENROLMENTS: &str = "SELECT e.*, '%\"' || REPLACE(REPLACE(REPLACE(e.address, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '\"%' AS quoted
         FROM contact_engagements e WHERE e.agent_email = $1 {page}";

fn engagement(row: &AnyRow) -> StoreResult<Engagement> {
    Ok(Engagement {
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        agent_email: row.try_get("agent_email")?,
        address: row.try_get("address")?,
        stage: row.try_get("stage")?,
        metadata: row.try_get("metadata")?,
        next_action_at: opt_ts(row, "next_action_at")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        contact_name: row.try_get("contact_name")?,
        contact_metadata: row.try_get("contact_metadata")?,
        first_outbound_at: opt_ts(row, "first_outbound_at")?,
        last_outbound_at: opt_ts(row, "last_outbound_at")?,
        outbound_count: row.try_get("outbound_count")?,
        last_inbound_at: opt_ts(row, "last_inbound_at")?,
        inbound_count: row.try_get("inbound_count")?,
        last_conversation_id: row.try_get("last_conversation_id")?,
        suppression_source: row.try_get("suppression_source")?,
        suppression_reason: row.try_get("suppression_reason")?,
    })
}

#[async_trait]
pub trait EngagementStore: Send + Sync {
    async fn list_engagements(
        &self,
        agent: &str,
        filter: &EngagementFilter,
        page: &PageQuery,
    ) -> StoreResult<Vec<Engagement>>;
    async fn get_engagement(&self, agent: &str, address: &str) -> StoreResult<Option<Engagement>>;
    /// Enrols (creating the contact when the account has none) or updates.
    async fn upsert_engagement(&self, w: &EngagementWrite) -> StoreResult<Upserted>;
    async fn delete_engagement(&self, agent: &str, address: &str) -> StoreResult<bool>;
}

#[async_trait]
impl EngagementStore for SqlStore {
    async fn list_engagements(
        &self,
        agent: &str,
        filter: &EngagementFilter,
        page: &PageQuery,
    ) -> StoreResult<Vec<Engagement>> {
        let mut binds: Vec<Result<String, i64>> = Vec::new();
        let hole = |v: Result<String, i64>, binds: &mut Vec<_>| {
            binds.push(v);
            format!("${}", binds.len() + 1)
        };
        // Filters on stored columns narrow the enrolments before the per-row subqueries run;
        // without a filter on a derived fact, so do the cursor and the page's limit.
        let mut inner = String::new();
        if let Some(st) = &filter.stage {
            inner += &format!(" AND e.stage = {}", hole(Ok(st.clone()), &mut binds));
        }
        if let Some(t) = filter.next_action_before {
            let h = hole(Err(t.as_micros()), &mut binds);
            inner += &format!(" AND e.next_action_at IS NOT NULL AND e.next_action_at < {h}");
        }
        let derived =
            filter.replied.is_some() || filter.suppressed.is_some() || filter.last_outbound_before.is_some();
        let mut outer = String::new();
        let position = |binds: &mut Vec<_>, t: &str| match &page.after {
            Some(After { created_at, key }) => {
                let c = hole(Err(created_at.as_micros()), binds);
                let k = hole(Ok(key.clone()), binds);
                format!(" AND ({t}.created_at < {c} OR ({t}.created_at = {c} AND {t}.address < {k}))")
            }
            None => String::new(),
        };
        let replied = "(x.first_outbound_at IS NOT NULL AND x.last_inbound_at IS NOT NULL
                        AND x.last_inbound_at > x.first_outbound_at)";
        if derived {
            match filter.replied {
                Some(true) => outer += &format!(" AND {replied}"),
                Some(false) => outer += &format!(" AND NOT {replied}"),
                None => {}
            }
            match filter.suppressed {
                Some(true) => outer += " AND x.suppression_source IS NOT NULL",
                Some(false) => outer += " AND x.suppression_source IS NULL",
                None => {}
            }
            if let Some(t) = filter.last_outbound_before {
                let h = hole(Err(t.as_micros()), &mut binds);
                outer += &format!(" AND (x.last_outbound_at IS NULL OR x.last_outbound_at < {h})");
            }
            outer += &position(&mut binds, "x");
        } else {
            inner += &position(&mut binds, "e");
            let l = hole(Err(i64::from(page.limit) + 1), &mut binds);
            inner += &format!(" ORDER BY e.created_at DESC, e.address DESC LIMIT {l}");
        }
        let l = hole(Err(i64::from(page.limit) + 1), &mut binds);
        let sql = format!(
            "SELECT * FROM ({}) x WHERE 1 = 1{outer} ORDER BY x.created_at DESC, x.address DESC LIMIT {l}",
            select(&inner)
        );
        let mut q = sqlx::query(&sql).bind(agent);
        for b in binds {
            q = match b {
                Ok(s) => q.bind(s),
                Err(i) => q.bind(i),
            };
        }
        q.fetch_all(&self.pool).await?.iter().map(engagement).collect()
    }

    async fn get_engagement(&self, agent: &str, address: &str) -> StoreResult<Option<Engagement>> {
        let sql = select(" AND e.address = $2");
        let row = sqlx::query(&sql).bind(agent).bind(address).fetch_optional(&self.pool).await?;
        row.as_ref().map(engagement).transpose()
    }

    async fn upsert_engagement(&self, w: &EngagementWrite) -> StoreResult<Upserted> {
        let mut tx = self.begin_write().await?;
        self.lock_account(&mut tx, &w.account_id).await?;
        let current =
            sqlx::query("SELECT updated_at FROM contact_engagements WHERE agent_email = $1 AND address = $2")
                .bind(w.agent_email.as_str())
                .bind(w.address.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let version = current.as_ref().map(|r| ts(r, "updated_at")).transpose()?;
        match (&w.expected, version) {
            (Some(_), None) => return Ok(Upserted::Stale),
            (Some(Some(want)), Some(have)) if *want != have => return Ok(Upserted::Stale),
            _ => {}
        }
        let created = version.is_none();
        if created {
            let has_contact =
                sqlx::query("SELECT address FROM contacts WHERE account_id = $1 AND address = $2")
                    .bind(w.account_id.as_str())
                    .bind(w.address.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            if !has_contact {
                if count_contacts(&mut tx, &w.account_id).await? >= MAX_CONTACTS {
                    return Err(StoreError::Precondition("contact_limit_reached"));
                }
                let c = Contact {
                    account_id: w.account_id.clone(),
                    address: w.address.clone(),
                    display_name: String::new(),
                    metadata: "{}".into(),
                    source: "manual".into(),
                    import_batch_id: None,
                    created_at: w.at,
                    updated_at: w.at,
                };
                insert_row(&mut tx, &c).await?;
            }
            enrol(&mut tx, &w.account_id, &w.agent_email, &w.address, "", None, w.at).await?;
        }
        let (set_next, next) = match w.next_action_at {
            Some(v) => (1_i64, v.map(Timestamp::as_micros)),
            None => (0, None),
        };
        sqlx::query(
            "UPDATE contact_engagements SET stage = COALESCE($3, stage), metadata = COALESCE($4, metadata),
                 next_action_at = CASE WHEN $5 = 1 THEN $6 ELSE next_action_at END,
                 edited = CASE WHEN $7 = 1 THEN edited ELSE 1 END, updated_at = $8
             WHERE agent_email = $1 AND address = $2",
        )
        .bind(w.agent_email.as_str())
        .bind(w.address.as_str())
        .bind(w.stage.as_deref())
        .bind(w.metadata.as_deref())
        .bind(set_next)
        .bind(next)
        .bind(i64::from(created))
        .bind(w.at.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if created { Upserted::Created } else { Upserted::Updated })
    }

    async fn delete_engagement(&self, agent: &str, address: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM contact_engagements WHERE agent_email = $1 AND address = $2")
            .bind(agent)
            .bind(address)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
