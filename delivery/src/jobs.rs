//! The skeleton every job worker shares (the webhook worker, the submitter): claim due jobs of
//! one kind under a lease, wait between claims for the bus to announce work (with a poll as
//! the fallback for retries coming due and notifications lost across replicas), and give the
//! leases back at stop.
//!
//! Leases make replicas safe: a job is run by one worker at a time, and a worker that dies
//! leaves its lease to expire so the job is claimed again (at-least-once).

use postagent_core::bus::BusMessage;
use postagent_core::store::{Job, Store};
use postagent_core::time::Timestamp;
use postagent_core::vocab::JobKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// One worker's view of the job table.
pub struct JobQueue {
    store: Arc<dyn Store>,
    /// The lease holder's name (`host-abc123`, `submit-abc123`).
    pub worker: String,
    lease_secs: i64,
    poll: Duration,
    bus: Receiver<Arc<BusMessage>>,
    wakes_on: fn(&BusMessage) -> bool,
}

impl JobQueue {
    /// Subscribes to the bus at once, so work announced from now on is never missed.
    /// `wakes_on` picks the bus messages that mean work for this worker.
    pub fn new(
        store: Arc<dyn Store>,
        worker: String,
        lease_secs: i64,
        poll: Duration,
        wakes_on: fn(&BusMessage) -> bool,
    ) -> Self {
        let bus = store.bus().subscribe();
        Self { store, worker, lease_secs, poll, bus, wakes_on }
    }

    /// Claims up to `want` due jobs of `kind`; a store failure is logged and claims nothing
    /// (the next round tries again).
    pub async fn claim(&self, kind: JobKind, want: u32) -> Vec<Job> {
        match self.store.claim_jobs(kind, &self.worker, Timestamp::now(), self.lease_secs, want).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(worker = %self.worker, %kind, error = %e, "cannot claim work; retrying");
                Vec::new()
            }
        }
    }

    /// Resolves when the bus announces work for this worker, a subscriber fell behind (it
    /// may have missed some), or the poll interval passed.
    pub async fn announced(&mut self) {
        let wakes_on = self.wakes_on;
        let bus = &mut self.bus;
        let heard = async move {
            loop {
                match bus.recv().await {
                    Ok(m) if wakes_on(&m) => return,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return,
                    Err(RecvError::Closed) => return std::future::pending().await,
                }
            }
        };
        let _ = tokio::time::timeout(self.poll, heard).await;
    }

    /// Gives back every lease this worker holds (at stop), so another worker need not wait
    /// for them to expire.
    pub async fn release(&self) {
        match self.store.release_jobs(&self.worker).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(worker = %self.worker, released = n, "gave back unfinished jobs"),
            Err(e) => {
                tracing::warn!(worker = %self.worker, error = %e, "cannot release leases; they expire by themselves")
            }
        }
    }
}
