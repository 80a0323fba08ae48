//! Aggregates for the metrics endpoints: a cohort of messages (those created in a window)
//! counted by the lifecycle reasons they reached, read from the ledger's covering indexes
//! (one grouped scan each, whatever the window holds), and the webhook deliveries made in
//! the window.

use super::{SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::{DAY_MICROS, Timestamp};
use async_trait::async_trait;
use sqlx::Row;

/// Whose messages.
#[derive(Debug, Clone, Copy)]
pub enum Cohort<'a> {
    Account(&'a AccountId),
    Agent(&'a str),
}

/// How rows are split besides by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    None,
    /// By agent (account cohorts only).
    Agent,
    /// By the UTC day the message was made (days since the epoch).
    Day,
}

/// One reason's count in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCount {
    /// The agent or the day, per [`Split`]; empty for [`Split::None`].
    pub group: String,
    pub reason: String,
    /// Ledger rows (a retried step counts each try).
    pub observations: i64,
    /// Distinct messages.
    pub messages: i64,
}

/// Messages of a group: made in the window, and those of them with a ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSize {
    pub group: String,
    pub messages: i64,
    pub with_lifecycle: i64,
}

/// One webhook's deliveries in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCounts {
    pub webhook_id: String,
    pub url: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<Timestamp>,
    pub delivered: i64,
    pub pending: i64,
    /// Failed with an HTTP answer.
    pub rejected: i64,
    /// Failed without one (connect, DNS, TLS, timeout, refused URL).
    pub no_response: i64,
    pub last_status_code: Option<i64>,
}

fn cohort_sql(c: Cohort<'_>, ledger: bool) -> (&'static str, String) {
    match (c, ledger) {
        (Cohort::Account(a), _) => ("account_id = $1", a.as_str().to_owned()),
        (Cohort::Agent(e), true) => ("agent_email = $1", e.to_owned()),
        // The agent index leads with direction: name both, so the scan stays on it.
        (Cohort::Agent(e), false) => {
            ("agent_email = $1 AND direction IN ('inbound', 'outbound')", e.to_owned())
        }
    }
}

/// `(select expression, GROUP BY prefix)`: PostgreSQL refuses a constant in GROUP BY.
fn group_sql(split: Split, created: &str) -> (String, String) {
    match split {
        Split::None => ("''".into(), String::new()),
        Split::Agent => ("agent_email".into(), "agent_email, ".into()),
        Split::Day => (format!("{created} / {DAY_MICROS}"), format!("{created} / {DAY_MICROS}, ")),
    }
}

/// `GROUP BY x` from a [`group_sql`] prefix (`x, `), or nothing.
fn group_by(prefix: &str) -> String {
    match prefix.strip_suffix(", ") {
        Some(x) => format!("GROUP BY {x}"),
        None => String::new(),
    }
}

fn group_text(row: &sqlx::any::AnyRow, split: Split) -> StoreResult<String> {
    Ok(match split {
        Split::None => String::new(),
        Split::Agent => row.try_get("g")?,
        Split::Day => row.try_get::<i64, _>("g")?.to_string(),
    })
}

#[async_trait]
pub trait MetricsStore: Send + Sync {
    async fn reason_counts(
        &self,
        cohort: Cohort<'_>,
        start: Timestamp,
        end: Timestamp,
        split: Split,
    ) -> StoreResult<Vec<ReasonCount>>;
    async fn group_sizes(
        &self,
        cohort: Cohort<'_>,
        start: Timestamp,
        end: Timestamp,
        split: Split,
    ) -> StoreResult<Vec<GroupSize>>;
    /// Every webhook of the account, with its deliveries made in the window.
    async fn webhook_counts(
        &self,
        account: &AccountId,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<WebhookCounts>>;
}

#[async_trait]
impl MetricsStore for SqlStore {
    async fn reason_counts(
        &self,
        cohort: Cohort<'_>,
        start: Timestamp,
        end: Timestamp,
        split: Split,
    ) -> StoreResult<Vec<ReasonCount>> {
        let (filter, key) = cohort_sql(cohort, true);
        let (g, by) = group_sql(split, "message_created_at");
        let sql = format!(
            "SELECT {g} AS g, reason_code, COUNT(*) AS observations, COUNT(DISTINCT message_id) AS messages
             FROM message_lifecycle WHERE {filter} AND message_created_at >= $2 AND message_created_at < $3
             GROUP BY {by}reason_code ORDER BY {by}reason_code"
        );
        let rows = sqlx::query(&sql)
            .bind(key)
            .bind(start.as_micros())
            .bind(end.as_micros())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReasonCount {
                    group: group_text(r, split)?,
                    reason: r.try_get("reason_code")?,
                    observations: r.try_get("observations")?,
                    messages: r.try_get("messages")?,
                })
            })
            .collect()
    }

    async fn group_sizes(
        &self,
        cohort: Cohort<'_>,
        start: Timestamp,
        end: Timestamp,
        split: Split,
    ) -> StoreResult<Vec<GroupSize>> {
        let (filter, key) = cohort_sql(cohort, false);
        let (g, by) = group_sql(split, "created_at");
        let made = sqlx::query(&format!(
            "SELECT {g} AS g, COUNT(*) AS n FROM messages
             WHERE {filter} AND created_at >= $2 AND created_at < $3 {}",
            group_by(&by)
        ))
        .bind(key.clone())
        .bind(start.as_micros())
        .bind(end.as_micros())
        .fetch_all(&self.pool)
        .await?;
        let (lfilter, _) = cohort_sql(cohort, true);
        let (lg, lby) = group_sql(split, "message_created_at");
        let ledgered = sqlx::query(&format!(
            "SELECT {lg} AS g, COUNT(DISTINCT message_id) AS n FROM message_lifecycle
             WHERE {lfilter} AND message_created_at >= $2 AND message_created_at < $3 {}",
            group_by(&lby)
        ))
        .bind(key)
        .bind(start.as_micros())
        .bind(end.as_micros())
        .fetch_all(&self.pool)
        .await?;
        let mut with: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for r in &ledgered {
            with.insert(group_text(r, split)?, r.try_get("n")?);
        }
        made.iter()
            .map(|r| {
                let group = group_text(r, split)?;
                let with_lifecycle = with.get(&group).copied().unwrap_or(0);
                Ok(GroupSize { group, messages: r.try_get("n")?, with_lifecycle })
            })
            .collect()
    }

    async fn webhook_counts(
        &self,
        account: &AccountId,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<WebhookCounts>> {
        let hooks = sqlx::query(
            "SELECT id, url, enabled, disabled_reason, updated_at FROM webhooks WHERE account_id = $1 ORDER BY id",
        )
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(hooks.len());
        for h in &hooks {
            let id: String = h.try_get("id")?;
            let enabled = h.try_get::<i64, _>("enabled")? != 0;
            let disabled_reason: Option<String> = h.try_get("disabled_reason")?;
            let mut w = WebhookCounts {
                webhook_id: id.clone(),
                url: h.try_get("url")?,
                enabled,
                disabled_at: (!enabled && disabled_reason.is_some())
                    .then(|| super::sql::ts(h, "updated_at"))
                    .transpose()?,
                disabled_reason,
                delivered: 0,
                pending: 0,
                rejected: 0,
                no_response: 0,
                last_status_code: None,
            };
            let rows = sqlx::query(
                "SELECT status, CASE WHEN last_status_code IS NULL THEN 0 ELSE 1 END AS answered, COUNT(*) AS n
                 FROM webhook_deliveries WHERE webhook_id = $1 AND created_at >= $2 AND created_at < $3
                 GROUP BY status, CASE WHEN last_status_code IS NULL THEN 0 ELSE 1 END",
            )
            .bind(id.as_str())
            .bind(start.as_micros())
            .bind(end.as_micros())
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                let status: String = r.try_get("status")?;
                let answered = r.try_get::<i64, _>("answered")? == 1;
                let n: i64 = r.try_get("n")?;
                match (status.as_str(), answered) {
                    ("delivered", _) => w.delivered += n,
                    ("failed", true) => w.rejected += n,
                    ("failed", false) => w.no_response += n,
                    _ => w.pending += n,
                }
            }
            let last = sqlx::query(
                "SELECT last_status_code FROM webhook_deliveries
                 WHERE webhook_id = $1 AND created_at >= $2 AND created_at < $3 AND last_status_code IS NOT NULL
                 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(id.as_str())
            .bind(start.as_micros())
            .bind(end.as_micros())
            .fetch_optional(&self.pool)
            .await?;
            w.last_status_code = last.map(|r| r.try_get::<i64, _>("last_status_code")).transpose()?;
            out.push(w);
        }
        Ok(out)
    }
}
