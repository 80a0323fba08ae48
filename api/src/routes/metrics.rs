//! Metrics (beta, SDK 5.7+): `GET /v1/metrics` (the account, optionally per agent and per
//! day) and `GET /v1/agents/{email}/metrics`, aggregated from the lifecycle ledger. A window
//! is a cohort of messages, those made in `[start, end)`, counted by the stages they reached
//! however late those came; every counter counts messages, never rows.

use super::messages::agent_for;
use crate::AppState;
use crate::auth::{AccountScope, Principal};
use crate::body::QueryParams;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use postagent_core::mail::lifecycle::Reason;
use postagent_core::store::{Cohort, GroupSize, ReasonCount, Split, WebhookCounts};
use postagent_core::time::{DAY_MICROS, Timestamp};
use postagent_core::vocab::Word;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

const DEFAULT_DAYS: i64 = 30;
const MAX_DAYS: i64 = 92;
/// Agents listed by `group_by=agent`, busiest first.
const MAX_AGENTS: usize = 200;
/// Webhook endpoints listed, busiest first.
const MAX_ENDPOINTS: usize = 50;

/// `[start, end)`: `end` defaults to now, `start` to 30 days before it; at most 92 days.
fn window(q: &QueryParams) -> Result<(Timestamp, Timestamp), ApiError> {
    let end = q.instant("end")?.unwrap_or_else(Timestamp::now);
    let start = q.instant("start")?.unwrap_or_else(|| end.plus_secs(-DEFAULT_DAYS * 86_400));
    if end <= start {
        return Err(ApiError::bad_request("invalid_request", "end must be after start"));
    }
    if end.as_micros() - start.as_micros() > MAX_DAYS * DAY_MICROS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("the window must not exceed {MAX_DAYS} days; request a narrower range"),
        ));
    }
    Ok((start, end))
}

/// Messages per reason, one group's.
type Counts = HashMap<Reason, (i64, i64)>;

fn by_group(rows: Vec<ReasonCount>) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    for r in rows {
        // A reason this build does not know (a newer replica's) is left out, never guessed.
        if let Ok(reason) = Reason::parse(&r.reason) {
            out.entry(r.group).or_default().insert(reason, (r.messages, r.observations));
        }
    }
    out
}

fn messages(c: &Counts, reasons: &[Reason]) -> i64 {
    reasons.iter().filter_map(|r| c.get(r)).map(|(m, _)| m).sum()
}

fn summary(c: &Counts) -> Value {
    use Reason::*;
    let m = |rs: &[Reason]| messages(c, rs);
    json!({
        "accepted": m(&[OutboundApi]),
        "submitted": m(&[UpstreamAccepted, LoopbackAccepted]),
        "loopback": m(&[LoopbackAccepted]),
        "delivered": m(&[RecipientServerAccepted]),
        "bounced_hard": m(&[PermanentBounce]),
        "bounced_soft": m(&[TransientBounce]),
        "bounced_undetermined": m(&[UndeterminedBounce]),
        "complained": m(&[RecipientReported]),
        "suppressed": m(&[RecipientBlocked]),
        "send_failed": m(&[ProviderRejected, RetriesExhausted, Cancelled]),
        "received": m(&[InboundSmtp, LocalLoopback]),
        "dmarc_pass": m(&[DmarcPass]),
        "dmarc_fail": m(&[DmarcFail]),
        "dmarc_none": m(&[DmarcNone]),
        "dmarc_error": m(&[DmarcTemporaryError, DmarcPermanentError]),
        "review_held": m(&[HoldCreated]),
        "review_approved": m(&[ReviewApproved]),
        "review_rejected": m(&[ReviewRejected]),
        "review_expired_approved": m(&[ExpiredApproved]),
        "review_expired_rejected": m(&[ExpiredRejected]),
    })
}

fn ratio(num: i64, den: i64) -> Value {
    if den <= 0 {
        Value::Null
    } else {
        // Counts of messages: far below 2^52, exact as f64.
        json!(num as f64 / den as f64)
    }
}

/// e2a's rates (SDK 5.8.1's definitions): loopback mail is in no rate.
fn rates(c: &Counts) -> Value {
    use Reason::*;
    let m = |rs: &[Reason]| messages(c, rs);
    let outward = m(&[OutboundApi]) - m(&[LoopbackAccepted]);
    let went_out = m(&[UpstreamAccepted, LoopbackAccepted]) - m(&[LoopbackAccepted]);
    let delivered = m(&[RecipientServerAccepted]);
    json!({
        "delivered_rate": ratio(delivered, outward),
        "bounce_rate": ratio(m(&[PermanentBounce, TransientBounce, UndeterminedBounce]), went_out),
        "complaint_rate": ratio(m(&[RecipientReported]), delivered),
        "suppression_block_rate": ratio(m(&[RecipientBlocked]), outward),
    })
}

fn counters(c: &Counts) -> Value {
    let mut rows: Vec<(&Reason, &(i64, i64))> = c.iter().collect();
    rows.sort_by_key(|(r, _)| r.as_str());
    Value::Array(
        rows.into_iter()
            .map(|(r, (messages, observations))| {
                json!({"reason_code": r, "stage": r.stage(), "outcome": r.outcome(), "retryable": r.retryable(),
                    "messages": messages, "observations": observations})
            })
            .collect(),
    )
}

/// The fields an agent's metrics and each `group_by=agent` row share.
fn group_fields(size: Option<&GroupSize>, c: &Counts) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("messages_in_window".into(), json!(size.map_or(0, |s| s.messages)));
    m.insert("messages_with_lifecycle".into(), json!(size.map_or(0, |s| s.with_lifecycle)));
    // Every row is recorded when it happens; none is rebuilt from message state.
    m.insert("reconstructed_observations".into(), json!(0));
    m.insert("rates".into(), rates(c));
    m.insert("summary".into(), summary(c));
    m.insert("counters".into(), counters(c));
    m
}

pub async fn agent(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let agent = agent_for(&state, &who, &email).await?;
    let (start, end) = window(&q)?;
    let cohort = Cohort::Agent(&agent.email);
    let counts = by_group(state.store.reason_counts(cohort, start, end, Split::None).await?);
    let sizes = state.store.group_sizes(cohort, start, end, Split::None).await?;
    let mut out = group_fields(sizes.first(), counts.get("").unwrap_or(&Counts::new()));
    out.insert("agent_email".into(), json!(agent.email));
    out.insert("start".into(), json!(start));
    out.insert("end".into(), json!(end));
    Ok(Json(Value::Object(out)))
}

fn webhooks(rows: &[WebhookCounts], start: Timestamp, retention_secs: i64) -> Value {
    let total = |f: fn(&WebhookCounts) -> i64| rows.iter().map(f).sum::<i64>();
    let deliveries = |w: &WebhookCounts| w.delivered + w.pending + w.rejected + w.no_response;
    let success = |d: i64, r: i64, n: i64| ratio(d, d + r + n);
    let mut busy: Vec<&WebhookCounts> = rows.iter().filter(|w| deliveries(w) > 0).collect();
    busy.sort_by_key(|w| std::cmp::Reverse(deliveries(w)));
    let truncated = busy.len() > MAX_ENDPOINTS;
    let endpoints: Vec<Value> = busy
        .iter()
        .take(MAX_ENDPOINTS)
        .map(|w| {
            let host = url::Url::parse(&w.url).ok().and_then(|u| u.host_str().map(str::to_owned));
            json!({
                "webhook_id": w.webhook_id,
                // Only the host: a webhook URL may carry a secret in its path or query.
                "url_host": host.unwrap_or_default(),
                "enabled": w.enabled,
                "auto_disabled_at": w.disabled_at,
                "auto_disable_reason": w.disabled_reason.clone().unwrap_or_default(),
                "deliveries": deliveries(w),
                "delivered": w.delivered,
                "pending": w.pending,
                "endpoint_rejected": w.rejected,
                "no_response": w.no_response,
                "last_status_code": w.last_status_code,
                "success_rate": success(w.delivered, w.rejected, w.no_response),
            })
        })
        .collect();
    let (delivered, rejected, no_response) =
        (total(|w| w.delivered), total(|w| w.rejected), total(|w| w.no_response));
    json!({
        "deliveries": total(deliveries),
        "delivered": delivered,
        "pending": total(|w| w.pending),
        "endpoint_rejected": rejected,
        "no_response": no_response,
        "success_rate": success(delivered, rejected, no_response),
        "endpoints": endpoints,
        "endpoints_truncated": truncated,
        "endpoints_auto_disabled": rows.iter().filter(|w| w.disabled_at.is_some()).count(),
        "window_exceeds_retention": start < Timestamp::now().plus_secs(-retention_secs),
    })
}

pub async fn account(
    State(state): State<AppState>,
    AccountScope(who): AccountScope,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = window(&q)?;
    let per_agent = match q.get("group_by") {
        None | Some("") => false,
        Some("agent") => true,
        Some(_) => return Err(ApiError::field("query.group_by", "must be agent")),
    };
    let per_day = match q.get("bucket") {
        None | Some("") => false,
        Some("day") => true,
        Some(_) => return Err(ApiError::field("query.bucket", "must be day")),
    };
    let cohort = Cohort::Account(&who.account_id);
    let store = &state.store;
    // Per agent when asked, and the account's totals summed from it (agents are disjoint
    // cohorts); otherwise the totals alone.
    let split = if per_agent { Split::Agent } else { Split::None };
    let by_agent = by_group(store.reason_counts(cohort, start, end, split).await?);
    let mut sizes = store.group_sizes(cohort, start, end, split).await?;
    let mut totals = Counts::new();
    for (reason, (m, o)) in by_agent.values().flatten() {
        let t = totals.entry(*reason).or_default();
        t.0 += m;
        t.1 += o;
    }
    let total = GroupSize {
        group: String::new(),
        messages: sizes.iter().map(|s| s.messages).sum(),
        with_lifecycle: sizes.iter().map(|s| s.with_lifecycle).sum(),
    };
    let mut out = group_fields(Some(&total), &totals);
    let mut agents = Vec::new();
    let mut truncated = false;
    if per_agent {
        sizes.sort_by_key(|s| (std::cmp::Reverse(s.messages), s.group.clone()));
        truncated = sizes.len() > MAX_AGENTS;
        for s in sizes.iter().take(MAX_AGENTS) {
            let mut row = group_fields(Some(s), by_agent.get(&s.group).unwrap_or(&Counts::new()));
            row.insert("agent_email".into(), json!(s.group));
            agents.push(Value::Object(row));
        }
    }
    let mut buckets = Vec::new();
    if per_day {
        let by_day = by_group(store.reason_counts(cohort, start, end, Split::Day).await?);
        // Every UTC day the window touches, empty ones too, oldest first.
        let first = start.as_micros().div_euclid(DAY_MICROS);
        let last = (end.as_micros() - 1).div_euclid(DAY_MICROS);
        for day in first..=last {
            let c = by_day.get(&day.to_string()).cloned().unwrap_or_default();
            buckets.push(json!({"day": Timestamp::from_micros(day * DAY_MICROS), "rates": rates(&c),
                "summary": summary(&c)}));
        }
    }
    let hooks = store.webhook_counts(&who.account_id, start, end).await?;
    let retention = i64::try_from(state.webhooks.events_retention.as_secs()).unwrap_or(i64::MAX);
    out.insert("start".into(), json!(start));
    out.insert("end".into(), json!(end));
    out.insert("agents".into(), Value::Array(agents));
    out.insert("agents_truncated".into(), json!(truncated));
    out.insert("buckets".into(), Value::Array(buckets));
    out.insert("webhooks".into(), webhooks(&hooks, start, retention));
    Ok(Json(Value::Object(out)))
}
