//! The benchmark's webhook receiver: axum (hyper) on 127.0.0.1:0, HTTP/1.1 keep-alive,
//! answering every request `204 No Content` at once and recording its arrival time, path,
//! `webhook-id` and raw body (parsed only after the measurement).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    pub webhook_id: String,
    pub body: Bytes,
}

impl Hit {
    /// `data.subject` of the event, if it has one.
    pub fn subject(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["data"]["subject"].as_str().map(str::to_owned)
    }
}

#[derive(Default)]
struct Shared {
    hits: Mutex<Vec<Hit>>,
    arrived: Notify,
}

pub struct Receiver {
    base: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new().fallback(record).with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("bench receiver stopped: {e}");
            }
        });
        Ok(Receiver { base, shared, server })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Hit>> {
        self.shared.hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Everything received so far (a copy).
    pub fn hits(&self) -> Vec<Hit> {
        self.lock().clone()
    }

    /// Takes everything received so far, leaving the receiver empty.
    pub fn take(&self) -> Vec<Hit> {
        std::mem::take(&mut *self.lock())
    }

    /// Waits until `n` requests arrived, or `limit` passed; returns how many arrived.
    pub async fn wait_count(&self, n: usize, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.count();
            if got >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count();
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let hit = Hit { at, path: uri.path().to_owned(), webhook_id, body };
    shared.hits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(hit);
    shared.arrived.notify_waiters();
    StatusCode::NO_CONTENT
}

/// Requests that were a second POST of the same delivery (same path and `webhook-id`).
pub fn duplicates(hits: &[Hit]) -> usize {
    let mut seen = HashSet::with_capacity(hits.len());
    hits.iter().filter(|h| !seen.insert((h.path.as_str(), h.webhook_id.as_str()))).count()
}
