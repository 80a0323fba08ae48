//! One function per role: each takes the configuration, what the roles share and its bound
//! listener, and returns the future that serves it until `stop`.

use super::Shared;
use anyhow::Context;
use postagent_api::{AppState, Settings};
use postagent_core::Config;
use postagent_core::net::Listener;
use postagent_core::store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How often expired idempotency keys and events are swept.
const JANITOR_EVERY: Duration = Duration::from_secs(600);
/// Milter connections served at once (Postfix holds one per smtpd process; its default
/// process limit is 100).
const MILTER_MAX_CONNECTIONS: usize = 200;

pub type Stop = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn store(shared: &Shared) -> Arc<dyn Store> {
    shared.store.clone() as Arc<dyn Store>
}

/// The milter: SPF/DKIM/DMARC, the signed `X-E2A-Auth-*` set, RCPT checks.
pub fn milter(
    config: &Config,
    shared: &Shared,
    listener: Listener,
    stop: Stop,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let milter_config = postagent_milter::MilterConfig {
        authserv_id: config.authserv_id(),
        secret: shared.secret.clone(),
        dns_server: config.dns_server,
        dns_timeout: config.dns_timeout,
        shared_domain: config.shared_domain.clone(),
        recipient_delimiter: config.recipient_delimiter.clone(),
        max_message_bytes: config.max_message_size(),
        max_header_fields: usize::try_from(config.max_header_fields).unwrap_or(usize::MAX),
        max_connections: MILTER_MAX_CONNECTIONS,
        timeout: config.milter_timeout,
    };
    let listener = postagent_milter::MilterListener::new(listener, config.milter_peers.clone());
    postagent_milter::run(listener, store(shared), milter_config, stop)
}

/// Connections the socketmap serves at once (Postfix holds one per process that looks up:
/// smtpd, trivial-rewrite, cleanup).
const SOCKETMAP_MAX_CONNECTIONS: usize = 500;

/// Postfix's lookup tables: agent domains, their transport, live recipients.
pub fn socketmap(
    config: &Config,
    shared: &Shared,
    listener: Listener,
    stop: Stop,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    use postagent_milter::socketmap;
    let maps_config = socketmap::SocketmapConfig {
        shared_domain: config.shared_domain.clone(),
        secret: shared.secret.clone(),
        transport: config.lmtp_transport(),
        recipient_delimiter: config.recipient_delimiter.clone(),
        // Short: on SQLite a change made by another process (the admin command) reaches the
        // cache only by expiry; the bus empties it at once for everything else.
        cache_ttl: Duration::from_secs(5),
        max_connections: SOCKETMAP_MAX_CONNECTIONS,
        idle_timeout: Duration::from_secs(300),
        peers: config.socketmap_peers.clone(),
    };
    let bus = postagent_core::store::EventStore::bus(shared.store.as_ref()).subscribe();
    let directory = Arc::new(postagent_milter::StoreDirectory::new(store(shared)));
    socketmap::run(listener, directory, maps_config, bus, stop)
}

/// LMTP delivery: verify the signed set, store, thread, announce.
pub fn lmtp(
    config: &Config,
    shared: &Shared,
    listener: Listener,
    stop: Stop,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    use postagent_delivery::lmtp;
    let mut lmtp_config = lmtp::LmtpConfig::new(config.mail_hostname());
    lmtp_config.max_message_bytes = config.max_message_size();
    lmtp_config.peers = config.lmtp_peers.clone();
    lmtp_config.max_sessions = usize::try_from(config.lmtp_max_sessions).unwrap_or(usize::MAX);
    lmtp_config.session_deadline = config.lmtp_session_deadline;
    let bounces = postagent_core::mail::outbound::bounce::BouncePolicy {
        suppress_after_soft: config.suppress_after_soft_bounces,
    };
    let backend = Arc::new(postagent_delivery::ingest::StoreBackend::new(
        store(shared),
        shared.secret.clone(),
        bounces,
        config.recipient_delimiter.clone(),
    ));
    lmtp::run(listener, backend, lmtp_config, stop)
}

/// The REST API and the WebSocket hub; `bound` is the address really listened on, which
/// links fall back to when `public_url` is not set (port 0 becomes the port we got).
pub fn api(
    config: &Config,
    shared: &Shared,
    listener: Listener,
    bound: &str,
    stop: Stop,
) -> (impl Future<Output = std::io::Result<()>> + Send + 'static, postagent_api::ws::Hub) {
    let webhooks = config.webhooks();
    let hub = postagent_api::ws::Hub::start(store(shared), webhooks.ws_ping_interval);
    let state = AppState {
        store: store(shared),
        secret: shared.secret.clone(),
        resolver: shared.resolver.clone(),
        settings: Arc::new(Settings { api_listen: bound.to_owned(), ..Settings::from_config(config) }),
        webhooks: Arc::new(webhooks),
        hub: hub.clone(),
    };
    (postagent_api::run(listener, state, stop, config.shutdown_timeout), hub)
}

/// The janitor beside the API: expired idempotency keys and events, and retention.
pub fn janitor(config: &Config, shared: &Shared, stop: Stop) -> impl Future<Output = ()> + Send + 'static {
    let keep = postagent_core::janitor::Retention::new(
        config.events_retention,
        config.trash_retention_days,
        config.message_retention_days,
    );
    postagent_core::janitor::run(store(shared), JANITOR_EVERY, keep, stop)
}

/// The webhook worker: signed POSTs with retries.
pub fn webhook_worker(
    config: &Config,
    shared: &Shared,
    stop: Stop,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use postagent_delivery::webhook::{Worker, client::WebhookClient};
    let settings = config.webhooks();
    let client = WebhookClient::new(&settings, shared.resolver.clone())
        .context("cannot build the webhook HTTP client")?;
    let grace = config.shutdown_timeout.min(settings.timeout + Duration::from_secs(1));
    let worker = Worker::new(store(shared), settings, client, shared.secret.clone());
    Ok(worker.run(stop, grace))
}

/// The submitter: outbound mail into Postfix, review notices, expired holds. `api` is the
/// API this process serves, which review links point at when `public_url` is not set.
pub fn submitter(
    config: &Config,
    shared: &Shared,
    api: Option<&str>,
    stop: Stop,
) -> impl Future<Output = ()> + Send + 'static {
    let mut submission = config.submission();
    if let (true, Some(api)) = (config.public_url.is_empty(), api) {
        submission.public_url = format!("http://{api}");
    }
    postagent_delivery::submit::Submitter::new(store(shared), shared.secret.clone(), submission).run(stop)
}

/// The Prometheus scrape endpoint.
pub fn metrics(
    shared: &Shared,
    listener: Listener,
    hub: Option<postagent_api::ws::Hub>,
    stop: Stop,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    postagent_api::metrics::run(listener, store(shared), hub, stop)
}

/// Replicas hear of each other's events (webhook wake-ups, WebSocket pushes) through
/// PostgreSQL; `None` on SQLite, where there is one process.
pub fn bus_listener(shared: &Shared, stop: Stop) -> Option<impl Future<Output = ()> + Send + 'static> {
    (shared.store.backend() == postagent_core::store::Backend::Postgres).then(|| {
        let bus = postagent_core::store::EventStore::bus(shared.store.as_ref()).clone();
        postagent_core::bus::listen_postgres(shared.store.url().to_owned(), bus, stop)
    })
}
