//! postagent's e2a-compatible REST API (`/v1`), served by axum.
//!
//! `router(state)` builds the whole application (tests drive it directly); `run` serves it on
//! a bound listener until `shutdown` resolves, then lets in-flight requests finish within the
//! configured timeout.

pub mod auth;
pub mod body;
pub mod console;
pub mod cursor;
pub mod download;
pub mod error;
pub mod idempotency;
pub mod labels;
pub mod magic;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod unsubscribe;
pub mod views;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use postagent_core::dns::Resolver;
use postagent_core::secret::Secret;
use postagent_core::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The `/v1` contract version we implement (e2a's `info.version`).
pub const API_VERSION: &str = "1.0.0";

/// Request bodies above this are 413 `payload_too_large` (send paths raise it later).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Send, reply, forward and approve accept up to this (contract §2.2).
pub const MAX_SEND_BODY_BYTES: usize = 40 * 1024 * 1024;

/// The settings handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub shared_domain: String,
    /// As configured; empty when unset (then `/v1/info` leaves it out, as e2a does).
    pub public_url: String,
    /// The MX target agent domains must publish.
    pub mail_hostname: String,
    /// Where the API listens (links fall back to it when `public_url` is unset).
    pub api_listen: String,
    /// Contract §2.6 budgets.
    pub limits: postagent_core::config::RateLimits,
    /// Console sessions: idle and absolute expiry.
    pub console_idle: Duration,
    pub console_lifetime: Duration,
    /// Retention, as `/v1/info` reports it: trash days, and body days (0: for ever).
    pub trash_retention_days: u32,
    pub message_retention_days: u32,
}

impl Settings {
    /// The configured public URL, or the API's own address when none is set.
    pub fn public_url_or_default(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.api_listen)
        } else {
            self.public_url.clone()
        }
    }

    pub fn from_config(cfg: &postagent_core::Config) -> Self {
        Self {
            shared_domain: cfg.shared_domain.clone(),
            public_url: cfg.public_url.clone(),
            mail_hostname: cfg.mail_hostname(),
            api_listen: cfg.api_listen.to_string(),
            limits: cfg.rate_limits(),
            console_idle: cfg.console_session_idle,
            console_lifetime: cfg.console_session_lifetime,
            trash_retention_days: cfg.trash_retention_days,
            message_retention_days: cfg.message_retention_days,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub secret: Secret,
    pub resolver: Resolver,
    pub settings: Arc<Settings>,
    /// Webhook URL rules (SSRF mode) and the event log's retention.
    pub webhooks: Arc<postagent_core::config::WebhookSettings>,
    pub hub: ws::Hub,
}

/// The API: `/v1` and its helpers, the MCP server on `/mcp` and the console on `/console`,
/// both of which call the `/v1` router in this process.
pub fn router(state: AppState) -> Router {
    let rest = rest_router(state.clone());
    rest.clone().merge(mcp::routes(state.clone(), rest.clone())).merge(console::routes(state, rest))
}

fn rest_router(state: AppState) -> Router {
    use routes::{meta, webhooks};
    let mut app = Router::new()
        .route("/api/health", get(meta::health).head(meta::health))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/agents/{email}/messages/{id}/attachments/{index}/download", get(download::download))
        .route("/v1/agents/{email}/ws", get(ws::handler))
        // A postagent extension: one delivery with every try.
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}", get(webhooks::delivery))
        .route(
            "/v1/approve",
            get(magic::approve_page).post(magic::approve_post).fallback(magic::other_method),
        )
        .route("/v1/reject", get(magic::reject_page).post(magic::reject_post).fallback(magic::other_method))
        .route("/u/{token}", get(unsubscribe::show).post(unsubscribe::confirm));
    for (op, handler) in routes::table::table() {
        app = app.route(op.path, handler);
    }
    for (path, handler) in routes::table::newer_sdk_paths() {
        app = app.route(path, handler);
    }
    app.route_layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::limit))
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A bug in one handler answers that request 500 instead of dropping the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(error::envelope))
        .with_state(state)
}

/// `GET /v1/openapi.json`: the document generated from the route table.
async fn openapi_json() -> axum::Json<serde_json::Value> {
    let ops: Vec<openapi::Op> = routes::table::table().into_iter().map(|(op, _)| op).collect();
    axum::Json(openapi::document(&ops))
}

/// A bound API listener (the listener type every role uses).
pub use postagent_core::net::Listener;

/// Serves until `shutdown` resolves; then stops accepting, and gives in-flight requests
/// `grace` to finish before returning anyway.
pub async fn run(
    listener: Listener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let hub = state.hub.clone();
    let app = router(state);
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        // WebSockets are long-lived: tell them to go (1001) rather than wait for them.
        hub.shut_down();
        let _ = stopping_tx.send(true);
    };
    let deadline = async move {
        let _ = stopping_rx.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    let served = async move {
        match listener {
            Listener::Tcp(l) => axum::serve(l, app).with_graceful_shutdown(signal).await,
            Listener::Unix(l) => axum::serve(l, app).with_graceful_shutdown(signal).await,
        }
    };
    tokio::select! {
        r = served => r,
        () = deadline => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight API requests did not finish in time; closing them");
            Ok(())
        }
    }
}
