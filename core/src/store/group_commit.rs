//! Group commit of inbound deliveries: the messages concurrent LMTP sessions store at the same
//! time are written in one transaction, and each caller is answered only after that commit.
//!
//! Why: every stored message used to be its own write transaction, so on SQLite (one writer,
//! `synchronous = FULL`, a WAL sync per commit) and on PostgreSQL (a WAL flush per commit)
//! the commit itself dominated at load, and the same index and rollup pages were written once
//! per message. Here one task takes every message waiting when it is free
//! (`recv_many`), writes them all in one transaction and commits once: at idle a batch is one
//! message and waits for nothing (no timer); under load the batch grows by itself while the
//! previous commit runs. This is how PostgreSQL's and InnoDB's group commit behave.
//!
//! Nothing changes for a caller: [`MessageStore::insert_inbound`](super::MessageStore) still
//! returns only once its rows are durable, with its own result. A batch whose transaction
//! fails on one of its statements is rolled back whole and its messages are written again one
//! by one, so one bad message (or a PostgreSQL statement error, which aborts the whole
//! transaction) costs only its own delivery; the inserts are idempotent per agent and milter
//! message id, so the retry cannot store anything twice. When the database itself is
//! unavailable (busy, unreachable, out of connections) or a batch takes longer than
//! [`BATCH_LIMIT`], every message of the batch is answered "try again later" at once instead:
//! retrying each against a database that is down would hold every other delivery of the
//! process behind them for minutes.

use super::models::{Inserted, NewAttachment, NewEvent, NewInboundMessage};
use super::{SqlStore, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

/// At most this many messages in one transaction.
const MAX_BATCH: usize = 64;
/// And at most about this many bytes of raw messages, so one batch of large messages does
/// not hold the single SQLite writer for long.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Messages waiting for the committer; a full queue makes callers wait (back-pressure).
const QUEUE: usize = 1024;
/// The longest one batch may take before its callers are told to try again (Postfix waits
/// `lmtp_data_done_timeout`, 600 s, for the reply; a stuck statement must not hold everyone).
pub(super) const BATCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// One message to store, with the channel its result goes back on.
pub(super) struct Pending {
    pub msg: NewInboundMessage,
    pub attachments: Vec<NewAttachment>,
    pub events: Vec<NewEvent>,
    reply: oneshot::Sender<StoreResult<Inserted>>,
}

/// The handle callers submit through (cloned with the store).
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the committer task on the current runtime. `store` must not hold a
    /// `GroupCommit` itself: the task ends when every handle is dropped, and a handle inside
    /// its own store would keep it (and the pool) alive forever.
    pub(super) fn start(store: SqlStore) -> GroupCommit {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        GroupCommit { queue }
    }

    /// Stores one message in the next batch and waits for its commit. `fallback` writes it
    /// alone when the committer is gone (its runtime shut down).
    pub(super) async fn submit(
        &self,
        store: &SqlStore,
        msg: NewInboundMessage,
        attachments: Vec<NewAttachment>,
        events: Vec<NewEvent>,
    ) -> StoreResult<Inserted> {
        let (reply, answer) = oneshot::channel();
        match self.queue.send(Pending { msg, attachments, events, reply }).await {
            // The committer stopped while holding the message: only when its runtime is
            // shutting down.
            Ok(()) => answer.await.unwrap_or_else(|_| Err(try_later())),
            Err(mpsc::error::SendError(p)) => {
                store.insert_inbound_now(&p.msg, &p.attachments, &p.events).await
            }
        }
    }
}

async fn run(store: SqlStore, mut rx: mpsc::Receiver<Pending>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let mut rest = std::mem::take(&mut waiting);
        while !rest.is_empty() {
            let mut bytes = 0;
            let take = rest
                .iter()
                .position(|p| {
                    bytes += p.msg.raw.len();
                    bytes >= MAX_BATCH_BYTES
                })
                .map_or(rest.len(), |i| i + 1);
            let later = rest.split_off(take);
            commit(&store, rest).await;
            rest = later;
        }
    }
}

/// Writes `batch` in one transaction, or each alone if one of its statements failed, and
/// answers every caller.
async fn commit(store: &SqlStore, batch: Vec<Pending>) {
    let written = tokio::time::timeout(BATCH_LIMIT, async {
        if batch.len() == 1 {
            let p = &batch[0];
            store.insert_inbound_now(&p.msg, &p.attachments, &p.events).await.map(|r| vec![r])
        } else {
            store.insert_inbound_batch(&batch).await
        }
    })
    .await;
    match written {
        Ok(Ok(results)) => {
            for (p, r) in batch.into_iter().zip(results) {
                let _ = p.reply.send(Ok(r));
            }
        }
        Ok(Err(e)) if batch.len() > 1 && !e.is_unavailable() => {
            tracing::debug!(messages = batch.len(), error = %e, "group commit failed; storing one by one");
            for p in batch {
                let result = tokio::time::timeout(
                    BATCH_LIMIT,
                    store.insert_inbound_now(&p.msg, &p.attachments, &p.events),
                )
                .await
                .unwrap_or_else(|_| Err(try_later()));
                let _ = p.reply.send(result);
            }
        }
        Ok(Err(e)) => {
            let mut first = Some(e);
            for p in batch {
                let _ = p.reply.send(Err(first.take().unwrap_or_else(try_later)));
            }
        }
        Err(_) => {
            tracing::warn!(messages = batch.len(), limit = ?BATCH_LIMIT, "group commit timed out; deferring its messages");
            for p in batch {
                let _ = p.reply.send(Err(try_later()));
            }
        }
    }
}

/// "Try again later" (LMTP answers 451, Postfix keeps the message): for the other callers of a
/// batch the database refused, for a write that took longer than [`BATCH_LIMIT`], and when
/// the committer is gone.
fn try_later() -> StoreError {
    StoreError::Database(sqlx::Error::PoolTimedOut)
}
