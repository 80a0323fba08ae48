//! Shared by the milter's integration tests: a milter on a port-0 listener, a fake agent
//! directory that can be told to fail, and helpers to replay a milter's header actions.

#![allow(dead_code)]

use async_trait::async_trait;
use postagent_core::secret::Secret;
use postagent_milter::{AgentDirectory, DirectoryError, MilterConfig, MilterListener};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const AUTHSERV_ID: &str = "mx.postagent.test";
pub const SHARED_DOMAIN: &str = "agents.test";

pub fn secret() -> Secret {
    Secret::new(b"milter-test-secret-0123456789abcdef0123456789".to_vec())
}

pub fn config(dns: Option<SocketAddr>, dns_timeout: Duration) -> MilterConfig {
    MilterConfig {
        authserv_id: AUTHSERV_ID.into(),
        secret: secret(),
        dns_server: dns,
        dns_timeout,
        shared_domain: SHARED_DOMAIN.into(),
        recipient_delimiter: "+".into(),
        max_message_bytes: 1 << 20,
        max_header_fields: 1000,
        max_connections: 16,
        timeout: Duration::from_secs(60),
    }
}

/// Agents and verified domains from lists; `fail` makes every lookup an error (a database
/// outage without needing one).
#[derive(Default)]
pub struct FakeDirectory {
    pub domains: Vec<String>,
    pub agents: Vec<String>,
    pub fail: AtomicBool,
}

impl FakeDirectory {
    pub fn new(domains: &[&str], agents: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            agents: agents.iter().map(|a| (*a).to_owned()).collect(),
            fail: AtomicBool::new(false),
        })
    }

    pub fn set_failing(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), DirectoryError> {
        if self.fail.load(Ordering::SeqCst) { Err("database is unreachable".into()) } else { Ok(()) }
    }
}

#[async_trait]
impl AgentDirectory for FakeDirectory {
    async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
        self.check()?;
        Ok(self.domains.iter().any(|d| d == domain))
    }

    async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError> {
        self.check()?;
        Ok(self.agents.iter().any(|a| a == email))
    }
}

/// A milter serving on 127.0.0.1:PORT until dropped or stopped.
pub struct Milter {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Milter {
    /// Binds first, then spawns: the port accepts connections before this returns, so no
    /// test waits for readiness.
    pub async fn spawn(directory: Arc<dyn AgentDirectory>, config: MilterConfig) -> Milter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind milter");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(postagent_milter::run_with_directory(
            MilterListener::Tcp(listener, postagent_core::peers::PeerList::loopback()),
            directory,
            config,
            shutdown,
        ));
        Milter { addr, shutdown: Some(tx), task: Some(task) }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("milter task").expect("milter exits cleanly");
        }
    }
}

impl Drop for Milter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Everything the milter logged in this test binary (plain text, one event per line).
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogBuffer;

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a subscriber that records log lines for [`logs`] (once per test binary).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| LogBuffer)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter("info,postagent_milter=debug")
        .try_init();
}

/// The log lines recorded so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}
