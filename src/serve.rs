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
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    api: bool,
    milter: bool,
    lmtp: bool,
    worker: bool,
}

impl Roles {
    pub fn all() -> Self {
        Self { api: true, milter: true, lmtp: true, worker: true }
    }

    pub fn api_only() -> Self {
        Self { api: true, milter: false, lmtp: false, worker: false }
    }

    pub fn milter_only() -> Self {
        Self { api: false, milter: true, lmtp: false, worker: false }
    }

    pub fn lmtp_only() -> Self {
        Self { api: false, milter: false, lmtp: true, worker: false }
    }

    pub fn worker_only() -> Self {
        Self { api: false, milter: false, lmtp: false, worker: true }
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

/// Re-reads the configuration the way the process first read it (SIGHUP).
pub type Reload = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Settings a SIGHUP applies to the running process; every other change needs a restart.
const RELOADABLE: &[&str] = &["log_level"];

/// Compares the running configuration with a re-read one: applies what can change in place,
/// reports what needs a restart (by key only: values may be secrets), and returns the
/// configuration now in force.
pub fn apply_reload(running: &Config, new: Config) -> Config {
    let (old, fresh) =
        (serde_json::to_value(running).unwrap_or_default(), serde_json::to_value(&new).unwrap_or_default());
    let changed: Vec<String> = fresh
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| old.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    if changed.is_empty() {
        tracing::info!("configuration reloaded: nothing changed");
        return new;
    }
    let mut applied = running.clone();
    for key in &changed {
        if key == "log_level" {
            match crate::logging::set_level(&new.log_level) {
                Ok(()) => {
                    tracing::info!(
                        "configuration reloaded: log_level {:?} -> {:?}",
                        running.log_level,
                        new.log_level
                    );
                    applied.log_level = new.log_level.clone();
                }
                Err(e) => tracing::warn!("configuration reload: log_level not applied: {e:#}"),
            }
        }
    }
    let restart: Vec<&String> = changed.iter().filter(|k| !RELOADABLE.contains(&k.as_str())).collect();
    if !restart.is_empty() {
        let keys: Vec<&str> = restart.iter().map(|k| k.as_str()).collect();
        tracing::warn!(
            "configuration reloaded: {} changed but only take effect after a restart (systemctl restart postagent); still running with the old values",
            keys.join(", ")
        );
    }
    applied
}

/// Waits for SIGHUP and reloads, until the process stops.
fn reload_on_hangup(config: Config, reload: Reload) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        let mut running = config;
        while hup.recv().await.is_some() {
            crate::notify::notify("RELOADING=1");
            match reload() {
                Ok(new) => running = apply_reload(&running, new),
                Err(e) => {
                    tracing::warn!("configuration reload refused: {e}; keeping the running configuration")
                }
            }
            crate::notify::notify("READY=1");
        }
    });
    Ok(())
}

pub async fn run(config: Config, file: Option<PathBuf>, roles: Roles, reload: Reload) -> anyhow::Result<()> {
    // Every view of a message (rows at delivery, bodies and downloads later) under the same
    // caps, so attachment indices agree.
    postagent_core::mime::configure(config.mime_caps());
    let shared = open_shared(&config).await?;
    // Webhook secrets written before they were sealed are sealed now, in place.
    match postagent_core::service::seal_webhook_secrets(shared.store.as_ref(), &shared.secret).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(webhooks = n, "sealed webhook secrets stored in the clear"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot seal webhook secrets stored in the clear; will retry at the next start")
        }
    }
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
    // Installed before any listener announces itself, so a signal that arrives right after
    // "listening" is a graceful stop and never the default (immediate) termination.
    let signal = shutdown_signal()?;
    reload_on_hangup(config.clone(), reload)?;
    let running = Running::start(&config, &shared, roles).await?;
    crate::notify::notify("READY=1");
    running.serve_until(signal, &shared).await?;
    tracing::info!("postagent stopped");
    Ok(())
}

/// Closes the pool without waiting on requests cut off at the grace deadline, which may
/// still hold connections.
async fn close_store(shared: &Shared) {
    if tokio::time::timeout(Duration::from_secs(2), shared.store.close()).await.is_err() {
        tracing::warn!("database connections still busy at exit; closing anyway");
    }
}

type RoleResult = (&'static str, std::io::Result<()>);

/// The roles of one process, bound and serving.
pub struct Running {
    /// Where each role listens (`IP:PORT` or `unix:PATH`), when it runs.
    pub api_addr: Option<String>,
    pub milter_addr: Option<String>,
    pub lmtp_addr: Option<String>,
    tasks: tokio::task::JoinSet<RoleResult>,
    janitor: Option<tokio::task::JoinHandle<()>>,
    listener: Option<tokio::task::JoinHandle<()>>,
    sockets: Vec<PathBuf>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Running {
    /// Binds the listeners of `roles` (every socket is bound before any role starts, so a
    /// bind failure starts nothing) and starts serving.
    pub async fn start(config: &Config, shared: &Shared, roles: Roles) -> anyhow::Result<Running> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let store = shared.store.clone() as Arc<dyn Store>;
        let sock = SocketOptions::from_config(config)?;
        let mut sockets: Vec<PathBuf> = Vec::new();
        let mut bind =
            async |enabled: bool, listen: &str, role: &str| -> anyhow::Result<Option<(Bound, String)>> {
                if !enabled || listen.is_empty() {
                    return Ok(None);
                }
                let addr = ListenAddr::parse(listen).map_err(|e| anyhow::anyhow!("{role} listener: {e}"))?;
                let (bound, path, shown) = bind_socket(&addr, &sock, role).await?;
                sockets.extend(path);
                Ok(Some((bound, shown)))
            };
        let metrics = match config.metrics_listen.as_str() {
            "" => None,
            addr => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("metrics: cannot listen on {addr}"))?;
                tracing::info!("metrics listening on {}", l.local_addr()?);
                Some(l)
            }
        };
        let mut hub: Option<postagent_api::ws::Hub> = None;
        let milter = bind(roles.milter, &config.milter_listen, "milter").await?;
        let lmtp = bind(roles.lmtp, &config.lmtp_listen, "LMTP").await?;
        let api_listen = config.api_listen.clone();
        let api = bind(roles.api, &api_listen, "API").await?;
        let mut running = Running {
            api_addr: None,
            milter_addr: None,
            lmtp_addr: None,
            tasks: tokio::task::JoinSet::new(),
            janitor: None,
            listener: None,
            sockets,
            stop: Arc::new(stop_tx),
        };

        if let Some((bound, shown)) = milter {
            let listener = match bound {
                Bound::Tcp(l) => postagent_milter::MilterListener::Tcp(l, config.milter_peers()),
                Bound::Unix(l) => postagent_milter::MilterListener::Unix(l),
            };
            let milter_config = postagent_milter::MilterConfig {
                authserv_id: config.authserv_id(),
                secret: shared.secret.clone(),
                dns_server: config.dns_server_addr().map_err(anyhow::Error::msg)?,
                dns_timeout: config.dns_timeout(),
                shared_domain: config.shared_domain.clone(),
                max_message_bytes: usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX),
                max_header_fields: usize::try_from(config.max_header_fields).unwrap_or(usize::MAX),
                max_connections: 200,
                timeout: config.milter_timeout(),
            };
            let milter = postagent_milter::run(listener, store.clone(), milter_config, stopped());
            running.tasks.spawn(async move { ("milter", milter.await) });
            running.milter_addr = Some(shown);
        }
        if let Some((bound, shown)) = lmtp {
            use postagent_delivery::lmtp;
            let listener = match bound {
                Bound::Tcp(l) => lmtp::LmtpListener::Tcp(l),
                Bound::Unix(l) => lmtp::LmtpListener::Unix(l),
            };
            let mut lmtp_config = lmtp::LmtpConfig::new(config.mail_hostname());
            lmtp_config.max_message_bytes = usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX);
            lmtp_config.peers = config.lmtp_peers();
            lmtp_config.max_sessions = usize::try_from(config.lmtp_max_sessions).unwrap_or(usize::MAX);
            lmtp_config.session_deadline = config.lmtp_session_deadline();
            let backend =
                Arc::new(postagent_delivery::ingest::StoreBackend::new(store.clone(), shared.secret.clone()));
            let lmtp = lmtp::run(listener, backend, lmtp_config, stopped());
            running.tasks.spawn(async move { ("lmtp", lmtp.await) });
            running.lmtp_addr = Some(shown);
        }
        if let Some((bound, shown)) = api {
            let keep = postagent_core::janitor::Retention { events: config.webhooks().events_retention };
            running.janitor = Some(tokio::spawn(postagent_core::janitor::run(
                store.clone(),
                JANITOR_EVERY,
                keep,
                stopped(),
            )));
            let listener = match bound {
                Bound::Tcp(l) => Listener::Tcp(l),
                Bound::Unix(l) => Listener::Unix(l),
            };
            let state = AppState {
                store: store.clone(),
                secret: shared.secret.clone(),
                resolver: shared.resolver.clone(),
                // Links fall back to the address really bound (port 0 becomes the port we got).
                settings: Arc::new(Settings { api_listen: shown.clone(), ..Settings::from_config(config) }),
                webhooks: Arc::new(config.webhooks()),
                hub: postagent_api::ws::Hub::start(store.clone(), config.webhooks().ws_ping_interval),
            };
            hub = Some(state.hub.clone());
            let api = postagent_api::run(listener, state, stopped(), config.shutdown_timeout());
            running.tasks.spawn(async move { ("api", api.await) });
            running.api_addr = Some(shown);
        }
        if roles.worker {
            use postagent_delivery::webhook::{Worker, client::WebhookClient};
            let settings = config.webhooks();
            let client = WebhookClient::new(&settings, shared.resolver.clone())
                .context("cannot build the webhook HTTP client")?;
            let grace = config.shutdown_timeout().min(settings.timeout + Duration::from_secs(1));
            let worker = Worker::new(store.clone(), settings, client, shared.secret.clone());
            let stop = stopped();
            running.tasks.spawn(async move {
                worker.run(stop, grace).await;
                ("worker", Ok(()))
            });
            let mut submission = config.submission();
            if config.public_url.is_empty()
                && let Some(api) = &running.api_addr
            {
                // Review links point at the API this process really serves.
                submission.public_url = format!("http://{api}");
            }
            let submitter =
                postagent_delivery::submit::Submitter::new(store.clone(), shared.secret.clone(), submission);
            let stop = stopped();
            running.tasks.spawn(async move {
                submitter.run(stop).await;
                ("submission", Ok(()))
            });
        }
        if let Some(listener) = metrics {
            let serve = postagent_api::metrics::run(listener, store.clone(), hub.clone(), stopped());
            running.tasks.spawn(async move { ("metrics", serve.await) });
        }
        // Replicas hear of each other's events (webhook wake-ups, WebSocket pushes).
        if (roles.api || roles.worker) && shared.store.backend() == postagent_core::store::Backend::Postgres {
            let bus = postagent_core::store::EventStore::bus(shared.store.as_ref()).clone();
            running.listener = Some(tokio::spawn(postagent_core::bus::listen_postgres(
                shared.store.url().to_owned(),
                bus,
                stopped(),
            )));
        }
        if running.tasks.is_empty() {
            anyhow::bail!(
                "nothing to run: the listener of this role is not configured (an empty *_listen disables a role)"
            );
        }
        Ok(running)
    }

    /// Serves until `signal` (SIGTERM/SIGINT), stops gracefully, then closes the store.
    pub async fn serve_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
        shared: &Shared,
    ) -> anyhow::Result<()> {
        let stop = self.stopper();
        tokio::spawn(async move {
            signal.await;
            stop();
        });
        let result = self.wait().await;
        close_store(shared).await;
        result
    }

    /// A handle that stops every role gracefully (what SIGTERM does).
    fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = Arc::clone(&self.stop);
        move || {
            let _ = stop.send(true);
        }
    }

    /// Waits until every role has stopped, then removes the unix sockets. A role that stops
    /// on its own (an error) stops the others too: half a mail system that looks alive is
    /// worse than a restart by systemd.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut failure: Option<anyhow::Error> = None;
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok((name, Ok(()))) => tracing::debug!(role = name, "role stopped"),
                Ok((name, Err(e))) => {
                    tracing::error!(role = name, error = %e, "role failed; stopping the others");
                    failure.get_or_insert(anyhow::anyhow!("the {name} role failed: {e}"));
                }
                Err(e) => {
                    tracing::error!(error = %e, "a role panicked; stopping the others");
                    failure.get_or_insert(anyhow::anyhow!("a role panicked: {e}"));
                }
            }
            let _ = self.stop.send(true);
        }
        for path in &self.sockets {
            let _ = std::fs::remove_file(path);
        }
        for j in [self.janitor.take(), self.listener.take()].into_iter().flatten() {
            let _ = j.await;
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Mode and group of the unix sockets we create.
struct SocketOptions {
    mode: u32,
    gid: Option<u32>,
}

impl SocketOptions {
    fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mode = config.unix_socket_mode().context("unix_socket_mode is not an octal mode")?;
        let gid = if config.unix_socket_group.is_empty() {
            None
        } else {
            Some(group_id(&config.unix_socket_group).with_context(|| {
                format!("unix_socket_group {:?} is not a group on this system", config.unix_socket_group)
            })?)
        };
        Ok(Self { mode, gid })
    }
}

/// A group's id from /etc/group.
pub fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Binds a role's listener. A stale unix socket left by a crash is removed first; a new one
/// gets the configured mode and group so a chrooted Postfix (user postfix) can connect.
async fn bind_socket(
    addr: &ListenAddr,
    opts: &SocketOptions,
    role: &str,
) -> anyhow::Result<(Bound, Option<PathBuf>, String)> {
    match addr {
        ListenAddr::Tcp(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("{role}: cannot listen on {a}"))?;
            let shown = l.local_addr()?.to_string();
            tracing::info!("{role} listening on {shown}");
            Ok((Bound::Tcp(l), None, shown))
        }
        ListenAddr::Unix(path) => {
            use std::os::unix::fs::PermissionsExt;
            remove_stale_socket(path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{role}: cannot create {}", dir.display()))?;
            }
            let l = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("{role}: cannot listen on unix:{}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(opts.mode))
                .with_context(|| format!("{role}: cannot chmod {}", path.display()))?;
            if let Some(gid) = opts.gid {
                std::os::unix::fs::chown(path, None, Some(gid))
                    .with_context(|| format!("{role}: cannot give {} to group {gid}", path.display()))?;
            }
            let shown = format!("unix:{}", path.display());
            tracing::info!("{role} listening on {shown}");
            Ok((Bound::Unix(l), Some(path.clone()), shown))
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
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received: finishing in-flight requests"),
            _ = int.recv() => tracing::info!("SIGINT received: finishing in-flight requests"),
        }
        crate::notify::notify("STOPPING=1");
    })
}
