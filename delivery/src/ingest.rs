//! The LMTP backend that files mail into the store: the glue between the protocol
//! ([`crate::lmtp`]) and the inbound rules ([`postagent_core::mail::inbound`]).
//!
//! `250` for a recipient only once its copy is committed; a store failure is `451 4.3.0`
//! (Postfix keeps the message and retries); an unknown or deleted agent is `550 5.1.1`.

use crate::lmtp::{Envelope, LmtpBackend, Reply};
use postagent_core::mail::inbound::{self, Delivered, IngestError};
use postagent_core::mail::outbound::bounce::{self, BounceOutcome, BouncePolicy};
use postagent_core::mail::outbound::verp;
use postagent_core::metrics;
use postagent_core::secret::Secret;
use postagent_core::store::Store;
use postagent_core::time::Timestamp;
use std::sync::Arc;

/// Messages up to this size are parsed on the session's own task (well under a
/// millisecond); larger ones on the blocking pool.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

pub struct StoreBackend {
    store: Arc<dyn Store>,
    secret: Secret,
    bounces: BouncePolicy,
    /// Postfix's `recipient_delimiter` (`bot+tag@…` is agent `bot@…`'s mail).
    delimiter: String,
}

impl StoreBackend {
    pub fn new(store: Arc<dyn Store>, secret: Secret, bounces: BouncePolicy, delimiter: String) -> Self {
        Self { store, secret, bounces, delimiter }
    }
}

impl StoreBackend {
    /// A delivery status notification for one of our outbound messages: applied to it, then
    /// dropped (a report is not mail for an agent's inbox).
    async fn bounce(&self, queue_id: &str, message_id: &str, rcpt: &str, raw: &[u8]) -> Reply {
        match bounce::apply(self.store.as_ref(), message_id, raw, self.bounces, Timestamp::now()).await {
            Ok(BounceOutcome::Bounced { recipients }) => {
                tracing::info!(
                    "{queue_id}: bounce msg={message_id} to=<{rcpt}> bounced={}",
                    recipients.join(",")
                );
                Reply::Ok
            }
            Ok(BounceOutcome::Complained { recipients }) => {
                tracing::info!(
                    "{queue_id}: complaint msg={message_id} to=<{rcpt}> suppressed={}",
                    recipients.join(",")
                );
                Reply::Ok
            }
            Ok(other) => {
                tracing::info!("{queue_id}: bounce msg={message_id} to=<{rcpt}> ignored: {other:?}");
                Reply::Ok
            }
            Err(e) => {
                tracing::warn!("{queue_id}: defer bounce msg={message_id}: store failed: {e}");
                Reply::store_unavailable()
            }
        }
    }
}

#[async_trait::async_trait]
impl LmtpBackend for StoreBackend {
    async fn check_recipient(&self, rcpt: &str) -> Reply {
        if verp::looks_like_bounce(rcpt) {
            // Our outbound mail's envelope sender: only a genuine (tagged) one is accepted.
            return match verp::parse_bounce(&self.secret, rcpt, Timestamp::now()) {
                Some(_) => Reply::Ok,
                None => Reply::unknown_recipient(),
            };
        }
        match inbound::recipient_agent(self.store.as_ref(), rcpt, &self.delimiter).await {
            Ok(Some(_)) => Reply::Ok,
            Ok(None) => Reply::unknown_recipient(),
            Err(e) => {
                tracing::warn!("NOQUEUE: lmtp defer RCPT <{rcpt}>: agent lookup failed: {e}");
                Reply::store_unavailable()
            }
        }
    }

    async fn deliver(&self, envelope: &Envelope, data: bytes::Bytes) -> Vec<Reply> {
        let secret = self.secret.clone();
        let mail_from = envelope.mail_from.clone();
        let recipients = envelope.recipients.clone();
        let size = data.len();
        // Signature check and MIME parsing are CPU work on up to max_message_bytes: large
        // messages go to the blocking pool so they never stall other sessions; a small one
        // is parsed in place, faster than the two thread hops would be.
        // `Vec::from` takes the buffer over when this is its only owner: no copy of the message.
        let prepare =
            move || inbound::prepare(&secret, Vec::from(data), &mail_from, &recipients, Timestamp::now());
        let prepared = if size <= PARSE_INLINE_BYTES {
            Ok(prepare())
        } else {
            tokio::task::spawn_blocking(prepare).await
        };
        let mut prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(
                    "NOQUEUE: lmtp defer from=<{}>: parsing the message failed: {e}",
                    envelope.mail_from
                );
                return envelope.recipients.iter().map(|_| Reply::store_unavailable()).collect();
            }
        };
        prepared.recipient_delimiter.clone_from(&self.delimiter);
        let queue_id = prepared.postfix_queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
        match (&prepared.claims, &prepared.unsigned_reason) {
            (Some(c), _) => tracing::info!(
                "{queue_id}: lmtp msg={} from=<{}> signed=yes verified={} verified_domain={}",
                c.message_id,
                envelope.mail_from,
                c.verified(),
                c.authentication.verified_domain().unwrap_or("-")
            ),
            (None, reason) => tracing::warn!(
                "{queue_id}: lmtp from=<{}> signed=no binding={} reason={:?}: stored without authentication",
                envelope.mail_from,
                prepared.unsigned_binding.unwrap_or("missing"),
                reason.as_deref().unwrap_or("unknown")
            ),
        }
        if let Some(c) = &prepared.claims {
            for rcpt in &prepared.unbound {
                tracing::warn!(
                    "{queue_id}: lmtp msg={} to=<{rcpt}> signed=no binding=recipient reason=\"the set was not made \
                     for this recipient\": stored without authentication",
                    c.message_id
                );
            }
        }
        let mut replies = Vec::with_capacity(envelope.recipients.len());
        for rcpt in &envelope.recipients {
            if let Some(message_id) = verp::parse_bounce(&self.secret, rcpt, Timestamp::now()) {
                metrics::LMTP_RECIPIENTS.inc("bounce");
                replies.push(self.bounce(&queue_id, &message_id, rcpt, &prepared.raw).await);
                continue;
            }
            let started = std::time::Instant::now();
            let stored = inbound::store_for(self.store.as_ref(), &prepared, rcpt, Timestamp::now()).await;
            metrics::LMTP_COMMIT.observe(started.elapsed());
            metrics::LMTP_RECIPIENTS.inc(match &stored {
                Ok(Delivered::Stored { .. }) => "stored",
                Ok(Delivered::Duplicate { .. }) => "duplicate",
                Err(IngestError::UnknownAgent(_)) => "unknown",
                Err(IngestError::Store(_)) => "deferred",
            });
            let reply = match stored {
                Ok(Delivered::Stored { id }) => {
                    tracing::info!("{queue_id}: stored msg={id} agent={rcpt} source={}", prepared.source_id);
                    Reply::Ok
                }
                Ok(Delivered::Duplicate { id }) => {
                    tracing::info!(
                        "{queue_id}: duplicate msg={id} agent={rcpt} source={}: already stored",
                        prepared.source_id
                    );
                    Reply::Ok
                }
                Err(IngestError::UnknownAgent(_)) => {
                    tracing::info!("{queue_id}: reject agent={rcpt}: no such agent");
                    Reply::unknown_recipient()
                }
                Err(IngestError::Store(e)) => {
                    tracing::warn!("{queue_id}: defer agent={rcpt}: store failed: {e}");
                    Reply::store_unavailable()
                }
            };
            replies.push(reply);
        }
        replies
    }
}
