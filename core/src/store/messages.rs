//! Messages: the inbound insert (message, attachments and its outbox event in one
//! transaction, idempotent per agent and milter message id), the inbox queries and the
//! per-message state changes (read, labels, trash).

use super::rows::{insert_inbound_row, json_list};
use super::sql::{opt_ts, opt_word, ts, word};
use super::{AttachmentMeta, Inserted, Message, MessageFilter, NewAttachment, NewEvent, NewInboundMessage};
use super::{MessageStore, SqlStore, StoreError, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

pub(super) const MESSAGE_COLS: &str = "id, account_id, agent_email, direction, status, review_status, read_status, \
     header_from, envelope_from, verified_domain, to_addrs, cc_addrs, bcc_addrs, reply_to, delivered_to, \
     subject, rfc_message_id, conversation_id, labels, authentication, size_bytes, delivery_status, \
     delivery_detail, created_at, deleted_at, in_reply_to, references_ids, provider_message_id, \
     postfix_queue_id, message_type, method, sent_as, flagged, flag_reason, bounce_type, scheduled_at";

fn list(row: &AnyRow, col: &str) -> StoreResult<Vec<String>> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

/// The messages with these ids, in no particular order: one query where a page would
/// otherwise read them one by one.
pub(super) async fn find_messages(store: &SqlStore, ids: &[String]) -> StoreResult<Vec<Message>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT {MESSAGE_COLS} FROM messages WHERE id IN ({})", super::sql::placeholders(ids.len()));
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id.as_str());
    }
    q.fetch_all(&store.pool).await?.iter().map(message).collect()
}

pub(super) fn message(row: &AnyRow) -> StoreResult<Message> {
    Ok(Message {
        id: row.try_get("id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        agent_email: row.try_get("agent_email")?,
        direction: word(row, "direction")?,
        status: word(row, "status")?,
        review_status: opt_word(row, "review_status")?,
        read_status: opt_word(row, "read_status")?,
        header_from: row.try_get("header_from")?,
        envelope_from: row.try_get("envelope_from")?,
        verified_domain: row.try_get("verified_domain")?,
        to: list(row, "to_addrs")?,
        cc: list(row, "cc_addrs")?,
        bcc: list(row, "bcc_addrs")?,
        reply_to: list(row, "reply_to")?,
        delivered_to: row.try_get("delivered_to")?,
        subject: row.try_get("subject")?,
        rfc_message_id: row.try_get("rfc_message_id")?,
        conversation_id: row.try_get("conversation_id")?,
        labels: list(row, "labels")?,
        authentication: row.try_get("authentication")?,
        size_bytes: row.try_get("size_bytes")?,
        delivery_status: opt_word(row, "delivery_status")?,
        delivery_detail: row.try_get("delivery_detail")?,
        created_at: ts(row, "created_at")?,
        deleted_at: opt_ts(row, "deleted_at")?,
        scheduled_at: opt_ts(row, "scheduled_at")?,
        in_reply_to: row.try_get("in_reply_to")?,
        references: list(row, "references_ids")?,
        provider_message_id: row.try_get("provider_message_id")?,
        postfix_queue_id: row.try_get("postfix_queue_id")?,
        message_type: opt_word(row, "message_type")?,
        method: opt_word(row, "method")?,
        sent_as: row.try_get("sent_as")?,
        flagged: super::sql::flag(row, "flagged")?,
        flag_reason: row.try_get("flag_reason")?,
        bounce_type: opt_word(row, "bounce_type")?,
    })
}

/// A WHERE clause under construction with `$N` placeholders (sqlx's `Any` arguments would
/// render `?`, which PostgreSQL does not accept).
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl Conditions {
    /// Binds one value and returns its placeholder.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// Adds `cond`, where each `{}` becomes the next placeholder for the given values.
    fn add(&mut self, cond: &str, values: Vec<Bind>) {
        let mut out = String::new();
        let mut parts = cond.split("{}");
        if let Some(first) = parts.next() {
            out.push_str(first);
        }
        for (part, value) in parts.zip(values) {
            let placeholder = self.bind(value);
            out.push_str(&placeholder);
            out.push_str(part);
        }
        self.sql.push(out);
    }

    fn query<'q>(&'q self, sql: &'q str) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(sql);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// `LIKE` pattern matching `needle` anywhere, literally (case folded by the caller).
/// A LIKE pattern matching text that contains `needle` (wildcards escaped, `ESCAPE '\\'`).
pub(super) fn contains_pattern(needle: &str) -> String {
    let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

impl SqlStore {
    /// Stores one inbound message in its own transaction (the path of a batch of one, of a
    /// failed batch's retry, and of a store without a committer).
    pub(super) async fn insert_inbound_now(
        &self,
        msg: &NewInboundMessage,
        attachments: &[NewAttachment],
        events: &[NewEvent],
    ) -> StoreResult<Inserted> {
        let mut tx = self.begin_write().await?;
        let mut published = Vec::new();
        let inserted = self.write_inbound(&mut tx, msg, attachments, events, &mut published).await?;
        tx.commit().await?;
        for p in published {
            self.bus.publish(p);
        }
        Ok(inserted)
    }

    /// Stores a group commit's messages in one transaction ([`super::group_commit`]); any
    /// error fails the whole batch, which the committer then retries one by one.
    pub(super) async fn insert_inbound_batch(
        &self,
        batch: &[super::group_commit::Pending],
    ) -> StoreResult<Vec<Inserted>> {
        let mut tx = self.begin_write().await?;
        let mut published = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        for p in batch {
            results
                .push(self.write_inbound(&mut tx, &p.msg, &p.attachments, &p.events, &mut published).await?);
        }
        tx.commit().await?;
        for p in published {
            self.bus.publish(p);
        }
        Ok(results)
    }

    /// One inbound message's rows in the open transaction `tx`; its events' bus messages go
    /// to `published`, for after the commit.
    async fn write_inbound(
        &self,
        tx: &mut super::sql::WriteTx,
        msg: &NewInboundMessage,
        attachments: &[NewAttachment],
        events: &[NewEvent],
        published: &mut Vec<crate::bus::BusMessage>,
    ) -> StoreResult<Inserted> {
        if !insert_inbound_row(tx, msg, attachments).await? {
            // A redelivery (Postfix never saw our 250): the first copy stands.
            let row = sqlx::query("SELECT id FROM messages WHERE agent_email = $1 AND source_id = $2")
                .bind(msg.agent_email.as_str())
                .bind(msg.source_id.as_str())
                .fetch_one(&mut **tx)
                .await?;
            return Ok(Inserted::Duplicate { id: row.try_get("id")? });
        }
        for event in events {
            published.push(super::events::insert_event(self, tx, event).await?.0);
        }
        Ok(Inserted::Stored)
    }
}

#[async_trait]
impl MessageStore for SqlStore {
    async fn insert_inbound(
        &self,
        msg: NewInboundMessage,
        attachments: Vec<NewAttachment>,
        events: Vec<NewEvent>,
    ) -> StoreResult<Inserted> {
        match &self.inbound {
            Some(group) => group.submit(self, msg, attachments, events).await,
            None => self.insert_inbound_now(&msg, &attachments, &events).await,
        }
    }

    async fn find_conversation(&self, agent_email: &str, rfc_ids: &[String]) -> StoreResult<Option<String>> {
        if rfc_ids.is_empty() {
            return Ok(None);
        }
        let mut c = Conditions::default();
        c.add("agent_email = {}", vec![Bind::Text(agent_email.to_owned())]);
        c.add("conversation_id IS NOT NULL AND conversation_id <> ''", vec![]);
        let holes = vec!["{}"; rfc_ids.len()].join(", ");
        let mut values: Vec<Bind> = rfc_ids.iter().map(|i| Bind::Text(i.clone())).collect();
        values.extend(rfc_ids.iter().map(|i| Bind::Text(i.clone())));
        c.add(&format!("(rfc_message_id IN ({holes}) OR provider_message_id IN ({holes}))"), values);
        let sql = format!(
            "SELECT conversation_id FROM messages WHERE {} ORDER BY created_at DESC, id DESC LIMIT 1",
            c.sql.join(" AND ")
        );
        let row = c.query(&sql).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("conversation_id")).transpose()?)
    }

    async fn list_messages(
        &self,
        account: &AccountId,
        agent_email: &str,
        f: &MessageFilter,
        page: &super::PageQuery,
    ) -> StoreResult<Vec<Message>> {
        let mut c = Conditions::default();
        c.add(
            "account_id = {} AND agent_email = {}",
            vec![Bind::Text(account.to_string()), Bind::Text(agent_email.into())],
        );
        c.add(if f.trash { "deleted_at IS NOT NULL" } else { "deleted_at IS NULL" }, vec![]);
        if let Some(d) = &f.direction {
            c.add("direction = {}", vec![Bind::Text(d.as_str().to_owned())]);
        }
        if let Some(r) = &f.read_status {
            c.add("read_status = {}", vec![Bind::Text(r.as_str().to_owned())]);
        }
        // Inbound mail held for review (or rejected) never shows in the inbox.
        c.add("(direction = 'outbound' OR status = 'received')", vec![]);
        if let Some(from) = &f.from_contains {
            let p = contains_pattern(&from.to_lowercase());
            c.add("LOWER(COALESCE(header_from, envelope_from, '')) LIKE {} ESCAPE '\\'", vec![Bind::Text(p)]);
        }
        if let Some(s) = &f.subject_contains {
            c.add(
                "LOWER(subject) LIKE {} ESCAPE '\\'",
                vec![Bind::Text(contains_pattern(&s.to_lowercase()))],
            );
        }
        if let Some(conv) = &f.conversation_id {
            c.add("conversation_id = {}", vec![Bind::Text(conv.clone())]);
        }
        for label in &f.labels {
            c.add("labels LIKE {} ESCAPE '\\'", vec![Bind::Text(contains_pattern(&format!("\"{label}\"")))]);
        }
        if let Some(t) = f.since {
            c.add("created_at >= {}", vec![Bind::Int(t.as_micros())]);
        }
        if let Some(t) = f.until {
            c.add("created_at < {}", vec![Bind::Int(t.as_micros())]);
        }
        let (cmp, order) = if f.ascending { (">", "ASC") } else { ("<", "DESC") };
        if let Some(a) = &page.after {
            c.add(
                &format!("(created_at {cmp} {{}} OR (created_at = {{}} AND id {cmp} {{}}))"),
                vec![
                    Bind::Int(a.created_at.as_micros()),
                    Bind::Int(a.created_at.as_micros()),
                    Bind::Text(a.key.clone()),
                ],
            );
        }
        let limit = c.bind(Bind::Int(i64::from(page.limit) + 1));
        let sql = format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE {} ORDER BY created_at {order}, id {order} LIMIT {limit}",
            c.sql.join(" AND ")
        );
        let rows = c.query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(message).collect()
    }

    async fn get_message(
        &self,
        account: &AccountId,
        agent_email: &str,
        id: &str,
    ) -> StoreResult<Option<Message>> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE id = $1 AND account_id = $2 AND agent_email = $3"
        ))
        .bind(id)
        .bind(account.as_str())
        .bind(agent_email)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message).transpose()
    }

    async fn find_message(&self, id: &str) -> StoreResult<Option<Message>> {
        let row = sqlx::query(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(message).transpose()
    }

    async fn get_raw(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT raw_message FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<Vec<u8>>, _>("raw_message")).transpose()?.flatten())
    }

    async fn list_attachments(&self, message_id: &str) -> StoreResult<Vec<AttachmentMeta>> {
        let rows = sqlx::query(
            "SELECT idx, filename, content_type, content_id, size_bytes FROM attachments WHERE message_id = $1 ORDER BY idx",
        )
        .bind(message_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttachmentMeta {
                    index: r.try_get("idx")?,
                    filename: r.try_get("filename")?,
                    content_type: r.try_get("content_type")?,
                    content_id: r.try_get("content_id")?,
                    size_bytes: r.try_get("size_bytes")?,
                })
            })
            .collect()
    }

    async fn mark_read(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE messages SET read_status = 'read', updated_at = $2
             WHERE id = $1 AND direction = 'inbound' AND read_status = 'unread'",
        )
        .bind(id)
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_labels(&self, id: &str, labels: &[String], now: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE messages SET labels = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(json_list(labels))
            .bind(now.as_micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_message_trashed(&self, id: &str, trashed: Option<Timestamp>) -> StoreResult<bool> {
        let sql = if trashed.is_some() {
            // Never while the submitter is handing it to Postfix: that send can no longer be
            // stopped, so the trash would promise what it cannot keep.
            "UPDATE messages SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL AND status <> 'sending'"
        } else {
            "UPDATE messages SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NOT NULL"
        };
        let done =
            sqlx::query(sql).bind(id).bind(trashed.map(Timestamp::as_micros)).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_conversations(
        &self,
        account: &AccountId,
        agent_email: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        page: &super::PageQuery,
    ) -> StoreResult<Vec<super::ConversationSummary>> {
        self.conversations(account, agent_email, since, until, page).await
    }

    async fn get_conversation(
        &self,
        account: &AccountId,
        agent_email: &str,
        id: &str,
    ) -> StoreResult<Option<super::ConversationSummary>> {
        self.conversation(account, agent_email, id).await
    }

    async fn purge_message(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM messages WHERE id = $1 AND deleted_at IS NOT NULL")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
