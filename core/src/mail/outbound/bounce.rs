//! What a delivery status notification does to the message it reports on: each failed
//! recipient marks the message `bounced` (with the status and diagnostic) and emits one
//! `email.bounced`; a permanent failure also puts the address on the account's suppression
//! list (`domain.suppression_added`), and so, when the deployment asks for it
//! ([`BouncePolicy::suppress_after_soft`]), does a run of soft bounces; delay warnings change
//! nothing but the delivery detail.

use super::dsn;
use crate::mail::event::{
    OutboundFacts, outbound_data, outbound_event, suppression_event, suppression_ledger,
};
use crate::mail::lifecycle::{self, NewStage, Reason};
use crate::store::{MessageUpdate, SoftBounceRun, Store, StoreError, Suppression, Transition};
use crate::time::Timestamp;
use crate::vocab::{
    BounceType, DeliveryStatus, Direction, EventKind, MessageStatus, SuppressionSource, Word,
};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceOutcome {
    /// No outbound message of ours has this id (any more).
    UnknownMessage,
    /// Not `multipart/report; report-type=delivery-status` (an auto-reply, say).
    NotAReport,
    /// A report without failures (delays, successes).
    NoFailure {
        delayed: usize,
    },
    Bounced {
        recipients: Vec<String>,
    },
    /// A complaint report (ARF) about the message: its complainants are suppressed.
    Complained {
        recipients: Vec<String>,
    },
}

/// What bounces do beyond marking the message (the deployment's settings).
#[derive(Debug, Clone, Copy, Default)]
pub struct BouncePolicy {
    /// Suppress an address once this many of an agent's latest messages to it soft-bounced
    /// in a row (`suppress_after_soft_bounces`); 0 never does.
    pub suppress_after_soft: u32,
}

/// How far back a run of soft bounces is looked for: as long as a bounce address is valid,
/// so every message whose DSN can still arrive counts, and the janitor may forget older ones.
pub const SOFT_BOUNCE_WINDOW_DAYS: i64 = super::verp::MAX_AGE_DAYS;

/// When a suppression caused by a report happens: after the report's own ledger rows (which
/// are stamped `now` and the microseconds after it), so the ledger reads in causal order.
fn after(now: Timestamp) -> Timestamp {
    Timestamp::now().max(now.plus_micros(1_000))
}

/// Applies the report in `raw` to message `message_id`.
pub async fn apply(
    store: &dyn Store,
    message_id: &str,
    raw: &[u8],
    policy: BouncePolicy,
    now: Timestamp,
) -> Result<BounceOutcome, StoreError> {
    let Some(m) = store.find_message(message_id).await?.filter(|m| m.direction == Direction::Outbound) else {
        return Ok(BounceOutcome::UnknownMessage);
    };
    let Some(agent) = store.get_agent(&m.account_id, &m.agent_email).await? else {
        return Ok(BounceOutcome::UnknownMessage);
    };
    // Only this message's own recipients count: a recipient who got the VERP address as
    // Return-Path could otherwise "bounce" (or complain for) somebody else.
    let ours: Vec<String> = m.to.iter().chain(&m.cc).chain(&m.bcc).map(|a| a.to_ascii_lowercase()).collect();
    if let Some(fb) = dsn::feedback(raw) {
        return complaint(store, &m, &agent, &ours, fb, now).await;
    }
    if !dsn::is_report(raw) {
        return Ok(BounceOutcome::NotAReport);
    }
    let report: Vec<dsn::RecipientStatus> =
        dsn::parse(raw).into_iter().filter(|r| ours.contains(&r.recipient)).collect();
    let failed: Vec<&dsn::RecipientStatus> = report.iter().filter(|r| r.bounce_type().is_some()).collect();
    // Delays and successes, whatever else the report holds: their own ledger rows.
    let stage = |r: &dsn::RecipientStatus, reason: Reason| {
        NewStage::new(&m.id, Direction::Outbound, reason, now)
            .keyed(&format!("{}|{reason}|{}|{}", m.id, r.recipient, r.status))
            .recipient(&r.recipient)
            .evidence("smtp_detail", r.diagnostic.as_deref().unwrap_or(&r.status))
    };
    let mut ledger: Vec<NewStage> = report
        .iter()
        .filter_map(|r| match r.action.as_str() {
            "delayed" => Some(stage(r, Reason::TemporaryDelay)),
            "delivered" | "relayed" | "expanded" => Some(stage(r, Reason::RecipientServerAccepted)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        let delayed = report.iter().filter(|r| r.action == "delayed").count();
        if let Some(d) = report.iter().find(|r| r.action == "delayed") {
            let t = Transition {
                message_id: m.id.clone(),
                from: vec![MessageStatus::Sent],
                set: MessageUpdate {
                    delivery_status: Some(DeliveryStatus::Deferred),
                    delivery_detail: Some(format!(
                        "{} delayed: {}",
                        d.recipient,
                        d.diagnostic.as_deref().unwrap_or(&d.status)
                    )),
                    ..MessageUpdate::default()
                },
                lifecycle: lifecycle::in_order(ledger),
                at: now,
                ..Transition::default()
            };
            store.transition(t).await?;
        } else if !ledger.is_empty() {
            // Success notices (NOTIFY=SUCCESS) change nothing but the ledger.
            let t = Transition {
                message_id: m.id.clone(),
                from: vec![MessageStatus::Sent, MessageStatus::Bounced],
                lifecycle: lifecycle::in_order(ledger),
                at: now,
                ..Transition::default()
            };
            store.transition(t).await?;
        }
        return Ok(BounceOutcome::NoFailure { delayed });
    }
    let conversation = m.conversation_id.clone().unwrap_or_default();
    let facts = OutboundFacts::of(&m, &conversation);
    let mut recipients = Vec::new();
    for r in failed {
        let bounce_type = r.bounce_type().unwrap_or(BounceType::Undetermined);
        let detail =
            format!("{} {}: {}", r.recipient, r.status, r.diagnostic.as_deref().unwrap_or("no diagnostic"));
        let reason = match bounce_type {
            BounceType::Permanent => Reason::PermanentBounce,
            BounceType::Transient => Reason::TransientBounce,
            _ => Reason::UndeterminedBounce,
        };
        let row = stage(r, reason)
            .evidence("bounce_type", bounce_type.as_str())
            .evidence("smtp_detail", detail.as_str());
        let mut data = outbound_data(&agent, &m.id, &facts);
        if let Some(obj) = data.as_object_mut() {
            obj.insert("delivered_to".into(), json!(r.recipient));
            obj.insert("bounce_type".into(), json!(bounce_type));
            obj.insert("smtp_detail".into(), json!(detail));
            obj.insert("lifecycle_transitions".into(), lifecycle::views(std::slice::from_ref(&row)));
        }
        let mut event = outbound_event(&agent, &m.id, &conversation, EventKind::EmailBounced, data, now);
        // One event per bounced recipient, each with its own stable id.
        let id = crate::mail::event::event_id(&format!("{}|{}", m.id, r.recipient), EventKind::EmailBounced);
        event.payload = event.payload.replace(&event.id, &id);
        event.id = id;
        let t = Transition {
            message_id: m.id.clone(),
            from: vec![MessageStatus::Sent, MessageStatus::Sending, MessageStatus::Bounced],
            set: MessageUpdate {
                status: Some(MessageStatus::Bounced),
                delivery_status: Some(DeliveryStatus::Bounced),
                delivery_detail: Some(detail.clone()),
                bounce_type: Some(bounce_type),
                ..MessageUpdate::default()
            },
            events: vec![event],
            // The report's other recipients' rows go with its first failure.
            lifecycle: lifecycle::in_order(std::iter::once(row).chain(ledger.drain(..)).collect()),
            at: now,
            ..Transition::default()
        };
        if store.transition(t).await? {
            recipients.push(r.recipient.clone());
        }
        // A permanent failure stops the next send to that address; a soft bounce only as the
        // last of a run the deployment counts.
        let suppress = match bounce_type {
            BounceType::Permanent => Some(detail.clone()),
            BounceType::Transient => soft_run(store, &m, &r.recipient, policy.suppress_after_soft, now)
                .await?
                .map(|n| format!("{n} consecutive soft bounces, the last {detail}")),
            _ => None,
        };
        if let Some(reason) = suppress {
            let s = Suppression {
                account_id: m.account_id.clone(),
                agent_email: None,
                address: r.recipient.clone(),
                source: SuppressionSource::Bounce,
                reason: Some(reason),
                source_message_id: Some(m.id.clone()),
                created_at: after(now),
            };
            let ledger = suppression_ledger(&s);
            if store.add_suppression(&s, Some(suppression_event(&s, &ledger)), ledger).await? {
                tracing::info!(message = %m.id, recipient = %r.recipient, %bounce_type, "suppressed after bouncing");
                crate::metrics::SUPPRESSIONS_ADDED.inc("bounce");
            }
        }
    }
    Ok(BounceOutcome::Bounced { recipients })
}

/// Records a soft bounce of `m` for `address` (always, so a limit set later counts what came
/// before); `Some(run)` when it makes a run of at least `limit` (0: never): that many of the
/// agent's messages to the address in a row, `m` among them, all soft-bounced.
async fn soft_run(
    store: &dyn Store,
    m: &crate::store::Message,
    address: &str,
    limit: u32,
    now: Timestamp,
) -> Result<Option<u32>, StoreError> {
    store.record_soft_bounce(&m.account_id, address, &m.id, now).await?;
    if limit == 0 {
        return Ok(None);
    }
    let run = SoftBounceRun {
        account: &m.account_id,
        agent: &m.agent_email,
        address,
        since: now.plus_secs(-SOFT_BOUNCE_WINDOW_DAYS * 86_400),
        message_id: &m.id,
    };
    let n = store.soft_bounce_run(&run).await?;
    tracing::debug!(message = %m.id, recipient = %address, run = n, limit, "soft bounce");
    Ok((n >= limit).then_some(n))
}

/// A complaint report: each complainant among the message's recipients is put on the account's
/// list (`domain.suppression_added`) and reported (`email.complained`). A report that names
/// no recipient counts for a message with exactly one; `not-spam` reports change nothing.
async fn complaint(
    store: &dyn Store,
    m: &crate::store::Message,
    agent: &crate::store::Agent,
    ours: &[String],
    fb: dsn::Feedback,
    now: Timestamp,
) -> Result<BounceOutcome, StoreError> {
    if fb.feedback_type == "not-spam" {
        return Ok(BounceOutcome::NoFailure { delayed: 0 });
    }
    let named: Vec<String> = fb.recipients.into_iter().filter(|r| ours.contains(r)).collect();
    let complainants = if named.is_empty() && ours.len() == 1 { ours.to_vec() } else { named };
    let conversation = m.conversation_id.clone().unwrap_or_default();
    let facts = OutboundFacts::of(m, &conversation);
    for r in &complainants {
        let row = NewStage::new(&m.id, Direction::Outbound, Reason::RecipientReported, now)
            .keyed(&format!("{}|{}|{r}", m.id, Reason::RecipientReported))
            .recipient(r)
            .evidence("failure_reason", fb.feedback_type.as_str());
        let mut data = outbound_data(agent, &m.id, &facts);
        if let Some(obj) = data.as_object_mut() {
            obj.insert("delivered_to".into(), json!(r));
            obj.insert("complaint_type".into(), json!(fb.feedback_type));
            obj.insert("lifecycle_transitions".into(), lifecycle::views(std::slice::from_ref(&row)));
        }
        let mut event = outbound_event(agent, &m.id, &conversation, EventKind::EmailComplained, data, now);
        let id = crate::mail::event::event_id(&format!("{}|{r}", m.id), EventKind::EmailComplained);
        event.payload = event.payload.replace(&event.id, &id);
        event.id = id;
        // The report and its ledger row together, whatever state the message is in.
        let t = Transition {
            message_id: m.id.clone(),
            // Whatever state the message is in.
            from: MessageStatus::ALL.to_vec(),
            events: vec![event],
            lifecycle: vec![row],
            at: now,
            ..Transition::default()
        };
        store.transition(t).await?;
        let s = Suppression {
            account_id: m.account_id.clone(),
            agent_email: None,
            address: r.clone(),
            source: SuppressionSource::Complaint,
            reason: Some(format!("{} complaint", fb.feedback_type)),
            source_message_id: Some(m.id.clone()),
            created_at: after(now),
        };
        let ledger = suppression_ledger(&s);
        if store.add_suppression(&s, Some(suppression_event(&s, &ledger)), ledger).await? {
            crate::metrics::SUPPRESSIONS_ADDED.inc("complaint");
        }
    }
    Ok(BounceOutcome::Complained { recipients: complainants })
}
