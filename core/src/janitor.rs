//! Housekeeping on a timer: forgets idempotency keys past their retention, expires the event
//! log, ends webhook secret rotations whose grace is over, prunes old delivery rows, drops
//! domain registrations left unverified too long, soft bounces too old to be part of a
//! run, and ended console sign-ins and sessions. Every replica may run it; the deletes are idempotent.
//!
//! Retention ([`purge`]) is heavier: the trash purged after `trash_retention_days`, and the
//! bodies of old mail dropped after `message_retention_days`. It runs in bounded batches, on
//! the one replica holding the `retention` lease at a time.

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

/// Rows purged per batch (one short transaction each).
pub const PURGE_BATCH: i64 = 500;
/// Batches per sweep: a larger backlog is worked off over the following sweeps.
pub const PURGE_BATCHES: u32 = 40;
/// Trashed agents looked at per sweep.
const AGENTS_PER_SWEEP: i64 = 50;
/// The lease that makes one replica at a time do the purges.
pub const RETENTION_LEASE: &str = "retention";

/// What the janitor keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub events: Duration,
    /// How long the trash keeps messages and agents.
    pub trash: Duration,
    /// How long bodies are kept; `None`: for ever.
    pub bodies: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Self { events: Duration::from_secs(30 * 86400), trash: Duration::from_secs(30 * 86400), bodies: None }
    }
}

impl Retention {
    /// From the configuration's day counts (`message_retention_days = 0`: bodies kept).
    pub fn new(events: Duration, trash_days: u32, body_days: u32) -> Self {
        let days = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
        Self { events, trash: days(trash_days), bodies: (body_days > 0).then(|| days(body_days)) }
    }
}

/// What one [`purge`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Trashed messages deleted (those of purged agents included).
    pub messages: u64,
    pub agents: u64,
    /// Messages whose bodies were dropped.
    pub bodies: u64,
    /// Whether this replica held the lease (and so did the work).
    pub leased: bool,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// The retention purges, as `holder`, when it holds (or takes) the lease: at most
/// [`PURGE_BATCHES`] batches of [`PURGE_BATCH`] rows.
pub async fn purge(
    store: &dyn Store,
    now: Timestamp,
    keep: Retention,
    holder: &str,
    lease: Duration,
) -> Result<Purged, crate::StoreError> {
    let mut done = Purged::default();
    if !store.take_lease(RETENTION_LEASE, holder, now, now.plus_secs(secs(lease))).await? {
        return Ok(done);
    }
    done.leased = true;
    let mut budget = PURGE_BATCHES;
    let trash_before = now.plus_secs(-secs(keep.trash));
    while budget > 0 {
        budget -= 1;
        let n = store.purge_trashed_messages(trash_before, PURGE_BATCH).await?;
        done.messages += n;
        if n < PURGE_BATCH as u64 {
            break;
        }
    }
    // An agent goes with its messages, which are deleted in batches first.
    'agents: for (account, email) in store.trashed_agents(trash_before, AGENTS_PER_SWEEP).await? {
        loop {
            if budget == 0 {
                break 'agents;
            }
            budget -= 1;
            let n = store.purge_agent_messages(&account, &email, trash_before, PURGE_BATCH).await?;
            done.messages += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        if store.purge_trashed_agent(&account, &email, trash_before).await? {
            tracing::info!(account = %account, agent = %email, "janitor: trashed agent purged");
            done.agents += 1;
        }
    }
    if let Some(bodies) = keep.bodies {
        let before = now.plus_secs(-secs(bodies));
        while budget > 0 {
            budget -= 1;
            let n = store.drop_bodies(before, PURGE_BATCH).await?;
            done.bodies += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
    }
    if done.messages + done.agents + done.bodies > 0 {
        tracing::info!(
            messages = done.messages,
            agents = done.agents,
            bodies = done.bodies,
            "janitor: retention purged the trash and old bodies"
        );
    }
    Ok(done)
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

/// Sweeps every `every` until `stop` resolves; the retention purges run on the replica that
/// holds the lease (for three sweeps, renewed each time).
pub async fn run(
    store: Arc<dyn Store>,
    every: Duration,
    keep: Retention,
    stop: impl std::future::Future<Output = ()>,
) {
    let holder = crate::ids::mint("janitor_", 8);
    let lease = every.saturating_mul(3);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {
                match sweep(store.as_ref(), Timestamp::now(), keep).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(changed = n, "janitor: expired idempotency keys, events, rotations"),
                    Err(e) => tracing::warn!(error = %e, "janitor: sweep failed; will retry"),
                }
                if let Err(e) = purge(store.as_ref(), Timestamp::now(), keep, &holder, lease).await {
                    tracing::warn!(error = %e, "janitor: retention purge failed; will retry");
                }
            }
        }
    }
}
