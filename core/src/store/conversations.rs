//! Conversations: not a table of their own but the agent's messages sharing a non-empty
//! conversation id (contract §3.6), summarised on read.

use super::sql::ts;
use super::{ConversationSummary, SqlStore, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Visible messages only: not trashed, and no inbound mail held for review.
const VISIBLE: &str = "deleted_at IS NULL AND (direction = 'outbound' OR status = 'received') \
     AND conversation_id IS NOT NULL AND conversation_id <> ''";

const SUMMARY: &str = "SELECT conversation_id AS id, MIN(created_at) AS first_at, MAX(created_at) AS last_at, \
     COUNT(*) AS total, \
     CAST(SUM(CASE WHEN direction = 'inbound' THEN 1 ELSE 0 END) AS BIGINT) AS inbound_total, \
     CAST(SUM(CASE WHEN direction = 'inbound' AND read_status = 'unread' THEN 1 ELSE 0 END) AS BIGINT) AS unread_total \
     FROM messages";

impl SqlStore {
    async fn summarise(&self, agent_email: &str, row: &AnyRow) -> StoreResult<ConversationSummary> {
        let id: String = row.try_get("id")?;
        let total: i64 = row.try_get("total")?;
        let inbound: i64 = row.try_get("inbound_total")?;
        let latest = sqlx::query(&format!(
            "SELECT subject, direction, agent_email, COALESCE(header_from, envelope_from, '') AS sender FROM messages
             WHERE agent_email = $1 AND conversation_id = $2 AND {VISIBLE}
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(agent_email)
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        let direction: crate::vocab::Direction = super::sql::word(&latest, "direction")?;
        let latest_from = if direction == crate::vocab::Direction::Outbound {
            latest.try_get("agent_email")?
        } else {
            latest.try_get("sender")?
        };
        Ok(ConversationSummary {
            first_message_at: ts(row, "first_at")?,
            last_message_at: ts(row, "last_at")?,
            message_count: total,
            inbound_count: inbound,
            outbound_count: total - inbound,
            has_unread: row.try_get::<i64, _>("unread_total")? > 0,
            latest_subject: latest.try_get("subject")?,
            latest_from,
            id,
        })
    }

    pub(super) async fn conversations(
        &self,
        account: &AccountId,
        agent_email: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        page: &super::PageQuery,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let (at, key) = match &page.after {
            Some(a) => (a.created_at.as_micros(), a.key.clone()),
            None => (i64::MAX, String::new()),
        };
        let rows = sqlx::query(&format!(
            "{SUMMARY} WHERE account_id = $1 AND agent_email = $2 AND {VISIBLE}
             GROUP BY conversation_id
             HAVING (MAX(created_at) < $3 OR (MAX(created_at) = $3 AND conversation_id < $4))
                AND MAX(created_at) >= $5 AND MAX(created_at) < $6
             ORDER BY last_at DESC, id DESC LIMIT $7"
        ))
        .bind(account.as_str())
        .bind(agent_email)
        .bind(at)
        .bind(key)
        .bind(since.map_or(i64::MIN, Timestamp::as_micros))
        .bind(until.map_or(i64::MAX, Timestamp::as_micros))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.summarise(agent_email, row).await?);
        }
        Ok(out)
    }

    pub(super) async fn conversation(
        &self,
        account: &AccountId,
        agent_email: &str,
        id: &str,
    ) -> StoreResult<Option<ConversationSummary>> {
        let row = sqlx::query(&format!(
            "{SUMMARY} WHERE account_id = $1 AND agent_email = $2 AND conversation_id = $3 AND {VISIBLE}
             GROUP BY conversation_id"
        ))
        .bind(account.as_str())
        .bind(agent_email)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(self.summarise(agent_email, &r).await?)),
            None => Ok(None),
        }
    }
}
