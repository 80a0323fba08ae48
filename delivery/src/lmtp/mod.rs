//! The LMTP server (RFC 2033) through which Postfix hands agent mail to postagent.
//!
//! Why LMTP and not SMTP: after DATA, LMTP answers once per recipient (RFC 2033 §4.2), so one
//! agent's store failure defers only that agent's copy while the others are delivered. Postfix
//! owns the queue, so the contract is simple: a `250` means "committed by the backend"; any
//! failure before that is a `4xx` and Postfix retries; nothing is lost while postagent is down.
//!
//! This module is the protocol only. Business rules (who is an agent, the signature check,
//! parsing, threading, storing) live behind [`LmtpBackend`], called once per RCPT and once per
//! message. Layout: `command` parses command lines, `data` undoes dot-stuffing, `reply`
//! renders the backend's verdicts, `session` runs one connection's state machine, and this
//! file accepts connections and handles shutdown.

mod command;
mod data;
mod reply;
mod session;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use postagent_core::net::Accepted;
use postagent_core::peers::PeerList;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

pub use reply::Reply;

/// Settings of the LMTP server.
#[derive(Debug, Clone)]
pub struct LmtpConfig {
    /// Our name in the greeting and the LHLO reply (RFC 5321 §4.1.1.1), e.g. the host's FQDN.
    pub hostname: String,
    /// Largest message accepted, in octets after dot-unstuffing; advertised as `SIZE` (RFC
    /// 1870). Larger messages get `552 5.3.4`, at MAIL when declared, else after DATA.
    pub max_message_bytes: usize,
    /// Recipients per transaction; the next RCPT gets `452 4.5.3` and Postfix sends the rest
    /// in another transaction (RFC 5321 §4.5.3.1.10). Postfix's own default is 50 per
    /// delivery (`lmtp_destination_recipient_limit`).
    pub max_recipients: usize,
    /// How long to wait for the next command (RFC 5321 §4.5.3.2.7 suggests 5 minutes); also
    /// bounds each reply write. On expiry: `421 4.4.2` and close.
    pub command_timeout: Duration,
    /// How long to wait for each read of message content during DATA (RFC 5321 §4.5.3.2.5-6).
    /// Also the shutdown grace period: see [`run`].
    pub data_timeout: Duration,
    /// The only peers a TCP listener admits; others are closed before the greeting.
    pub peers: PeerList,
    /// Sessions served at once; the next connection gets `421 4.3.2` and is closed, so a
    /// flood of idle connections cannot make the process run out of anything.
    pub max_sessions: usize,
    /// The longest one session may last: when it runs out the session is closed with `421`
    /// at its next read (a message in DATA is abandoned and Postfix retries it).
    pub session_deadline: Duration,
}

impl LmtpConfig {
    /// Defaults that suit a normal Postfix: 25 MiB (above Postfix's own 10 MB
    /// `message_size_limit`), 100 recipients (the RFC 5321 §4.5.3.1.8 minimum), 5 minute
    /// command timeout and 3 minute data timeout (RFC 5321 §4.5.3.2), loopback peers only,
    /// 100 sessions (Postfix's `default_process_limit`) of at most 20 minutes (Postfix reuses
    /// an LMTP connection for at most `lmtp_connection_reuse_time_limit`, 300 s, plus one
    /// delivery of at most `lmtp_data_xfer_timeout` + `lmtp_data_done_timeout`, 780 s).
    pub fn new(hostname: impl Into<String>) -> Self {
        LmtpConfig {
            hostname: hostname.into(),
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            peers: PeerList::loopback(),
            max_sessions: 100,
            session_deadline: Duration::from_secs(1200),
        }
    }
}

/// A bound LMTP listener (the listener type every role uses).
pub use postagent_core::net::Listener as LmtpListener;

/// One mail transaction as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The MAIL FROM address without angle brackets; `""` for the null sender `<>`.
    pub mail_from: String,
    /// The recipients the backend accepted at RCPT, in RCPT order, as the client spelled them
    /// (source routes removed). [`LmtpBackend::deliver`] answers for each, in this order.
    pub recipients: Vec<String>,
    /// The LHLO argument (Postfix sends its `myhostname`).
    pub lhlo: String,
    /// The peer: `ip:port` for TCP, `"unix"` for a unix socket.
    pub client: String,
}

/// What the ingest does with each recipient and message; the server does the protocol.
#[async_trait::async_trait]
pub trait LmtpBackend: Send + Sync + 'static {
    /// RCPT-time check (unknown agent → Perm 550 5.1.1; store down → Temp 451 4.3.0).
    async fn check_recipient(&self, rcpt: &str) -> Reply;
    /// After DATA: one Reply per accepted recipient, same order. `data` is the message with
    /// dot-unstuffing undone and CRLF line ends as received.
    ///
    /// Return `Ok` for a recipient only once its copy is committed: Postfix deletes the
    /// message for that recipient on `250`. Missing replies are treated as `451 4.3.0`.
    async fn deliver(&self, envelope: &Envelope, data: bytes::Bytes) -> Vec<Reply>;
}

/// Serves LMTP on `listener` until `shutdown` resolves, then shuts down gracefully:
///
/// 1. stops accepting (the listener is dropped, so Postfix gets "connection refused" and
///    defers, which is harmless);
/// 2. sessions waiting for a command get `421 4.3.2 shutting down` and are closed (RFC 5321
///    §3.8 allows 421 at any time; Postfix defers the recipients of an unfinished transaction);
/// 3. sessions inside DATA (or waiting for [`LmtpBackend::deliver`]) may finish their message
///    and send its replies, then get the 421 too;
/// 4. after a grace period of `config.data_timeout`, sessions still running are dropped. A
///    message dropped before its replies were sent is redelivered by Postfix, which the backend
///    must tolerate anyway (design §7: duplicates are detected by message id).
///
/// Errors accepting a single connection are logged and do not stop the server, so this
/// returns `Ok(())` once shut down.
pub async fn run(
    listener: LmtpListener,
    backend: Arc<dyn LmtpBackend>,
    config: LmtpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = Arc::new(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    match &listener {
        LmtpListener::Tcp(l) => tracing::info!(addr = %l.local_addr()?, "lmtp: listening"),
        LmtpListener::Unix(l) => tracing::info!(path = ?l.local_addr()?.as_pathname(), "lmtp: listening"),
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(Accepted::Tcp(_, peer)) if !config.peers.allows(peer.ip()) => {
                    // Dropped unanswered: only Postfix may file mail into the store.
                    tracing::warn!("NOQUEUE: lmtp refused connection from {peer}: not in lmtp_peers");
                    postagent_core::metrics::PEERS_REFUSED.inc("lmtp");
                }
                Ok(conn) if sessions.len() >= config.max_sessions => {
                    tracing::warn!(
                        "NOQUEUE: lmtp refused a connection: {} sessions already (lmtp_max_sessions)",
                        sessions.len()
                    );
                    postagent_core::metrics::PEERS_REFUSED.inc("lmtp_busy");
                    // RFC 5321 §3.8: 421 in place of the greeting; Postfix defers and retries.
                    refuse_busy(conn);
                }
                Ok(conn) => {
                    let (backend, config, stop) = (backend.clone(), config.clone(), stop_rx.clone());
                    match conn {
                        Accepted::Tcp(stream, peer) => {
                            // debug: per-message lines must start with the queue id in mail.log (the span would
                            // prefix them); with debug logging the client shows up.
                            let span = tracing::debug_span!("lmtp", client = %peer);
                            let session = session::serve(stream, peer.to_string(), backend, config, stop);
                            sessions.spawn(session.instrument(span));
                        }
                        Accepted::Unix(stream) => {
                            let span = tracing::debug_span!("lmtp", client = "unix");
                            let session = session::serve(stream, "unix".to_owned(), backend, config, stop);
                            sessions.spawn(session.instrument(span));
                        }
                    }
                }
                Err(e) => accept_failed(e).await,
            },
            Some(done) = sessions.join_next(), if !sessions.is_empty() => log_session_end(done),
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    tracing::info!(sessions = sessions.len(), "lmtp: shutting down");
    let drain = async {
        while let Some(done) = sessions.join_next().await {
            log_session_end(done);
        }
    };
    if tokio::time::timeout(config.data_timeout, drain).await.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            grace = ?config.data_timeout,
            "lmtp: sessions still busy after the grace period; closing them (Postfix will retry)"
        );
        sessions.shutdown().await;
    }
    Ok(())
}

/// Answers a connection over the session cap with `421` and closes it. Runs as a session of
/// its own (bounded by a short write timeout), so a peer that does not read cannot stall the
/// accept loop.
/// Answers `421` and closes, without a task: a fresh socket's send buffer takes the line at
/// once, so a burst of refusals costs neither tasks nor session slots.
fn refuse_busy(conn: Accepted) {
    const BUSY: &[u8] = b"421 4.3.2 too many sessions, try again later\r\n";
    let _ = match conn {
        Accepted::Tcp(s, _) => s.try_write(BUSY),
        Accepted::Unix(s) => s.try_write(BUSY),
    };
}

/// Accept errors are either about one connection (reset before we got to it: retry at once)
/// or about resources (EMFILE, ENOBUFS: pause briefly, as a tight retry loop would spin).
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted) {
        tracing::debug!(error = %e, "lmtp: accept");
        return;
    }
    tracing::error!(error = %e, "lmtp: accept failed; pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn log_session_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        // The connection is gone without replies, so Postfix retries the message.
        tracing::error!(error = %e, "lmtp: session panicked");
    }
}
