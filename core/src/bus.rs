//! The event bus: after the store commits an event, every part of this process that cares
//! hears of it at once (the WebSocket hub pushes `email.received`, the webhook worker wakes
//! up instead of waiting for its next poll).
//!
//! Across replicas the same messages travel by PostgreSQL `NOTIFY` on [`CHANNEL`], sent
//! inside the committing transaction (PostgreSQL delivers it on commit, never for a rollback)
//! and carrying ids only (payloads are capped at 8000 bytes). Each process tags what it sends
//! with its origin id and ignores its own notifications, which it has already published
//! locally. The bus is a fast path, never the record: the work itself is rows, so a
//! notification lost while a listener reconnects delays a webhook to the next poll and leaves
//! a WebSocket push to the next drain of unread mail, and loses nothing.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "postagent_bus";

/// How many messages a slow subscriber may fall behind before it misses some (it is told,
/// and the webhook worker then polls; the WebSocket hub relies on the drain).
const CAPACITY: usize = 8192;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum BusMessage {
    /// An event was committed, with `deliveries` webhook deliveries due now.
    #[serde(rename = "event")]
    Event {
        #[serde(rename = "e")]
        event_id: String,
        #[serde(rename = "k")]
        kind: crate::vocab::EventKind,
        #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
        agent_email: Option<String>,
        #[serde(rename = "d", default)]
        deliveries: usize,
        /// The stored envelope, when published in the process that stored it.
        #[serde(skip)]
        payload: Option<Arc<str>>,
    },
    /// Deliveries were scheduled without a new event (redeliver, test).
    #[serde(rename = "work")]
    Work,
    /// Jobs of `kind` were queued (an outbound message to submit, a review notice to send):
    /// the submitter wakes instead of waiting for its next poll.
    #[serde(rename = "jobs")]
    Jobs {
        #[serde(rename = "k")]
        kind: crate::vocab::JobKind,
    },
    /// Agents or agent domains changed (created, verified, trashed, restored, deleted): the
    /// Postfix lookup maps drop what they cached.
    #[serde(rename = "dir")]
    Directory,
    /// A WebSocket for `agent_email` was opened (connection `conn_id`): any other socket
    /// for that agent, on any replica, is closed as replaced.
    #[serde(rename = "ws")]
    WsClaimed {
        #[serde(rename = "a")]
        agent_email: String,
        #[serde(rename = "c")]
        conn_id: String,
        /// When it was opened (unix microseconds): only older sockets give way, so a
        /// notification that arrives late never closes a newer socket.
        #[serde(rename = "at", default)]
        opened_at: i64,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    o: String,
    #[serde(flatten)]
    msg: BusMessage,
}

/// One process's bus.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<BusMessage>>,
    origin: Arc<str>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").field("origin", &self.origin).finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx, origin: crate::ids::mint("", 8).into() }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.tx.subscribe()
    }

    /// Delivers to this process's subscribers (none listening is fine).
    pub fn publish(&self, msg: BusMessage) {
        let _ = self.tx.send(Arc::new(msg));
    }

    /// The `NOTIFY` payload for `msg`, tagged with this process.
    pub fn wire(&self, msg: &BusMessage) -> String {
        serde_json::to_string(&Wire { o: self.origin.to_string(), msg: msg.clone() }).unwrap_or_default()
    }

    /// Publishes a notification received from PostgreSQL unless this process sent it.
    pub fn accept_wire(&self, payload: &str) {
        match serde_json::from_str::<Wire>(payload) {
            Ok(w) if *w.o == *self.origin => {}
            Ok(w) => self.publish(w.msg),
            Err(e) => tracing::debug!(error = %e, "bus: ignoring a malformed notification"),
        }
    }
}

/// Relays [`CHANNEL`] notifications from PostgreSQL into `bus` until `stop` resolves,
/// reconnecting (with backoff) whenever the connection drops.
pub async fn listen_postgres(url: String, bus: EventBus, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut backoff = std::time::Duration::from_millis(200);
    loop {
        let connected = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = &mut stop => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "bus: cannot LISTEN on PostgreSQL; retrying in {backoff:?}");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                    continue;
                }
            },
        };
        tracing::debug!("bus: listening for notifications from other replicas");
        backoff = std::time::Duration::from_millis(200);
        loop {
            tokio::select! {
                () = &mut stop => return,
                n = listener.try_recv() => match n {
                    Ok(Some(n)) => bus.accept_wire(n.payload()),
                    // The connection dropped; notifications sent meanwhile are lost (see above).
                    // Subscribers are told to catch up by polling.
                    Ok(None) => {
                        tracing::warn!("bus: PostgreSQL connection lost; reconnecting");
                        bus.publish(BusMessage::Work);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "bus: notification stream failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_and_own_echo_ignored() {
        let a = EventBus::new();
        let b = EventBus::new();
        let mut rx_a = a.subscribe();
        let mut rx_b = b.subscribe();
        let msg = BusMessage::Event {
            event_id: "evt_1".into(),
            kind: crate::vocab::EventKind::EmailReceived,
            agent_email: Some("x@y.test".into()),
            deliveries: 2,
            payload: Some("{}".into()),
        };
        let wire = a.wire(&msg);
        assert!(!wire.contains("{}\""), "payloads never travel: {wire}");
        a.accept_wire(&wire);
        b.accept_wire(&wire);
        assert!(rx_a.try_recv().is_err(), "a process ignores its own notification");
        let got = rx_b.try_recv().expect("b hears a");
        let BusMessage::Event { event_id, deliveries, payload, .. } = got.as_ref() else { panic!("{got:?}") };
        assert_eq!((event_id.as_str(), *deliveries, payload), ("evt_1", 2, &None));
    }
}
