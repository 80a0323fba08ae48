//! The webhook worker (`postagent worker`, part of `serve`): claims due deliveries from the
//! job table under a lease, so replicas never send the same try twice; POSTs each one signed
//! with both schemes; records an attempt row per try; and schedules the next try, gives up,
//! or disables the webhook.
//!
//! Delivery is at-least-once: a worker that dies mid-POST leaves its lease to expire and the
//! try is made again by whoever claims it next; receivers dedupe on the event id. A graceful
//! stop finishes the POSTs in flight (each is bounded by the timeout) and gives back the
//! leases of anything it could not finish.

pub mod client;
pub mod retry;

use crate::jobs::JobQueue;
use client::WebhookClient;
use postagent_core::bus::BusMessage;
use postagent_core::config::WebhookSettings;
use postagent_core::secret::Secret;
use postagent_core::store::{AttemptNext, AttemptRecord, DeliveryAttempt, FinishedAttempt, Job, Store};
use postagent_core::time::Timestamp;
use postagent_core::webhook_sig;
use rand::Rng;
use retry::Decision;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Due work is looked for at least this often (retries come due without any notification).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// A disabled webhook's deliveries wait this long, without using up a try.
const DISABLED_POSTPONE_SECS: i64 = 3600;

/// Claimed per round trip to the database at most.
const CLAIM_BATCH: u32 = 64;

/// Finished tries recorded per transaction at most.
const RECORD_BATCH: usize = 64;

pub struct Worker {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    client: WebhookClient,
    /// Opens the sealed subscription secrets.
    secret: Secret,
    id: String,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        settings: WebhookSettings,
        client: WebhookClient,
        secret: Secret,
    ) -> Self {
        let id = format!("{}-{}", hostname(), postagent_core::ids::mint("", 6));
        Self { store, settings, client, secret, id }
    }

    /// The lease of a claimed try: longer than any POST may take, so a live worker never
    /// loses its work; short enough that a dead one's work is retried soon.
    fn lease_secs(&self) -> i64 {
        i64::try_from(self.settings.timeout.as_secs()).unwrap_or(15) * 2 + 5
    }

    /// Runs until `stop` resolves, then drains within `grace`.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>, grace: Duration) {
        let me = Arc::new(self);
        let permits = Arc::new(Semaphore::new(me.settings.concurrency));
        let mut queue = JobQueue::new(me.store.clone(), me.id.clone(), me.lease_secs(), POLL_EVERY, |m| {
            matches!(m, BusMessage::Work)
                || matches!(m, BusMessage::Event { deliveries, .. } if *deliveries > 0)
        });
        let mut tasks = tokio::task::JoinSet::new();
        // Finished tries are recorded by one task, many per transaction (one commit each).
        let (finished, to_record) = tokio::sync::mpsc::channel(me.settings.concurrency * 2);
        let recorder = tokio::spawn(record_finished(me.store.clone(), to_record));
        tokio::pin!(stop);
        tracing::info!(worker = %me.id, concurrency = me.settings.concurrency, "webhook worker started");
        // Claim in batches: when a quarter of the slots are free (or nothing runs), not
        // after every single finished POST, so a busy worker makes few claim transactions.
        let threshold = (me.settings.concurrency / 4).max(1);
        loop {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits();
            let mut more = false;
            if free >= threshold || (tasks.is_empty() && free > 0) {
                let want = u32::try_from(free).unwrap_or(CLAIM_BATCH).min(CLAIM_BATCH);
                let jobs = queue.claim(postagent_core::vocab::JobKind::Webhook, want).await;
                more = jobs.len() == want as usize;
                for job in jobs {
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let worker = me.clone();
                    let finished = finished.clone();
                    tasks.spawn(async move {
                        if let Some(f) = worker.try_delivery(job).await {
                            let _ = finished.send(f).await;
                        }
                        drop(permit);
                    });
                }
            }
            if more && permits.available_permits() >= threshold {
                continue;
            }
            let saturated = permits.available_permits() < threshold;
            tokio::select! {
                () = &mut stop => break,
                () = queue.announced(), if !saturated => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(POLL_EVERY), if saturated => {}
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "webhook worker stopping: finishing deliveries in flight");
        }
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        drop(finished);
        let _ = recorder.await;
        queue.release().await;
        tracing::info!(worker = %me.id, "webhook worker stopped");
    }

    /// Makes one try; the finished try comes back to be recorded.
    async fn try_delivery(&self, job: Job) -> Option<FinishedAttempt> {
        match self.try_delivery_inner(&job).await {
            Ok(f) => f,
            Err(e) => {
                // The lease expires and the try is made again.
                tracing::warn!(delivery = %job.ref_id, error = %e, "webhook delivery: store failed; will retry");
                None
            }
        }
    }

    async fn try_delivery_inner(
        &self,
        job: &Job,
    ) -> Result<Option<FinishedAttempt>, postagent_core::StoreError> {
        let now = Timestamp::now();
        let Some(work) = self.store.delivery_work(&job.ref_id).await? else {
            // The event expired or the delivery was deleted with its webhook.
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(None);
        };
        let d = &work.delivery;
        let Some(hook) = &work.webhook else {
            tracing::info!(delivery = %d.id, event = %d.event_id, "webhook delivery failed: webhook not found");
            return self.store.fail_delivery(job.id, &d.id, "webhook not found", now).await.map(|()| None);
        };
        if !hook.enabled {
            let until = now.plus_secs(DISABLED_POSTPONE_SECS);
            return self
                .store
                .postpone_delivery(job.id, &self.id, until, "webhook is disabled")
                .await
                .map(|()| None);
        }
        let attempt = d.attempts + 1;
        let t = now.as_micros() / 1_000_000;
        // Secrets are sealed at rest: opened here, for this one signature.
        let current = webhook_sig::reveal_secret(&self.secret, &hook.secret);
        let previous = hook.live_previous_secret(now).map(|p| webhook_sig::reveal_secret(&self.secret, p));
        let (Some(current), Some(previous)) = (current, previous.map_or(Some(None), |p| p.map(Some))) else {
            tracing::error!(
                webhook = %hook.id,
                delivery = %d.id,
                "webhook secret cannot be opened (another deployment secret?); delivery failed"
            );
            return self
                .store
                .fail_delivery(job.id, &d.id, "webhook secret unreadable", now)
                .await
                .map(|()| None);
        };
        let sig = webhook_sig::sign(&current, previous.as_deref(), &d.event_id, t, work.payload.as_bytes());
        let posted = self.client.post(&hook.url, d.event_type.as_str(), &sig, &work.payload).await;
        let decision =
            retry::decide(&self.settings, attempt, &posted.answer, rand::thread_rng().gen_range(-1.0..=1.0));
        let finished = Timestamp::now();
        let next = match &decision {
            Decision::Delivered => AttemptNext::Delivered,
            Decision::Gone => AttemptNext::Gone,
            Decision::GiveUp => AttemptNext::Failed,
            Decision::RetryIn(delay) => {
                AttemptNext::Retry(finished.plus_micros(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX)))
            }
        };
        postagent_core::metrics::WEBHOOK_DELIVERY.observe(posted.duration);
        postagent_core::metrics::WEBHOOK_ATTEMPTS.inc(match &next {
            AttemptNext::Delivered => "delivered",
            AttemptNext::Gone => "gone",
            AttemptNext::Failed => "failed",
            AttemptNext::Retry(_) => "retry",
        });
        let disable_secs = i64::try_from(self.settings.disable_after.as_secs()).unwrap_or(i64::MAX / 2);
        let record = AttemptRecord {
            attempt: DeliveryAttempt {
                attempt,
                status_code: posted.status_code.map(i64::from),
                duration_ms: i64::try_from(posted.duration.as_millis()).unwrap_or(i64::MAX),
                response_body: posted.response.clone(),
                error: posted.error.clone(),
                created_at: finished,
            },
            next: next.clone(),
            auto_disable: Some((finished.plus_secs(-disable_secs), self.settings.disable_min_failures)),
        };
        let outcome = match &next {
            AttemptNext::Delivered => "delivered".to_owned(),
            AttemptNext::Gone => "failed: 410 Gone, webhook disabled".to_owned(),
            AttemptNext::Failed => "failed: no tries left".to_owned(),
            AttemptNext::Retry(at) => format!("retry at {at}"),
        };
        let line = format!(
            "{}: webhook msg={} event={} delivery={} webhook={} attempt={attempt} status={} ms={}",
            work.queue_id.as_deref().unwrap_or("NOQUEUE"),
            work.message_id.as_deref().unwrap_or("-"),
            d.event_id,
            d.id,
            hook.id,
            posted.status_code.map_or("-".to_owned(), |c| c.to_string()),
            posted.duration.as_millis(),
        );
        match (&next, &posted.error) {
            (AttemptNext::Delivered, _) => tracing::info!("{line}: {outcome}"),
            (_, Some(err)) => tracing::warn!("{line} error={err:?}: {outcome}"),
            (_, None) => tracing::warn!("{line}: {outcome}"),
        }
        Ok(Some(FinishedAttempt {
            job_id: job.id,
            worker: self.id.clone(),
            delivery_id: d.id.clone(),
            webhook_id: hook.id.clone(),
            record,
        }))
    }
}

/// Records finished tries as they come, up to [`RECORD_BATCH`] per transaction, until every
/// sender is gone. A batch that cannot be written keeps its leases, so its tries are made again
/// once they expire (at least once, never lost).
async fn record_finished(store: Arc<dyn Store>, mut rx: tokio::sync::mpsc::Receiver<FinishedAttempt>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        match store.finish_attempts(&batch).await {
            Ok(held) => {
                for (f, held) in batch.iter().zip(held) {
                    if !held {
                        tracing::warn!(delivery = %f.delivery_id, "webhook delivery: lease lost while posting; the new owner decides");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tries = batch.len(), "webhook worker: cannot record tries; they will be retried")
            }
        }
        batch.clear();
    }
}

/// Resolves when the bus says deliveries may be due (or that it missed messages).
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "postagent".into())
}
