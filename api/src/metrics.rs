//! The Prometheus listener (`metrics_listen`, loopback): `GET /metrics` in the text format.
//! Counters and histograms come from `postagent_core::metrics`; queue depths, holds by state,
//! outbound messages by status and open WebSockets are read at scrape time.

use crate::ws::Hub;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use postagent_core::metrics;
use postagent_core::store::Store;
use std::future::Future;
use std::sync::Arc;

#[derive(Clone)]
struct Scrape {
    store: Arc<dyn Store>,
    hub: Option<Hub>,
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    let mut out = String::new();
    metrics::render_gauge(
        &mut out,
        "postagent_build_info",
        "The running version.",
        "version",
        &[(env!("CARGO_PKG_VERSION").to_owned(), 1)],
    );
    metrics::render(&mut out);
    if let Some(hub) = &s.hub {
        let open = i64::try_from(hub.open_sockets()).unwrap_or(i64::MAX);
        metrics::render_gauge(
            &mut out,
            "postagent_websockets_open",
            "Open agent WebSockets.",
            "",
            &[(String::new(), open)],
        );
    }
    let status = match s.store.gauges().await {
        Ok(g) => {
            metrics::render_gauge(
                &mut out,
                "postagent_queue_depth",
                "Jobs waiting or running, by queue.",
                "queue",
                &g.jobs,
            );
            metrics::render_gauge(&mut out, "postagent_holds", "Review holds by state.", "state", &g.holds);
            metrics::render_gauge(
                &mut out,
                "postagent_outbound_messages",
                "Outbound messages by status.",
                "status",
                &g.outbound,
            );
            metrics::render_gauge(
                &mut out,
                "postagent_database_up",
                "1 when the database answered.",
                "",
                &[(String::new(), 1)],
            );
            StatusCode::OK
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: database gauges unavailable");
            metrics::render_gauge(
                &mut out,
                "postagent_database_up",
                "1 when the database answered.",
                "",
                &[(String::new(), 0)],
            );
            StatusCode::OK
        }
    };
    (status, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: postagent_core::net::Listener,
    store: Arc<dyn Store>,
    hub: Option<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use postagent_core::net::Listener;
    let app = Router::new().route("/metrics", get(scrape)).with_state(Scrape { store, hub });
    match listener {
        Listener::Tcp(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
        Listener::Unix(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
    }
}
