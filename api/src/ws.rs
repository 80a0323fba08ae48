//! `GET /v1/agents/{email}/ws`: the inbound stream for agents without a public URL.
//!
//! Auth is the Bearer header only, checked before the upgrade so failures are ordinary JSON
//! errors (401/403/404). One socket per agent: a newer one, on any replica, closes the older
//! with 4000 `replaced`. On connect the socket gets up to 100 unread inbound messages oldest
//! first, each as its stored `email.received` envelope, then live envelopes as mail is
//! stored (the bus: in process, and from other replicas by PostgreSQL NOTIFY). The server
//! pings every `ws_ping_interval`; no pong within [`PONG_DEADLINE`] closes 1001
//! `ping_timeout`; a server stop closes 1001 `shutting_down`. Client frames are ignored.

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::normalize;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use postagent_core::bus::BusMessage;
use postagent_core::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a pong may take after a ping.
pub const PONG_DEADLINE: Duration = Duration::from_secs(10);
/// Unread messages sent on connect, at most.
pub const DRAIN_LIMIT: u32 = 100;
/// Pushes queued for one socket before it counts as too slow (it is then closed; the client
/// reconnects and the drain catches it up).
const QUEUE: usize = 64;

enum Push {
    Frame { event_id: String, payload: Arc<str> },
    Close(u16, &'static str),
}

struct Slot {
    conn_id: String,
    opened_at: i64,
    tx: mpsc::Sender<Push>,
}

struct HubInner {
    sockets: Mutex<HashMap<String, Slot>>,
    store: Arc<dyn Store>,
    ping_every: Duration,
    stopping: watch::Sender<bool>,
}

/// The registry of open sockets, one per agent, fed from the bus.
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

impl Hub {
    /// A hub listening to `store`'s bus (the listening task ends with the runtime).
    pub fn start(store: Arc<dyn Store>, ping_every: Duration) -> Self {
        let (stopping, _) = watch::channel(false);
        let hub =
            Hub(Arc::new(HubInner { sockets: Mutex::new(HashMap::new()), store, ping_every, stopping }));
        let feeder = hub.clone();
        tokio::spawn(async move { feeder.feed().await });
        hub
    }

    /// Open sockets in this process.
    pub fn open_sockets(&self) -> usize {
        self.lock().len()
    }

    /// Turns `true` when the API shuts down (long-lived streams end then).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.subscribe()
    }

    /// Closes every socket with 1001 `shutting_down` and refuses new ones.
    pub fn shut_down(&self) {
        let _ = self.0.stopping.send(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.sockets.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn feed(&self) {
        use tokio::sync::broadcast::error::RecvError;
        let mut bus = self.0.store.bus().subscribe();
        loop {
            let msg = match bus.recv().await {
                Ok(m) => m,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "ws hub: fell behind the bus; those messages reach sockets on reconnect"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            match msg.as_ref() {
                BusMessage::Event { event_id, kind, agent_email: Some(agent), payload, .. }
                    if *kind == postagent_core::vocab::EventKind::EmailReceived =>
                {
                    let Some(tx) = self.lock().get(agent).map(|s| s.tx.clone()) else { continue };
                    let payload = match payload {
                        Some(p) => p.clone(),
                        // Stored by another replica: the bytes are in the database.
                        None => match self.0.store.event_payload(event_id).await {
                            Ok(Some(p)) => Arc::from(p),
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::warn!(event = %event_id, error = %e, "ws hub: cannot load the event");
                                continue;
                            }
                        },
                    };
                    if tx.try_send(Push::Frame { event_id: event_id.clone(), payload }).is_err() {
                        tracing::warn!(agent = %agent, "ws: client too slow; closing it to reconnect and drain");
                        let _ = tx.try_send(Push::Close(1011, "client too slow"));
                    }
                }
                BusMessage::WsClaimed { agent_email, conn_id, opened_at } => {
                    // Another replica opened a socket for this agent: ours goes if it is older.
                    let mut sockets = self.lock();
                    if sockets
                        .get(agent_email)
                        .is_some_and(|s| s.conn_id != *conn_id && s.opened_at <= *opened_at)
                        && let Some(old) = sockets.remove(agent_email)
                    {
                        let _ = old.tx.try_send(Push::Close(4000, "replaced"));
                    }
                }
                _ => {}
            }
        }
    }

    fn register(&self, agent: &str) -> (String, i64, mpsc::Receiver<Push>) {
        let conn_id = postagent_core::ids::mint("", 8);
        let opened_at = postagent_core::time::Timestamp::now().as_micros();
        let (tx, rx) = mpsc::channel(QUEUE);
        let old = self.lock().insert(agent.to_owned(), Slot { conn_id: conn_id.clone(), opened_at, tx });
        if let Some(old) = old {
            let _ = old.tx.try_send(Push::Close(4000, "replaced"));
        }
        (conn_id, opened_at, rx)
    }

    fn unregister(&self, agent: &str, conn_id: &str) {
        let mut sockets = self.lock();
        if sockets.get(agent).is_some_and(|s| s.conn_id == conn_id) {
            sockets.remove(agent);
        }
    }
}

pub async fn handler(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let email = normalize(&email);
    // Another account's agent and a missing one look the same.
    let agent = state
        .store
        .get_agent(&who.account_id, &email)
        .await?
        .filter(|a| a.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found("agent"))?;
    who.require_agent(&agent.email)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "invalid_request",
            format!("this endpoint is a WebSocket: {e}"),
        )
    })?;
    let hub = state.hub.clone();
    Ok(upgrade
        // Small buffers: a socket mostly idles, and an idle socket should cost little.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move { serve(hub, agent.email, socket).await }))
}

async fn serve(hub: Hub, agent: String, mut socket: WebSocket) {
    let (conn_id, opened_at, mut rx) = hub.register(&agent);
    if let Err(e) = hub
        .0
        .store
        .tell_replicas(BusMessage::WsClaimed {
            agent_email: agent.clone(),
            conn_id: conn_id.clone(),
            opened_at,
        })
        .await
    {
        tracing::warn!(agent = %agent, error = %e, "ws: cannot tell other replicas about this socket");
    }
    tracing::info!(agent = %agent, conn = %conn_id, "ws: connected");
    let reason = run(&hub, &agent, &mut socket, &mut rx).await;
    hub.unregister(&agent, &conn_id);
    tracing::info!(agent = %agent, conn = %conn_id, reason, "ws: closed");
}

async fn until_stopping(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await of the caller.
    let stopped = rx.wait_for(|s| *s).await.is_ok();
    if !stopped {
        std::future::pending::<()>().await;
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

async fn run(hub: &Hub, agent: &str, socket: &mut WebSocket, rx: &mut mpsc::Receiver<Push>) -> &'static str {
    let mut stopping = hub.0.stopping.subscribe();
    let already = *stopping.borrow();
    if already {
        close(socket, 1001, "shutting_down").await;
        return "shutting_down";
    }
    // Registered before the drain, so nothing stored meanwhile is missed; anything both
    // drained and pushed is sent once.
    let mut drained = HashSet::new();
    match hub.0.store.unread_envelopes(agent, DRAIN_LIMIT).await {
        Ok(rows) => {
            for (event_id, payload) in rows {
                if socket.send(Message::Text(payload.into())).await.is_err() {
                    return "send failed";
                }
                drained.insert(event_id);
            }
        }
        Err(e) => {
            tracing::warn!(agent = %agent, error = %e, "ws: cannot read unread mail for the drain");
            close(socket, 1011, "internal error").await;
            return "drain failed";
        }
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + hub.0.ping_every, hub.0.ping_every);
    let mut pong_due: Option<tokio::time::Instant> = None;
    loop {
        let deadline = pong_due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
        tokio::select! {
            push = rx.recv() => match push {
                Some(Push::Frame { event_id, payload }) => {
                    if drained.remove(&event_id) {
                        continue;
                    }
                    if socket.send(Message::Text(payload.as_ref().into())).await.is_err() {
                        return "send failed";
                    }
                }
                Some(Push::Close(code, reason)) => {
                    close(socket, code, reason).await;
                    return reason;
                }
                None => return "hub gone",
            },
            frame = socket.recv() => match frame {
                Some(Ok(Message::Pong(_))) => pong_due = None,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return "client closed",
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return "send failed";
                }
                pong_due.get_or_insert(tokio::time::Instant::now() + PONG_DEADLINE);
            }
            () = tokio::time::sleep_until(deadline), if pong_due.is_some() => {
                close(socket, 1001, "ping_timeout").await;
                return "ping_timeout";
            }
            () = until_stopping(&mut stopping) => {
                close(socket, 1001, "shutting_down").await;
                return "shutting_down";
            }
        }
    }
}
