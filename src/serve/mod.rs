//! `postagent serve` / `postagent api` / …: open the store, bind every listener, run the
//! roles, and shut down gracefully on SIGTERM or SIGINT. [`Running::start`] is the one
//! composition root: the binary and the integration tests both go through it.

mod reload;
pub mod roles;

use anyhow::Context;
use postagent_core::config::redact_url;
use postagent_core::dns::Resolver;
use postagent_core::net::{Listener, SocketOptions};
use postagent_core::store::SqlStore;
use postagent_core::{Config, secret};
pub use reload::{Reload, apply_reload};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Which roles this process runs.
#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub api: bool,
    pub milter: bool,
    pub lmtp: bool,
    /// The webhook worker.
    pub worker: bool,
    /// The submitter (outbound mail into Postfix, review notices, expired holds); it runs
    /// wherever the worker runs.
    pub submitter: bool,
}

impl Roles {
    pub fn all() -> Self {
        Self { api: true, milter: true, lmtp: true, worker: true, submitter: true }
    }

    pub fn api_only() -> Self {
        Self { api: true, milter: false, lmtp: false, worker: false, submitter: false }
    }

    pub fn milter_only() -> Self {
        Self { api: false, milter: true, lmtp: false, worker: false, submitter: false }
    }

    pub fn lmtp_only() -> Self {
        Self { api: false, milter: false, lmtp: true, worker: false, submitter: false }
    }

    pub fn worker_only() -> Self {
        Self { api: false, milter: false, lmtp: false, worker: true, submitter: true }
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
    let resolver = Resolver::new(config.dns_server, config.dns_timeout)?;
    Ok(Shared { store: Arc::new(store), secret, resolver })
}

/// The whole process: open the store, start `roles`, serve until SIGTERM/SIGINT, and
/// re-read the configuration on SIGHUP.
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
    reload::reload_on_hangup(config.clone(), reload)?;
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

/// The listeners of one process, all bound before any role starts (a bind failure starts
/// nothing).
struct Bound {
    api: Option<Listener>,
    milter: Option<Listener>,
    socketmap: Option<Listener>,
    lmtp: Option<Listener>,
    metrics: Option<Listener>,
    /// Unix sockets this process created (and removes when it stops); systemd's stay.
    created: Vec<PathBuf>,
}

impl Bound {
    async fn bind(config: &Config, roles: Roles) -> anyhow::Result<Self> {
        let opts = socket_options(config)?;
        let mut created = Vec::new();
        let mut bind =
            async |enabled: bool, addr: Option<&postagent_core::config::ListenAddr>, role: &str| {
                let Some(addr) = addr.filter(|_| enabled) else { return Ok::<_, anyhow::Error>(None) };
                // systemd's name for it: the role, lowercase (`FileDescriptorName=lmtp`).
                let name = role.to_ascii_lowercase();
                let handed = postagent_core::net::Inherited::take_captured(&name, addr);
                if let Some(l) = handed.with_context(|| format!("{role} listener"))? {
                    tracing::info!("{role} listening on {} (socket from systemd)", l.local());
                    return Ok(Some(l));
                }
                let l = Listener::bind(addr, &opts).await.with_context(|| format!("{role} listener"))?;
                tracing::info!("{role} listening on {}", l.local());
                created.extend(l.unix_path());
                Ok(Some(l))
            };
        // The API last: its "listening" line is what tests and operators wait for.
        let metrics = bind(true, config.metrics_listen.as_ref(), "metrics").await?;
        let milter = bind(roles.milter, config.milter_listen.as_ref(), "milter").await?;
        // Postfix's lookup tables are served beside its milter.
        let socketmap = bind(roles.milter, config.socketmap_listen.as_ref(), "socketmap").await?;
        let lmtp = bind(roles.lmtp, config.lmtp_listen.as_ref(), "LMTP").await?;
        let api = bind(roles.api, Some(&config.api_listen), "API").await?;
        Ok(Self { api, milter, socketmap, lmtp, metrics, created })
    }
}

/// The roles of one process, bound and serving.
pub struct Running {
    /// Where each role listens (`IP:PORT` or `unix:PATH`), when it runs.
    pub api_addr: Option<String>,
    pub milter_addr: Option<String>,
    pub socketmap_addr: Option<String>,
    pub lmtp_addr: Option<String>,
    pub metrics_addr: Option<String>,
    /// The WebSocket hub of the API role.
    pub hub: Option<postagent_api::ws::Hub>,
    tasks: tokio::task::JoinSet<RoleResult>,
    helpers: Vec<tokio::task::JoinHandle<()>>,
    sockets: Vec<PathBuf>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Running {
    /// Binds the listeners of `roles` and starts serving.
    pub async fn start(config: &Config, shared: &Shared, roles: Roles) -> anyhow::Result<Running> {
        let bound = Bound::bind(config, roles).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || -> roles::Stop {
            let mut rx = stop_rx.clone();
            Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
        };
        let mut running = Running {
            api_addr: None,
            milter_addr: None,
            socketmap_addr: None,
            lmtp_addr: None,
            metrics_addr: None,
            hub: None,
            tasks: tokio::task::JoinSet::new(),
            helpers: Vec::new(),
            sockets: bound.created.clone(),
            stop: Arc::new(stop_tx),
        };
        if let Some(l) = bound.milter {
            running.milter_addr = Some(l.local());
            let milter = roles::milter(config, shared, l, stopped());
            running.tasks.spawn(async move { ("milter", milter.await) });
        }
        if let Some(l) = bound.socketmap {
            running.socketmap_addr = Some(l.local());
            let maps = roles::socketmap(config, shared, l, stopped());
            running.tasks.spawn(async move { ("socketmap", maps.await) });
        }
        if let Some(l) = bound.lmtp {
            running.lmtp_addr = Some(l.local());
            let lmtp = roles::lmtp(config, shared, l, stopped());
            running.tasks.spawn(async move { ("lmtp", lmtp.await) });
        }
        if let Some(l) = bound.api {
            let addr = l.local();
            running.helpers.push(tokio::spawn(roles::janitor(config, shared, stopped())));
            let (api, hub) = roles::api(config, shared, l, &addr, stopped());
            running.tasks.spawn(async move { ("api", api.await) });
            running.hub = Some(hub);
            running.api_addr = Some(addr);
        }
        if roles.worker {
            let worker = roles::webhook_worker(config, shared, stopped())?;
            running.tasks.spawn(async move {
                worker.await;
                ("worker", Ok(()))
            });
        }
        if roles.submitter {
            let submitter = roles::submitter(config, shared, running.api_addr.as_deref(), stopped());
            running.tasks.spawn(async move {
                submitter.await;
                ("submission", Ok(()))
            });
        }
        if let Some(l) = bound.metrics {
            running.metrics_addr = Some(l.local());
            let serve = roles::metrics(shared, l, running.hub.clone(), stopped());
            running.tasks.spawn(async move { ("metrics", serve.await) });
        }
        if (roles.api || roles.worker || roles.milter)
            && let Some(listen) = roles::bus_listener(shared, stopped())
        {
            running.helpers.push(tokio::spawn(listen));
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
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
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
        for helper in self.helpers.drain(..) {
            let _ = helper.await;
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Backlog, mode and group of the sockets we bind.
fn socket_options(config: &Config) -> anyhow::Result<SocketOptions> {
    let gid = if config.unix_socket_group.is_empty() {
        None
    } else {
        Some(group_id(&config.unix_socket_group).with_context(|| {
            format!("unix_socket_group {:?} is not a group on this system", config.unix_socket_group)
        })?)
    };
    Ok(SocketOptions { backlog: config.listen_backlog, mode: config.unix_socket_mode.0, gid })
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
