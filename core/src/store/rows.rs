//! Row writers the inbound and the outbound inserts share (a loopback self-send writes an
//! inbound twin inside the outbound transaction): below both, so neither depends on the other.

use super::{NewAttachment, NewHold, NewInboundMessage, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::ReviewStatus;

pub(super) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// Inserts an inbound row, its attachment metadata and its hold; `false` (nothing written)
/// when the agent already has this source.
pub(super) async fn insert_inbound_row(
    conn: &mut sqlx::AnyConnection,
    msg: &NewInboundMessage,
    attachments: &[NewAttachment],
) -> StoreResult<bool> {
    let now = msg.created_at.as_micros();
    // One statement for the common case; the unique (agent_email, source_id) key turns a
    // redelivery into "no row inserted" instead of a read before every write.
    let inserted = sqlx::query(
        "INSERT INTO messages (id, account_id, agent_email, direction, status, read_status, source_id,
             header_from, envelope_from, verified_domain, to_addrs, cc_addrs, reply_to, delivered_to, subject,
             rfc_message_id, in_reply_to, references_ids, conversation_id, authentication, raw_message,
             size_bytes, postfix_queue_id, created_at, updated_at, review_status, flagged, flag_reason, labels)
         VALUES ($1, $2, $3, 'inbound', $22, 'unread', $4, $5, $6, $7, $8, $9, $10, $11, $12,
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $21, $23, $24, $25, $26)
         ON CONFLICT (agent_email, source_id) DO NOTHING",
    )
    .bind(msg.id.as_str())
    .bind(msg.account_id.as_str())
    .bind(msg.agent_email.as_str())
    .bind(msg.source_id.as_str())
    .bind(msg.header_from.as_deref())
    .bind(msg.envelope_from.as_deref())
    .bind(msg.verified_domain.as_deref())
    .bind(json_list(&msg.to))
    .bind(json_list(&msg.cc))
    .bind(json_list(&msg.reply_to))
    .bind(msg.delivered_to.as_str())
    .bind(msg.subject.as_str())
    .bind(msg.rfc_message_id.as_deref())
    .bind(msg.in_reply_to.as_deref())
    .bind(json_list(&msg.references))
    .bind(msg.conversation_id.as_deref())
    .bind(msg.authentication.as_deref())
    .bind(msg.raw.as_slice())
    .bind(msg.size_bytes)
    .bind(msg.postfix_queue_id.as_deref())
    .bind(now)
    .bind(msg.status.as_str())
    .bind(msg.review_status.map(ReviewStatus::as_str))
    .bind(i64::from(msg.flag_reason.is_some()))
    .bind(msg.flag_reason.as_deref())
    .bind(json_list(&msg.labels))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    insert_attachments(conn, &msg.id, attachments).await?;
    if let Some(hold) = &msg.hold {
        insert_hold(conn, &msg.id, &msg.account_id, &msg.agent_email, hold, msg.created_at).await?;
    }
    let owner = super::lifecycle::Owner {
        account_id: msg.account_id.as_str(),
        agent_email: &msg.agent_email,
        created_at: msg.created_at,
    };
    super::lifecycle::insert_first_stages(conn, &owner, &msg.lifecycle).await?;
    Ok(true)
}

pub(super) async fn insert_attachments(
    conn: &mut sqlx::AnyConnection,
    message_id: &str,
    attachments: &[NewAttachment],
) -> StoreResult<()> {
    for a in attachments {
        sqlx::query(
            "INSERT INTO attachments (message_id, idx, filename, content_type, content_id, size_bytes)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(message_id)
        .bind(a.index)
        .bind(a.filename.as_deref())
        .bind(a.content_type.as_deref())
        .bind(a.content_id.as_deref())
        .bind(a.size_bytes)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn insert_hold(
    conn: &mut sqlx::AnyConnection,
    message_id: &str,
    account: &AccountId,
    agent_email: &str,
    h: &NewHold,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO holds (message_id, account_id, agent_email, direction, reason, state, on_expiry,
             expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)",
    )
    .bind(message_id)
    .bind(account.as_str())
    .bind(agent_email)
    .bind(h.direction.as_str())
    .bind(h.reason.as_str())
    .bind(h.on_expiry.as_str())
    .bind(h.expires_at.as_micros())
    .bind(now.as_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
