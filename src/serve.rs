//! `postagent serve` / `postagent api`: open the store, bind the listeners, run the roles,
//! and shut down gracefully on SIGTERM or SIGINT.

use anyhow::Context;
use postagent_api::{AppState, Listener, Settings};
use postagent_core::config::{ListenAddr, redact_url};
use postagent_core::dns::Resolver;
use postagent_core::store::{SqlStore, Store};
use postagent_core::{Config, secret};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often expired idempotency keys are swept.
const JANITOR_EVERY: Duration = Duration::from_secs(600);
use tokio::signal::unix::{SignalKind, signal};

/// Which roles this process runs.
pub struct Roles {
    api: bool,
    mail: bool,
}

impl Roles {
    pub fn all() -> Self {
        Self { api: true, mail: true }
    }

    pub fn api_only() -> Self {
        Self { api: true, mail: false }
    }
}

/// What every role shares: the store, the secret and the resolver.
pub struct Shared {
    pub store: Arc<SqlStore>,
    pub secret: secret::Secret,
    pub resolver: Resolver,
}

pub async fn open_shared(config: &Config) -> anyhow::Result<Shared> {
    let url = config.database_url();
    let store = SqlStore::open(&url, config.database_max_connections)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))?;
    let secret = secret::load_or_create(&config.hmac_secret_path())?;
    let dns = config.dns_server_addr().map_err(|m| anyhow::anyhow!("dns_server: {m}"))?;
    let resolver = Resolver::new(dns, config.dns_timeout())?;
    Ok(Shared { store: Arc::new(store), secret, resolver })
}

pub async fn run(config: Config, file: Option<PathBuf>, roles: Roles) -> anyhow::Result<()> {
    let shared = open_shared(&config).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %file.as_deref().map_or("(none: defaults)".into(), |p| p.display().to_string()),
        database = %redact_url(&config.database_url()),
        "postagent starting"
    );
    let mx = config.mail_hostname();
    if postagent_core::ids::DomainName::parse(&mx).is_none() {
        tracing::warn!(
            "mail_hostname is {mx:?} (from /etc/hostname), not a fully qualified name: domains will be \
             told to publish an MX for it; set mail_hostname = \"mx.example.org\""
        );
    }
    if roles.mail {
        for (key, value) in [("milter_listen", &config.milter_listen), ("lmtp_listen", &config.lmtp_listen)] {
            if !value.is_empty() {
                // Say so loudly rather than pretend: this build serves the API only.
                tracing::warn!("{key} = {value:?} is set, but this build has no {key} role yet; ignoring it");
            }
        }
    }
    if !roles.api {
        return Ok(());
    }
    // Installed before the listener announces itself, so a signal that arrives right after
    // "listening" is a graceful stop and never the default (immediate) termination.
    let signal = shutdown_signal()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let janitor = tokio::spawn(postagent_core::janitor::run(
        shared.store.clone() as Arc<dyn Store>,
        JANITOR_EVERY,
        stopped(),
    ));
    let addr = config.api_listen_addr();
    let (listener, socket_path) = bind(&addr).await?;
    let state = AppState {
        store: shared.store.clone() as Arc<dyn Store>,
        secret: shared.secret.clone(),
        resolver: shared.resolver.clone(),
        settings: Arc::new(Settings::from_config(&config)),
    };
    let served = postagent_api::run(listener, state, stopped(), config.shutdown_timeout()).await;
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    let _ = janitor.await;
    // Requests cut off at the grace deadline may still hold connections; do not wait on them.
    if tokio::time::timeout(Duration::from_secs(2), shared.store.close()).await.is_err() {
        tracing::warn!("database connections still busy at exit; closing anyway");
    }
    served.context("the API server failed")?;
    tracing::info!("postagent stopped");
    Ok(())
}

/// Binds the API listener; a stale unix socket left by a crash is removed first.
async fn bind(addr: &ListenAddr) -> anyhow::Result<(Listener, Option<PathBuf>)> {
    match addr {
        ListenAddr::Tcp(a) => {
            let l =
                tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a}"))?;
            tracing::info!("API listening on {}", l.local_addr()?);
            Ok((Listener::Tcp(l), None))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(path)?;
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            tracing::info!("API listening on unix:{}", path.display());
            Ok((Listener::Unix(l), Some(path.clone())))
        }
    }
}

fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display())),
        Ok(_) => anyhow::bail!("{} exists and is not a socket; refusing to replace it", path.display()),
        Err(_) => Ok(()),
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: finishing in-flight requests"),
            _ = int.recv() => tracing::info!("SIGINT received: finishing in-flight requests"),
        }
    })
}
