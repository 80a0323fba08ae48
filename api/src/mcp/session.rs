//! Sessions, for resource notifications only. `initialize` answers an `Mcp-Session-Id`: a
//! random id with an HMAC over it and the API key's id, so any replica can check it without
//! storing anything. Requests stay stateless (a request without the header, or with one that
//! does not check, is served as e2a serves it); the session only names where notifications go:
//! `GET /mcp` with it opens an SSE stream, `resources/subscribe` with it adds a URI to that
//! stream's interests, and new mail for a subscribed agent (heard on the bus) is announced as
//! `notifications/resources/updated`.
//!
//! Subscriptions live in the process that took the `resources/subscribe`; behind several API
//! replicas, route a session's requests to one replica (its `Mcp-Session-Id` is the key).

use postagent_core::bus::BusMessage;
use postagent_core::secret::Secret;
use postagent_core::sign::{ct_eq, hmac_sha256};
use postagent_core::store::Store;
use postagent_core::vocab::EventKind;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

const LABEL: &[u8] = b"postagent-mcp-session-v1\n";
/// Sessions with interests kept per process; the oldest goes first past it.
const MAX_SESSIONS: usize = 10_000;
/// URIs one session may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// Notifications queued for a slow stream before new ones are dropped.
const STREAM_BUFFER: usize = 64;

/// A new session id for the key `key_id`.
pub fn mint(secret: &Secret, key_id: &str) -> String {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mac = hmac_sha256(secret.expose(), &[LABEL, key_id.as_bytes(), b"\n", nonce.as_bytes()]);
    format!("mcps_{nonce}.{}", hex::encode(&mac[..16]))
}

/// Whether `id` was minted for `key_id` by this deployment.
pub fn valid(secret: &Secret, key_id: &str, id: &str) -> bool {
    let Some((nonce, mac)) = id.strip_prefix("mcps_").and_then(|r| r.split_once('.')) else { return false };
    let Ok(mac) = hex::decode(mac) else { return false };
    let want = hmac_sha256(secret.expose(), &[LABEL, key_id.as_bytes(), b"\n", nonce.as_bytes()]);
    nonce.len() == 32 && ct_eq(&mac, &want[..16])
}

#[derive(Default)]
struct Session {
    uris: HashSet<String>,
    streams: Vec<mpsc::Sender<Value>>,
}

/// The sessions by id, and their ids oldest first (for the cap).
type Registry = (HashMap<String, Session>, Vec<String>);

/// This process's sessions with interests.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Registry>>);

impl Sessions {
    /// Starts the registry and its bus listener (new mail → `resources/updated`).
    pub fn start(store: Arc<dyn Store>) -> Self {
        let sessions = Self::default();
        let feeder = sessions.clone();
        tokio::spawn(async move { feeder.feed(store).await });
        sessions
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Session>, &mut Vec<String>) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *guard;
        f(map, order)
    }

    fn entry<'a>(
        map: &'a mut HashMap<String, Session>,
        order: &mut Vec<String>,
        id: &str,
    ) -> &'a mut Session {
        if !map.contains_key(id) {
            if order.len() >= MAX_SESSIONS {
                let oldest = order.remove(0);
                map.remove(&oldest);
            }
            order.push(id.to_owned());
        }
        map.entry(id.to_owned()).or_default()
    }

    /// Adds `uri` to the session's interests; `false` past [`MAX_SUBSCRIPTIONS`].
    pub fn subscribe(&self, id: &str, uri: &str) -> bool {
        self.with(|map, order| {
            let s = Self::entry(map, order, id);
            if s.uris.len() >= MAX_SUBSCRIPTIONS && !s.uris.contains(uri) {
                return false;
            }
            s.uris.insert(uri.to_owned());
            true
        })
    }

    pub fn unsubscribe(&self, id: &str, uri: &str) {
        self.with(|map, _| {
            if let Some(s) = map.get_mut(id) {
                s.uris.remove(uri);
            }
        });
    }

    /// A stream for the session: notifications arrive on the receiver.
    pub fn open(&self, id: &str) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.with(|map, order| Self::entry(map, order, id).streams.push(tx));
        rx
    }

    /// Forgets the session (`DELETE /mcp`).
    pub fn end(&self, id: &str) {
        self.with(|map, order| {
            map.remove(id);
            order.retain(|o| o != id);
        });
    }

    /// Sends `resources/updated` for each of `uris` to every stream interested in it.
    pub fn announce(&self, uris: &[String]) {
        self.with(|map, _| {
            for s in map.values_mut() {
                s.streams.retain(|t| !t.is_closed());
                for uri in uris.iter().filter(|u| s.uris.contains(*u)) {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
                    for t in &s.streams {
                        // A stream that does not keep up misses notifications, never blocks mail.
                        let _ = t.try_send(note.clone());
                    }
                }
            }
        });
    }

    async fn feed(&self, store: Arc<dyn Store>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut bus = store.bus().subscribe();
        loop {
            match bus.recv().await {
                Ok(m) => {
                    if let BusMessage::Event {
                        kind: EventKind::EmailReceived,
                        agent_email: Some(agent),
                        ..
                    } = m.as_ref()
                    {
                        self.announce(&super::resources::Resource::changed_by_mail(agent));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "mcp: resource notifications fell behind")
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_check_only_for_their_key() {
        let secret = Secret::new(vec![3; 32]);
        let id = mint(&secret, "key_a");
        assert!(valid(&secret, "key_a", &id));
        assert!(!valid(&secret, "key_b", &id));
        assert!(!valid(&Secret::new(vec![4; 32]), "key_a", &id));
        assert!(!valid(&secret, "key_a", "mcps_00.00") && !valid(&secret, "key_a", "garbage"));
    }

    #[tokio::test]
    async fn subscribed_streams_hear_their_uris_only() {
        let sessions = Sessions::default();
        let mut rx = sessions.open("s1");
        assert!(sessions.subscribe("s1", "postagent://agents/a@x.test/inbox"));
        sessions.announce(&[
            "postagent://agents/b@x.test/inbox".into(),
            "postagent://agents/a@x.test/inbox".into(),
        ]);
        let note = rx.recv().await.expect("note");
        assert_eq!(note["params"]["uri"], "postagent://agents/a@x.test/inbox");
        assert!(rx.try_recv().is_err());
        for i in 0..MAX_SUBSCRIPTIONS {
            sessions.subscribe("s2", &format!("u{i}"));
        }
        assert!(!sessions.subscribe("s2", "one-too-many"));
    }
}
