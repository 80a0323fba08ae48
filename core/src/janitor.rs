//! Housekeeping on a timer: forgets idempotency keys past their retention. Every replica may
//! run it; the deletes are idempotent.

use crate::store::Store;
use crate::time::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// How long completed `Idempotency-Key`s are remembered (the contract promises 24 h).
pub const IDEMPOTENCY_KEEP_SECS: i64 = 24 * 3600;

/// One pass; returns how many rows it removed.
pub async fn sweep(store: &dyn Store, now: Timestamp) -> Result<u64, crate::StoreError> {
    store.idempotency_expire(now.plus_secs(-IDEMPOTENCY_KEEP_SECS)).await
}

/// Sweeps every `every` until `stop` resolves.
pub async fn run(store: Arc<dyn Store>, every: Duration, stop: impl std::future::Future<Output = ()>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => match sweep(store.as_ref(), Timestamp::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "janitor: expired idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "janitor: sweep failed; will retry"),
            },
        }
    }
}
