//! Outbound mail and holds: the insert of a send (row, hold, loopback twin, events, jobs and
//! the idempotent response in one transaction), the compare-and-set transitions every later
//! step goes through (submission, bounce, approve, reject, expiry), the review queue and the
//! per-agent protection settings.

use super::rows::{insert_attachments, insert_hold, insert_inbound_row, json_list};
use super::sql::{opt_ts, ts, word};
use super::{
    After, Hold, IdempotencyDone, Message, NewJob, OutboundInsert, PageQuery, SqlStore, StoreError,
    StoreResult, Transition,
};
use crate::bus::BusMessage;
use crate::ids::AccountId;
use crate::mail::protection::Protection;
use crate::time::Timestamp;
use crate::vocab::{DeliveryStatus, ReviewStatus, Word};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const HOLD_COLS: &str = "message_id, account_id, agent_email, direction, reason, state, on_expiry, \
     expires_at, decided_at, decided_by, reject_reason, created_at";

fn hold(row: &AnyRow) -> StoreResult<Hold> {
    Ok(Hold {
        message_id: row.try_get("message_id")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        agent_email: row.try_get("agent_email")?,
        direction: word(row, "direction")?,
        reason: row.try_get("reason")?,
        state: word(row, "state")?,
        on_expiry: word(row, "on_expiry")?,
        expires_at: ts(row, "expires_at")?,
        decided_at: opt_ts(row, "decided_at")?,
        decided_by: row.try_get("decided_by")?,
        reject_reason: row.try_get("reject_reason")?,
        created_at: ts(row, "created_at")?,
    })
}

#[async_trait]
pub trait OutboundStore: Send + Sync {
    async fn insert_outbound(&self, new: OutboundInsert) -> StoreResult<()>;
    /// Applies `t` if the message is still in one of `t.from` (and its hold pending, when
    /// `t.hold` is set); `false` when another actor moved it first (nothing written).
    async fn transition(&self, t: Transition) -> StoreResult<bool>;
    /// The stored draft (JSON) of an outbound message.
    async fn get_draft(&self, id: &str) -> StoreResult<Option<String>>;
    /// Replies `agent` sent to `recipient` (lowercase, in To or Cc) since `since`: the loop
    /// budget's count.
    async fn count_recent_replies(&self, agent: &str, recipient: &str, since: Timestamp) -> StoreResult<u64>;
    async fn get_hold(&self, message_id: &str) -> StoreResult<Option<Hold>>;
    /// Takes a message out of the trash (`false` when it was not there) and, in the same
    /// transaction, settles an outbound one that had not left: its submission re-armed for its
    /// time (or now), or, when a scheduled time has passed, the send cancelled (`failed`,
    /// `submission.cancelled`).
    async fn restore_message(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
    /// The account's pending holds with their messages, newest first, live agents only.
    async fn list_pending_holds(
        &self,
        account: &AccountId,
        page: &PageQuery,
    ) -> StoreResult<Vec<(Hold, Message)>>;
    /// Pending holds whose deadline passed, oldest deadline first (outbound before inbound
    /// at equal deadlines).
    async fn due_holds(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Hold>>;
    /// The agent's protection settings as JSON; `None` means the defaults.
    /// The agent's protection; the defaults when it has none stored.
    async fn get_protection(&self, agent_email: &str) -> StoreResult<Protection>;
    async fn put_protection(&self, agent_email: &str, config: &Protection, now: Timestamp)
    -> StoreResult<()>;
}

async fn insert_job(conn: &mut sqlx::AnyConnection, job: &NewJob, now: Timestamp) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (kind, ref_id, run_at, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (kind, ref_id) DO UPDATE SET run_at = excluded.run_at, attempts = 0,
             locked_until = NULL, locked_by = NULL, last_error = NULL",
    )
    .bind(job.kind.as_str())
    .bind(job.ref_id.as_str())
    .bind(job.run_at.as_micros())
    .bind(now.as_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn finish_idempotency(conn: &mut sqlx::AnyConnection, done: &IdempotencyDone) -> StoreResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $3, response_body = $4
         WHERE account_id = $1 AND key = $2",
    )
    .bind(done.account_id.as_str())
    .bind(done.key.as_str())
    .bind(i64::from(done.status))
    .bind(done.body.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The common tail of an insert or a transition: twin, events, jobs, idempotent response.
async fn side_effects(
    store: &SqlStore,
    conn: &mut sqlx::AnyConnection,
    twin: &Option<(super::NewInboundMessage, Vec<super::NewAttachment>)>,
    events: &[super::NewEvent],
    jobs: &[NewJob],
    idempotency: &Option<IdempotencyDone>,
    now: Timestamp,
) -> StoreResult<Vec<BusMessage>> {
    if let Some((msg, attachments)) = twin {
        insert_inbound_row(conn, msg, attachments).await?;
    }
    let mut published = Vec::with_capacity(events.len());
    for e in events {
        published.push(super::events::insert_event(store, conn, e).await?.0);
    }
    for j in jobs {
        insert_job(conn, j, now).await?;
    }
    let mut kinds: Vec<crate::vocab::JobKind> = jobs.iter().map(|j| j.kind).collect();
    kinds.dedup();
    for kind in kinds {
        let msg = BusMessage::Jobs { kind };
        store.notify_in_tx(conn, &msg).await?;
        published.push(msg);
    }
    if let Some(done) = idempotency {
        finish_idempotency(conn, done).await?;
    }
    Ok(published)
}

/// Binds for a dynamic `UPDATE messages SET …`.
enum Val {
    Text(Option<String>),
    Int(i64),
    Bytes(Vec<u8>),
}

#[async_trait]
impl OutboundStore for SqlStore {
    async fn insert_outbound(&self, new: OutboundInsert) -> StoreResult<()> {
        let m = &new.message;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO messages (id, account_id, agent_email, direction, status, review_status, read_status,
                 header_from, to_addrs, cc_addrs, bcc_addrs, reply_to, delivered_to, subject, rfc_message_id,
                 in_reply_to, references_ids, conversation_id, raw_message, draft, size_bytes,
                 provider_message_id, delivery_status, message_type, method, sent_as, created_at, updated_at,
                 flagged, flag_reason, scheduled_at)
             VALUES ($1, $2, $3, 'outbound', $4, $5, '', $6, $7, $8, $9, $10, '', $11, $12, $13, $14, $15,
                 $16, $17, $18, $19, $20, $21, $22, $23, $24, $24, $25, $26, $27)",
        )
        .bind(m.id.as_str())
        .bind(m.account_id.as_str())
        .bind(m.agent_email.as_str())
        .bind(m.status.as_str())
        .bind(m.review_status.map(ReviewStatus::as_str))
        .bind(m.header_from.as_str())
        .bind(json_list(&m.to))
        .bind(json_list(&m.cc))
        .bind(json_list(&m.bcc))
        .bind(json_list(&m.reply_to))
        .bind(m.subject.as_str())
        .bind(m.rfc_message_id.as_str())
        .bind(m.in_reply_to.as_deref())
        .bind(json_list(&m.references))
        .bind(m.conversation_id.as_str())
        .bind(m.raw.as_deref())
        .bind(m.draft.as_str())
        .bind(m.size_bytes)
        .bind(m.provider_message_id.as_deref())
        .bind(m.delivery_status.map(DeliveryStatus::as_str))
        .bind(m.message_type.as_str())
        .bind(m.method.as_str())
        .bind(m.sent_as.as_str())
        .bind(m.created_at.as_micros())
        .bind(i64::from(m.flag_reason.is_some()))
        .bind(m.flag_reason.as_deref())
        .bind(m.scheduled_at.map(Timestamp::as_micros))
        .execute(&mut *tx)
        .await?;
        insert_attachments(&mut tx, &m.id, &new.attachments).await?;
        if let Some(h) = &new.hold {
            insert_hold(&mut tx, &m.id, &m.account_id, &m.agent_email, h, m.created_at).await?;
        }
        let published =
            side_effects(self, &mut tx, &new.twin, &new.events, &new.jobs, &new.idempotency, m.created_at)
                .await?;
        let owner = super::lifecycle::Owner {
            account_id: m.account_id.as_str(),
            agent_email: &m.agent_email,
            created_at: m.created_at,
        };
        super::lifecycle::insert_first_stages(&mut tx, &owner, &new.lifecycle).await?;
        tx.commit().await?;
        for p in published {
            self.bus.publish(p);
        }
        Ok(())
    }

    async fn transition(&self, t: Transition) -> StoreResult<bool> {
        let s = &t.set;
        let mut sets: Vec<(&str, Val)> = Vec::new();
        let text = |v: &Option<String>| v.clone().map(|x| Val::Text(Some(x)));
        fn word<T: Word>(v: Option<T>) -> Option<Val> {
            v.map(|w| Val::Text(Some(w.as_str().to_owned())))
        }
        for (col, v) in [
            ("status", word(s.status)),
            ("review_status", word(s.review_status)),
            ("read_status", word(s.read_status)),
            ("delivery_status", word(s.delivery_status)),
            ("delivery_detail", text(&s.delivery_detail)),
            ("postfix_queue_id", text(&s.postfix_queue_id)),
            ("provider_message_id", text(&s.provider_message_id)),
            ("bounce_type", word(s.bounce_type)),
            ("draft", text(&s.draft)),
            ("subject", text(&s.subject)),
            ("method", word(s.method)),
            ("to_addrs", s.to.as_ref().map(|v| Val::Text(Some(json_list(v))))),
            ("cc_addrs", s.cc.as_ref().map(|v| Val::Text(Some(json_list(v))))),
            ("bcc_addrs", s.bcc.as_ref().map(|v| Val::Text(Some(json_list(v))))),
            ("raw_message", s.raw.clone().map(Val::Bytes)),
            ("size_bytes", s.size_bytes.map(Val::Int)),
            ("updated_at", Some(Val::Int(t.at.as_micros()))),
        ] {
            if let Some(v) = v {
                sets.push((col, v));
            }
        }
        let assignments: Vec<String> =
            sets.iter().enumerate().map(|(i, (col, _))| format!("{col} = ${}", i + 1)).collect();
        let id_at = sets.len() + 1;
        let holes: Vec<String> = (0..t.from.len()).map(|i| format!("${}", id_at + 1 + i)).collect();
        let sql = format!(
            "UPDATE messages SET {} WHERE id = ${id_at} AND status IN ({}){}",
            assignments.join(", "),
            holes.join(", "),
            if t.unless_trashed { " AND deleted_at IS NULL" } else { "" }
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in &sets {
            q = match v {
                Val::Text(s) => q.bind(s.clone()),
                Val::Int(i) => q.bind(*i),
                Val::Bytes(b) => q.bind(b.clone()),
            };
        }
        q = q.bind(t.message_id.as_str());
        for f in &t.from {
            q = q.bind(f.as_str());
        }
        let mut tx = self.begin_write().await?;
        if q.execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(d) = &t.hold {
            let decided = sqlx::query(
                "UPDATE holds SET state = $2, decided_at = $3, decided_by = $4, reject_reason = $5
                 WHERE message_id = $1 AND state = 'pending'",
            )
            .bind(t.message_id.as_str())
            .bind(d.state.as_str())
            .bind(t.at.as_micros())
            .bind(d.decided_by.as_str())
            .bind(d.reject_reason.as_deref())
            .execute(&mut *tx)
            .await?;
            if decided.rows_affected() != 1 {
                return Ok(false);
            }
        }
        if let Some(attachments) = &t.attachments {
            sqlx::query("DELETE FROM attachments WHERE message_id = $1")
                .bind(t.message_id.as_str())
                .execute(&mut *tx)
                .await?;
            insert_attachments(&mut tx, &t.message_id, attachments).await?;
        }
        let published =
            side_effects(self, &mut tx, &t.twin, &t.events, &t.jobs, &t.idempotency, t.at).await?;
        super::lifecycle::insert_stages(&mut tx, &t.lifecycle).await?;
        tx.commit().await?;
        for p in published {
            self.bus.publish(p);
        }
        Ok(true)
    }

    async fn count_recent_replies(&self, agent: &str, recipient: &str, since: Timestamp) -> StoreResult<u64> {
        // Address lists are stored as JSON arrays of lowercase addresses: a quoted match is exact.
        let quoted = format!("%{}%", serde_json::to_string(recipient).unwrap_or_default().replace('%', ""));
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages
             WHERE agent_email = $1 AND direction = 'outbound' AND message_type = 'reply' AND created_at >= $2
               AND (to_addrs LIKE $3 OR cc_addrs LIKE $3)",
        )
        .bind(agent)
        .bind(since.as_micros())
        .bind(quoted)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn get_draft(&self, id: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT draft FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>("draft")).transpose()?.flatten())
    }

    async fn restore_message(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        use crate::mail::lifecycle::{NewStage, Reason};
        use crate::vocab::{Direction, JobKind, MessageStatus};
        let mut tx = self.begin_write().await?;
        let back =
            sqlx::query("UPDATE messages SET deleted_at = NULL WHERE id = $1 AND deleted_at IS NOT NULL")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if back.rows_affected() != 1 {
            return Ok(false);
        }
        let row = sqlx::query("SELECT direction, status, scheduled_at FROM messages WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let (direction, status): (Direction, MessageStatus) =
            (word(&row, "direction")?, word(&row, "status")?);
        let mut published = Vec::new();
        if direction == Direction::Outbound && status == MessageStatus::Accepted {
            match opt_ts(&row, "scheduled_at")? {
                Some(at) if at <= now => {
                    sqlx::query(
                        "UPDATE messages SET status = 'failed', delivery_status = 'failed', delivery_detail = $2,
                             updated_at = $3
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind("cancelled: the message was in the trash at its scheduled time")
                    .bind(now.as_micros())
                    .execute(&mut *tx)
                    .await?;
                    let row = NewStage::new(id, Direction::Outbound, Reason::Cancelled, now)
                        .evidence("failure_reason", "in the trash at its scheduled time");
                    super::lifecycle::insert_stages(&mut tx, &[row]).await?;
                }
                at => {
                    // Resets a lease a worker may hold on the job it found trashed, so its
                    // completion cannot remove this re-armed one.
                    let job = NewJob {
                        kind: JobKind::Submit,
                        ref_id: id.to_owned(),
                        run_at: at.unwrap_or(now).max(now),
                    };
                    insert_job(&mut tx, &job, now).await?;
                    let msg = BusMessage::Jobs { kind: JobKind::Submit };
                    self.notify_in_tx(&mut tx, &msg).await?;
                    published.push(msg);
                }
            }
        }
        tx.commit().await?;
        for p in published {
            self.bus.publish(p);
        }
        Ok(true)
    }

    async fn get_hold(&self, message_id: &str) -> StoreResult<Option<Hold>> {
        let row = sqlx::query(&format!("SELECT {HOLD_COLS} FROM holds WHERE message_id = $1"))
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(hold).transpose()
    }

    async fn list_pending_holds(
        &self,
        account: &AccountId,
        page: &PageQuery,
    ) -> StoreResult<Vec<(Hold, Message)>> {
        let after_sql = if page.after.is_some() {
            "AND (h.created_at < $3 OR (h.created_at = $3 AND h.message_id < $4))"
        } else {
            ""
        };
        let sql = format!(
            "SELECT h.message_id FROM holds h JOIN agents a ON a.email = h.agent_email
             WHERE h.account_id = $1 AND h.state = 'pending' AND a.deleted_at IS NULL {after_sql}
             ORDER BY h.created_at DESC, h.message_id DESC LIMIT $2"
        );
        let mut q = sqlx::query(&sql).bind(account.as_str()).bind(i64::from(page.limit) + 1);
        if let Some(After { created_at, key }) = &page.after {
            q = q.bind(created_at.as_micros()).bind(key.as_str());
        }
        let ids: Vec<String> = q
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("message_id"))
            .collect::<Result<_, _>>()?;
        // Two queries for the page, not two per hold.
        let mut holds = std::collections::HashMap::new();
        if !ids.is_empty() {
            let sql = format!(
                "SELECT {HOLD_COLS} FROM holds WHERE message_id IN ({})",
                super::sql::placeholders(ids.len())
            );
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q.bind(id.as_str());
            }
            for row in q.fetch_all(&self.pool).await? {
                let h = hold(&row)?;
                holds.insert(h.message_id.clone(), h);
            }
        }
        let mut messages: std::collections::HashMap<String, Message> =
            super::messages::find_messages(self, &ids)
                .await?
                .into_iter()
                .map(|m| (m.id.clone(), m))
                .collect();
        Ok(ids.iter().filter_map(|id| Some((holds.remove(id)?, messages.remove(id)?))).collect())
    }

    async fn due_holds(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Hold>> {
        let rows = sqlx::query(&format!(
            "SELECT {HOLD_COLS} FROM holds WHERE state = 'pending' AND expires_at <= $1
               AND agent_email IN (SELECT email FROM agents WHERE deleted_at IS NULL)
             ORDER BY expires_at, CASE WHEN direction = 'outbound' THEN 0 ELSE 1 END, message_id LIMIT $2"
        ))
        .bind(now.as_micros())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hold).collect()
    }

    async fn get_protection(&self, agent_email: &str) -> StoreResult<Protection> {
        let row = sqlx::query("SELECT config FROM agent_protection WHERE agent_email = $1")
            .bind(agent_email)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(Protection::default()) };
        let text: String = row.try_get("config")?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("protection of {agent_email}: {e}")))
    }

    async fn put_protection(
        &self,
        agent_email: &str,
        config: &Protection,
        now: Timestamp,
    ) -> StoreResult<()> {
        let config = serde_json::to_string(config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO agent_protection (agent_email, config, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (agent_email) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(agent_email)
        .bind(config)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
