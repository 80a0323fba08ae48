//! Housekeeping on a timer: forgets idempotency keys past their retention, expires the event
//! log, ends webhook secret rotations whose grace is over, prunes old delivery rows, drops
//! domain registrations left unverified too long, soft bounces too old to be part of a
//! run, and ended console sign-ins and sessions. Every replica may run it; the deletes are idempotent.

use crate::store::Store;
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// How long completed `Idempotency-Key`s are remembered (the contract promises 24 h).
pub const IDEMPOTENCY_KEEP_SECS: i64 = 24 * 3600;

/// Events past their retention answer 410 `gone` for this long before they are deleted (and
/// become 404s).
pub const EVENT_TOMBSTONE_SECS: i64 = 7 * 86400;

/// Finished webhook delivery rows are kept this long (contract §11: 90 days).
pub const DELIVERY_KEEP_SECS: i64 = 90 * 86400;

/// What the janitor keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub events: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { events: Duration::from_secs(30 * 86400) }
    }
}

/// One pass; returns how many rows it changed or removed.
pub async fn sweep(store: &dyn Store, now: Timestamp, keep: Retention) -> Result<u64, crate::StoreError> {
    let keys = store.idempotency_expire(now.plus_secs(-IDEMPOTENCY_KEEP_SECS)).await?;
    let events_secs = i64::try_from(keep.events.as_secs()).unwrap_or(i64::MAX / 2);
    let events = store.expire_events(now.plus_secs(-(events_secs + EVENT_TOMBSTONE_SECS))).await?;
    let hooks = store.sweep_webhooks(now, now.plus_secs(-DELIVERY_KEEP_SECS)).await?;
    let domains = store
        .expire_unverified_domains(now.plus_secs(-crate::service::UNVERIFIED_DOMAIN_DAYS * 86_400))
        .await?;
    // Rate windows last an hour at most; a day of them is plenty for any question.
    let windows = store.expire_rate_windows(now.as_micros() / 1_000_000 - 86_400).await?;
    // A run looks back over messages of one window, whose DSNs may come one window later.
    let window = crate::mail::outbound::bounce::SOFT_BOUNCE_WINDOW_DAYS * 86_400;
    let soft = store.expire_soft_bounces(now.plus_secs(-2 * window)).await?;
    // Ended console sign-ins and sessions, a day after (the sessions page shows only live ones).
    let console = store.expire_console(now.plus_secs(-86_400)).await?;
    Ok(keys + events + hooks + domains + windows + soft + console)
}

/// Sweeps every `every` until `stop` resolves.
pub async fn run(
    store: Arc<dyn Store>,
    every: Duration,
    keep: Retention,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => match sweep(store.as_ref(), Timestamp::now(), keep).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(changed = n, "janitor: expired idempotency keys, events, rotations"),
                Err(e) => tracing::warn!(error = %e, "janitor: sweep failed; will retry"),
            },
        }
    }
}
