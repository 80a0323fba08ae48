//! Aggregates for the metrics endpoints: a cohort of messages (those created in a window)
//! counted by the lifecycle reasons they reached, and the webhook deliveries made in the
//! window. Whole UTC days come from the daily rollups the ledger's writes keep
//! (`lifecycle_daily`, `message_daily`: a few rows per agent and day), the partial days at
//! the window's ends from the ledger's covering indexes, so a query reads about one day of
//! rows whatever the window holds.

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
    /// Recomputes the daily rollups from the ledger (after a bulk load that wrote ledger rows
    /// directly, as the benchmark does; the ledger's own writes keep them current).
    async fn rebuild_rollups(&self) -> StoreResult<()>;
    /// Every webhook of the account, with its deliveries made in the window.
    async fn webhook_counts(
        &self,
        account: &AccountId,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<WebhookCounts>>;
}

/// A half-open range: days, or microseconds.
type Span = (i64, i64);

/// A window cut into whole UTC days (read from the rollups) and the partial days at its
/// ends (read from the ledger's rows): `(whole days [first, last), edges)`.
fn cut(start: Timestamp, end: Timestamp) -> (Option<Span>, Vec<Span>) {
    let (s, e) = (start.as_micros(), end.as_micros());
    let first = s.div_euclid(DAY_MICROS) + i64::from(s.rem_euclid(DAY_MICROS) != 0);
    let last = e.div_euclid(DAY_MICROS);
    if first >= last {
        return (None, vec![(s, e)]);
    }
    let edges =
        [(s, first * DAY_MICROS), (last * DAY_MICROS, e)].into_iter().filter(|(a, b)| a < b).collect();
    (Some((first, last)), edges)
}

fn rollup_group(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::None => ("''", ""),
        Split::Agent => ("agent_email", "agent_email, "),
        Split::Day => ("day", "day, "),
    }
}

/// A sum as a BIGINT (PostgreSQL's SUM of a bigint is a numeric), 0 for no rows.
fn sum(col: &str) -> String {
    format!("CAST(COALESCE(SUM({col}), 0) AS BIGINT)")
}

impl SqlStore {
    /// Reason counts from the ledger's rows made in `[from, to)`.
    async fn raw_reasons(
        &self,
        cohort: Cohort<'_>,
        range: (i64, i64),
        split: Split,
        out: &mut Vec<ReasonCount>,
    ) -> StoreResult<()> {
        let (filter, _) = cohort_sql(cohort, true);
        let (g, by) = group_sql(split, "message_created_at");
        let sql = format!(
            "SELECT {g} AS g, reason_code, COUNT(*) AS observations, COUNT(DISTINCT message_id) AS messages
             FROM message_lifecycle WHERE {filter} AND message_created_at >= $2 AND message_created_at < $3
             GROUP BY {by}reason_code"
        );
        self.reasons(&sql, cohort, range, split, out).await
    }

    /// Reason counts from the rollups of the days `[first, last)`.
    async fn rollup_reasons(
        &self,
        cohort: Cohort<'_>,
        days: (i64, i64),
        split: Split,
        out: &mut Vec<ReasonCount>,
    ) -> StoreResult<()> {
        let (filter, _) = cohort_sql(cohort, true);
        let (g, by) = rollup_group(split);
        let sql = format!(
            "SELECT {g} AS g, reason_code, {} AS observations, {} AS messages
             FROM lifecycle_daily WHERE {filter} AND day >= $2 AND day < $3 GROUP BY {by}reason_code",
            sum("observations"),
            sum("messages")
        );
        self.reasons(&sql, cohort, days, split, out).await
    }

    async fn reasons(
        &self,
        sql: &str,
        cohort: Cohort<'_>,
        (a, b): (i64, i64),
        split: Split,
        out: &mut Vec<ReasonCount>,
    ) -> StoreResult<()> {
        let (_, key) = cohort_sql(cohort, true);
        for r in &sqlx::query(sql).bind(key).bind(a).bind(b).fetch_all(&self.pool).await? {
            out.push(ReasonCount {
                group: group_text(r, split)?,
                reason: r.try_get("reason_code")?,
                observations: r.try_get("observations")?,
                messages: r.try_get("messages")?,
            });
        }
        Ok(())
    }

    async fn raw_sizes(
        &self,
        cohort: Cohort<'_>,
        (from, to): (i64, i64),
        split: Split,
        out: &mut Vec<GroupSize>,
    ) -> StoreResult<()> {
        let (filter, key) = cohort_sql(cohort, false);
        let (g, by) = group_sql(split, "created_at");
        let made = sqlx::query(&format!(
            "SELECT {g} AS g, COUNT(*) AS n FROM messages
             WHERE {filter} AND created_at >= $2 AND created_at < $3 {}",
            group_by(&by)
        ))
        .bind(key.clone())
        .bind(from)
        .bind(to)
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
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut with: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        for r in &ledgered {
            with.insert(group_text(r, split)?, r.try_get("n")?);
        }
        for r in &made {
            let group = group_text(r, split)?;
            let with_lifecycle = with.get(&group).copied().unwrap_or(0);
            out.push(GroupSize { group, messages: r.try_get("n")?, with_lifecycle });
        }
        Ok(())
    }

    async fn rollup_sizes(
        &self,
        cohort: Cohort<'_>,
        (first, last): (i64, i64),
        split: Split,
        out: &mut Vec<GroupSize>,
    ) -> StoreResult<()> {
        let (filter, key) = cohort_sql(cohort, true);
        let (g, by) = rollup_group(split);
        let sql = format!(
            "SELECT {g} AS g, {} AS n, {} AS w FROM message_daily WHERE {filter} AND day >= $2 AND day < $3 {}",
            sum("messages"),
            sum("with_lifecycle"),
            group_by(by)
        );
        let rows = sqlx::query(&sql).bind(key).bind(first).bind(last).fetch_all(&self.pool).await?;
        for r in &rows {
            out.push(GroupSize {
                group: group_text(r, split)?,
                messages: r.try_get("n")?,
                with_lifecycle: r.try_get("w")?,
            });
        }
        Ok(())
    }
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
        let (days, edges) = cut(start, end);
        let mut parts = Vec::new();
        if let Some(days) = days {
            self.rollup_reasons(cohort, days, split, &mut parts).await?;
        }
        for edge in edges {
            self.raw_reasons(cohort, edge, split, &mut parts).await?;
        }
        // The parts are disjoint cohorts (a message has one creation day): their counts add.
        let mut total: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
        for p in parts {
            let t = total.entry((p.group, p.reason)).or_default();
            t.0 += p.observations;
            t.1 += p.messages;
        }
        Ok(total
            .into_iter()
            .filter(|(_, (observations, _))| *observations > 0)
            .map(|((group, reason), (observations, messages))| ReasonCount {
                group,
                reason,
                observations,
                messages,
            })
            .collect())
    }

    async fn group_sizes(
        &self,
        cohort: Cohort<'_>,
        start: Timestamp,
        end: Timestamp,
        split: Split,
    ) -> StoreResult<Vec<GroupSize>> {
        let (days, edges) = cut(start, end);
        let mut parts = Vec::new();
        if let Some(days) = days {
            self.rollup_sizes(cohort, days, split, &mut parts).await?;
        }
        for edge in edges {
            self.raw_sizes(cohort, edge, split, &mut parts).await?;
        }
        let mut total: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for p in parts {
            let t = total.entry(p.group).or_default();
            t.0 += p.messages;
            t.1 += p.with_lifecycle;
        }
        Ok(total
            .into_iter()
            .filter(|(group, (messages, _))| *messages > 0 || group.is_empty())
            .map(|(group, (messages, with_lifecycle))| GroupSize { group, messages, with_lifecycle })
            .collect())
    }

    async fn rebuild_rollups(&self) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for sql in [
            "DELETE FROM lifecycle_daily".to_owned(),
            "DELETE FROM message_daily".to_owned(),
            format!(
                "INSERT INTO lifecycle_daily (account_id, agent_email, day, reason_code, messages, observations)
                 SELECT account_id, agent_email, message_created_at / {DAY_MICROS}, reason_code,
                     COUNT(DISTINCT message_id), COUNT(*)
                 FROM message_lifecycle
                 GROUP BY account_id, agent_email, message_created_at / {DAY_MICROS}, reason_code"
            ),
            format!(
                "INSERT INTO message_daily (account_id, agent_email, day, messages, with_lifecycle)
                 SELECT m.account_id, m.agent_email, m.created_at / {DAY_MICROS}, COUNT(DISTINCT m.id),
                     COUNT(DISTINCT l.message_id)
                 FROM messages m LEFT JOIN message_lifecycle l ON l.message_id = m.id
                 GROUP BY m.account_id, m.agent_email, m.created_at / {DAY_MICROS}"
            ),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
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
