//! The postagent milter: SPF, DKIM and DMARC verdicts on every inbound message, signed into
//! the message as the `X-E2A-Auth-*` header set (design §5.1), plus RCPT-time rejection of
//! unknown agents.
//!
//! Shape (after dkim-milter/spf-milter): `callbacks` are thin adapters from indymilter's
//! protocol stages to one `session::Session` per SMTP connection, which holds the
//! connection's facts and the current message's state; [`verdict`] turns an envelope and a
//! message into the contract's `authentication` object; [`headers`] plans the header
//! surgery; [`recipients`] classifies RCPT addresses. `main` binds the socket and calls
//! [`run`].

mod callbacks;
mod corked;
mod directory_cache;
pub mod headers;
mod listener;
pub mod recipients;
mod session;
pub mod socketmap;
pub mod verdict;

use postagent_core::secret::Secret;
use postagent_core::store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use listener::MilterListener;
pub use recipients::{AgentDirectory, DirectoryError, RecipientClass, StoreDirectory};

/// `{daemon_name}` of the Postfix listener our own API submits through (master.cf:
/// `-o milter_macro_daemon_name=ORIGINATING`). Mail from it that carries a valid submission
/// token is signed as agent mail and keeps its `X-E2A-Conversation-Id`; everything else,
/// there or on any other listener, is the internet.
pub const ORIGINATING: &str = "ORIGINATING";

/// What the milter needs to know; built by `main` from postagent's configuration.
#[derive(Debug, Clone)]
pub struct MilterConfig {
    /// RFC 8601 authserv-id written into (and recognised in) `Authentication-Results`;
    /// normally the mail host name.
    pub authserv_id: String,
    /// The deployment secret that signs the `X-E2A-Auth-*` set.
    pub secret: Secret,
    /// One DNS server (`IP:PORT`) for SPF/DKIM/DMARC lookups; `None` reads `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
    /// Timeout of one DNS query. A whole message's evaluation is bounded by four times this
    /// (see [`verdict`]), so it must stay well under Postfix's milter timeouts (30 s for
    /// commands): the 5 s default gives at most 20 s.
    pub dns_timeout: Duration,
    /// The deployment's shared agent domain (`<slug>@shared`), or empty for none.
    pub shared_domain: String,
    /// Postfix's `recipient_delimiter`: `bot+tag@…` reaches agent `bot@…`; empty: no
    /// extensions.
    pub recipient_delimiter: String,
    /// Most bytes of one message (headers and body) kept for DKIM verification; beyond it
    /// DKIM signatures are reported `permerror` (the body hash still covers
    /// everything; SPF-aligned DMARC can still verify).
    pub max_message_bytes: usize,
    /// Most header fields of one message kept for DKIM; past it every DKIM signature is
    /// `permerror` (a hostile header block costs a counter, not a parse).
    pub max_header_fields: usize,
    /// Concurrent milter connections (Postfix holds one per smtpd process; its default
    /// process limit is 100).
    pub max_connections: usize,
    /// How long a connection may wait for Postfix's next command before it is closed, so an
    /// idle peer cannot hold a connection slot for long.
    pub timeout: Duration,
}

/// How long the milter trusts a directory answer (the socketmap's TTL): changes made here
/// or on another replica empty the cache at once through the bus; this bounds the rest.
const DIRECTORY_TTL: Duration = Duration::from_secs(5);

/// Serves the milter protocol on `listener` until `shutdown` completes, classifying
/// recipients against `store` (through a short-lived cache, [`directory_cache`]).
pub async fn run(
    listener: MilterListener,
    store: Arc<dyn Store>,
    config: MilterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bus = postagent_core::store::EventStore::bus(store.as_ref()).subscribe();
    let directory =
        directory_cache::CachedDirectory::new(Arc::new(StoreDirectory::new(store)), DIRECTORY_TTL, bus);
    run_with_directory(listener, directory, config, shutdown).await
}

/// [`run`] with any [`AgentDirectory`] (tests use one that fails on demand).
pub async fn run_with_directory(
    listener: MilterListener,
    directory: Arc<dyn AgentDirectory>,
    config: MilterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let verifier = verdict::Verifier::new(config.dns_server, config.dns_timeout)
        .map_err(|e| std::io::Error::other(format!("cannot set up the DNS resolver: {e}")))?;
    let indy_config = indymilter::Config {
        max_connections: config.max_connections.max(1),
        actions: callbacks::ACTIONS,
        connection_timeout: config.timeout,
    };
    let noreply = matches!(listener, MilterListener::Unix(_));
    let shared = Arc::new(callbacks::Shared { config, directory, verifier, noreply });
    tracing::info!(listener = %listener.describe(), "milter listening");
    indymilter::run(listener, callbacks::build(shared), indy_config, shutdown).await
}
