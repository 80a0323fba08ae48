//! Postfix asks postagent: a `socketmap:` lookup server (socketmap_table(5)) answering the
//! tables Postfix routes agent mail by, live from the store, so an agent or a domain created
//! through the API receives mail at once, and Postfix itself refuses unknown agents at RCPT.
//!
//! The protocol: the client sends `name <space> key` as one netstring (`LEN:BYTES,`) and reads
//! one netstring back: `OK <space> data`, `NOTFOUND <space>`, `TEMP <space> reason` (Postfix
//! tempfails: nothing bounces), or `PERM <space> reason`. A connection carries any number of
//! requests; Postfix keeps it open between lookups.
//!
//! The maps (their names are the `name` field):
//!
//! | name | key | answer |
//! |---|---|---|
//! | `domains` | a domain (`relay_domains`) | `OK <domain>` for the shared domain and every verified agent domain |
//! | `transport` | an address or a domain (`transport_maps`; Postfix sends the full address first) | `OK <transport>` (postagent's LMTP) for either in an agent domain |
//! | `recipients` | an address (`relay_recipient_maps`) | `OK <address>` for a live agent (also with an extension, per `recipient_delimiter`) and a genuine VERP bounce address |
//! | `recipients-or-foreign` | as `recipients` | the same, and `OK` for any address outside the agent domains, for instances whose `relay_recipient_maps` was empty (every other relay domain keeps accepting everyone) |
//!
//! The directory's answers are cached for `cache_ttl`, and the cache is dropped whenever the
//! bus says agents or domains changed ([`BusMessage::Directory`]), on this replica or another:
//! the milter's cache ([`crate::directory_cache`]), with the same policy.

use crate::directory_cache::CachedDirectory;
use crate::recipients::{self, AgentDirectory, RecipientClass};
use postagent_core::bus::BusMessage;
use postagent_core::net::{Accepted, Listener};
use postagent_core::peers::PeerList;
use postagent_core::secret::Secret;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

/// The longest request read: a map name and an address (at most 320 bytes) with room to
/// spare. Longer is malformed: Postfix never sends one, and a hostile peer costs this much.
pub const MAX_REQUEST: usize = 4096;

/// What the server answers from; built by `main` from postagent's configuration.
#[derive(Debug, Clone)]
pub struct SocketmapConfig {
    /// The deployment's shared agent domain, or empty for none.
    pub shared_domain: String,
    /// Verifies VERP bounce addresses.
    pub secret: Secret,
    /// `transport:nexthop` for agent domains, e.g. `postagent:inet:127.0.0.1:2424`.
    pub transport: String,
    /// Postfix's `recipient_delimiter`: each character separates an address extension.
    pub recipient_delimiter: String,
    /// How long an answer is reused without asking the store.
    pub cache_ttl: Duration,
    /// Connections served at once (Postfix holds one per process that looks up).
    pub max_connections: usize,
    /// A connection idle this long is closed (Postfix reconnects when it needs to).
    pub idle_timeout: Duration,
    /// TCP peers admitted; unix sockets are guarded by their mode and group.
    pub peers: PeerList,
}

/// One map's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok(String),
    NotFound,
    Temp(String),
    Perm(String),
}

impl Answer {
    /// The reply as a netstring.
    pub fn encode(&self) -> Vec<u8> {
        let text = match self {
            Self::Ok(data) => format!("OK {data}"),
            Self::NotFound => "NOTFOUND ".to_owned(),
            Self::Temp(reason) => format!("TEMP {reason}"),
            Self::Perm(reason) => format!("PERM {reason}"),
        };
        let mut out = format!("{}:", text.len()).into_bytes();
        out.extend_from_slice(text.as_bytes());
        out.push(b',');
        out
    }
}

/// Why a request could not be read; the connection is closed after a `PERM` (the stream is
/// no longer in step).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("closed")]
    Closed,
    #[error("malformed netstring: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one netstring of at most [`MAX_REQUEST`] bytes.
pub async fn read_netstring<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let b = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && digits == 0 => {
                return Err(ReadError::Closed);
            }
            Err(e) => return Err(e.into()),
        };
        match b {
            b'0'..=b'9' => {
                digits += 1;
                len = len * 10 + usize::from(b - b'0');
                if len > MAX_REQUEST {
                    return Err(ReadError::Malformed("longer than 4096 bytes"));
                }
            }
            b':' if digits > 0 => break,
            _ => return Err(ReadError::Malformed("no length")),
        }
    }
    let mut data = vec![0; len];
    r.read_exact(&mut data).await?;
    if r.read_u8().await? != b',' {
        return Err(ReadError::Malformed("no trailing comma"));
    }
    Ok(data)
}

/// The maps, answering from a (cached) directory.
pub struct Maps {
    directory: Arc<dyn AgentDirectory>,
    config: SocketmapConfig,
}

impl Maps {
    pub fn new(directory: Arc<dyn AgentDirectory>, config: SocketmapConfig) -> Self {
        Self { directory, config }
    }

    /// Answers one request (`name key`).
    pub async fn lookup(&self, request: &[u8]) -> Answer {
        let Ok(text) = std::str::from_utf8(request) else {
            return Answer::Perm("the request is not UTF-8".into());
        };
        let Some((name, key)) = text.split_once(' ') else {
            return Answer::Perm("the request is not `name key`".into());
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || key.len() > 320 || key.chars().any(char::is_control) {
            return Answer::NotFound;
        }
        match name {
            "domains" => self.domain(&key, Answer::Ok(key.clone())).await,
            "transport" => {
                let domain = key.rsplit_once('@').map_or(key.as_str(), |(_, d)| d).to_owned();
                self.domain(&domain, Answer::Ok(self.config.transport.clone())).await
            }
            "recipients" => self.recipient(&key, false).await,
            "recipients-or-foreign" => self.recipient(&key, true).await,
            other => Answer::Perm(format!("no map named {other:?}")),
        }
    }

    async fn domain(&self, domain: &str, found: Answer) -> Answer {
        let domain = domain.trim_end_matches('.');
        if !self.config.shared_domain.is_empty() && domain == self.config.shared_domain {
            return found;
        }
        match self.directory.is_agent_domain(domain).await {
            Ok(true) => found,
            Ok(false) => Answer::NotFound,
            Err(e) => Answer::Temp(recipients::flatten(&*e)),
        }
    }

    async fn recipient(&self, address: &str, foreign_ok: bool) -> Answer {
        let rules = recipients::Rules {
            shared_domain: &self.config.shared_domain,
            secret: &self.config.secret,
            delimiter: &self.config.recipient_delimiter,
        };
        match recipients::classify(&*self.directory, &rules, address).await {
            RecipientClass::Agent => Answer::Ok(address.to_owned()),
            RecipientClass::Foreign if foreign_ok => Answer::Ok(address.to_owned()),
            RecipientClass::Foreign | RecipientClass::UnknownAgent => Answer::NotFound,
            RecipientClass::Unavailable(reason) => Answer::Temp(reason),
        }
    }
}

/// Serves one connection: requests until the peer closes, stays idle too long, or sends
/// something that is not a netstring.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, maps: &Maps, idle: Duration) {
    let mut stream = BufReader::new(stream);
    loop {
        let request = match tokio::time::timeout(idle, read_netstring(&mut stream)).await {
            Err(_) | Ok(Err(ReadError::Closed)) => return,
            Ok(Err(ReadError::Malformed(why))) => {
                tracing::warn!("NOQUEUE: socketmap: malformed request ({why}); closing the connection");
                let _ = stream.write_all(&Answer::Perm(format!("malformed request: {why}")).encode()).await;
                return;
            }
            Ok(Err(ReadError::Io(e))) => {
                tracing::debug!(error = %e, "socketmap: connection failed");
                return;
            }
            Ok(Ok(r)) => r,
        };
        let answer = maps.lookup(&request).await;
        match &answer {
            Answer::Temp(reason) => tracing::warn!(
                "NOQUEUE: socketmap: {} answered TEMP: {reason}",
                String::from_utf8_lossy(&request)
            ),
            other => {
                tracing::debug!(request = %String::from_utf8_lossy(&request), answer = ?other, "socketmap")
            }
        }
        postagent_core::metrics::SOCKETMAP_LOOKUPS.inc(match answer {
            Answer::Ok(_) => "ok",
            Answer::NotFound => "notfound",
            Answer::Temp(_) => "temp",
            Answer::Perm(_) => "perm",
        });
        if stream.write_all(&answer.encode()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// Serves the maps on `listener` until `shutdown` resolves; `bus` carries the directory
/// changes that empty the cache.
pub async fn run(
    listener: Listener,
    directory: Arc<dyn AgentDirectory>,
    config: SocketmapConfig,
    bus: broadcast::Receiver<Arc<BusMessage>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let idle = config.idle_timeout;
    let max = config.max_connections.max(1);
    let peers = config.peers.clone();
    let directory = CachedDirectory::new(directory, config.cache_ttl, bus);
    let maps = Arc::new(Maps::new(directory, config));
    tracing::info!(listener = %listener.local(), "socketmap listening");
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "socketmap: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Accepted::Tcp(_, peer) = &stream && !peers.allows(peer.ip()) {
                    tracing::warn!("NOQUEUE: socketmap refused connection from {peer}: not in socketmap_peers");
                    postagent_core::metrics::PEERS_REFUSED.inc("socketmap");
                    continue;
                }
                if connections.len() >= max {
                    tracing::warn!("NOQUEUE: socketmap refused a connection: {max} connections already");
                    postagent_core::metrics::PEERS_REFUSED.inc("socketmap_busy");
                    continue;
                }
                let maps = maps.clone();
                connections.spawn(async move {
                    match stream {
                        Accepted::Tcp(s, _) => serve_connection(s, &maps, idle).await,
                        Accepted::Unix(s) => serve_connection(s, &maps, idle).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::DirectoryError;
    use async_trait::async_trait;
    use postagent_core::mail::outbound::verp;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct Fake {
        fail: AtomicBool,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl AgentDirectory for Fake {
        async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err("database is unreachable".into());
            }
            Ok(domain == "own.test")
        }
        async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err("database is unreachable".into());
            }
            Ok(["bot@own.test", "bot@agents.test"].contains(&email))
        }
    }

    fn config() -> SocketmapConfig {
        SocketmapConfig {
            shared_domain: "agents.test".into(),
            secret: Secret::new(vec![7; 32]),
            transport: "postagent:inet:127.0.0.1:2424".into(),
            recipient_delimiter: "+".into(),
            cache_ttl: Duration::from_secs(60),
            max_connections: 4,
            idle_timeout: Duration::from_secs(5),
            peers: PeerList::loopback(),
        }
    }

    fn ok(s: &str) -> Answer {
        Answer::Ok(s.to_owned())
    }

    #[tokio::test]
    async fn the_maps_answer_from_the_directory() {
        let fake = Arc::new(Fake::default());
        let maps = Maps::new(fake.clone(), config());
        let q = |r: &'static str| {
            let maps = &maps;
            async move { maps.lookup(r.as_bytes()).await }
        };
        assert_eq!(q("domains own.test").await, ok("own.test"));
        assert_eq!(q("domains Agents.Test").await, ok("agents.test"));
        assert_eq!(q("domains example.org").await, Answer::NotFound);
        // Postfix asks the transport map for the full address, then for the domain.
        assert_eq!(q("transport bot+x@own.test").await, ok("postagent:inet:127.0.0.1:2424"));
        assert_eq!(q("transport own.test").await, ok("postagent:inet:127.0.0.1:2424"));
        assert_eq!(q("transport someone@example.org").await, Answer::NotFound);
        assert_eq!(q("recipients bot@own.test").await, ok("bot@own.test"));
        assert_eq!(q("recipients bot+signup@own.test").await, ok("bot+signup@own.test"));
        assert_eq!(q("recipients nobody@own.test").await, Answer::NotFound);
        assert_eq!(q("recipients someone@example.org").await, Answer::NotFound);
        assert_eq!(q("recipients-or-foreign someone@example.org").await, ok("someone@example.org"));
        assert_eq!(q("recipients-or-foreign nobody@own.test").await, Answer::NotFound);
        let bounce = verp::bounce_address(
            &Secret::new(vec![7; 32]),
            "msg_0123456789abcdef0123456789abcdef",
            "own.test",
            postagent_core::time::Timestamp::now(),
        );
        assert_eq!(maps.lookup(format!("recipients {bounce}").as_bytes()).await, ok(&bounce));
        assert!(matches!(q("aliases x").await, Answer::Perm(_)));
        assert!(matches!(q("nospace").await, Answer::Perm(_)));
        assert!(matches!(maps.lookup(b"domains \xff").await, Answer::Perm(_)));
        let long = format!("recipients {}@own.test", "a".repeat(400));
        assert_eq!(maps.lookup(long.as_bytes()).await, Answer::NotFound, "no address is that long");
    }

    #[tokio::test]
    async fn answers_are_cached_until_the_directory_changes_and_failures_never() {
        let fake = Arc::new(Fake::default());
        let bus = postagent_core::bus::EventBus::new();
        let cached = CachedDirectory::new(fake.clone(), Duration::from_secs(60), bus.subscribe());
        let maps = Maps::new(cached.clone(), config());
        assert_eq!(maps.lookup(b"domains own.test").await, ok("own.test"));
        assert_eq!(maps.lookup(b"domains own.test").await, ok("own.test"));
        assert_eq!(fake.lookups.load(Ordering::SeqCst), 1, "the second answer came from the cache");
        cached.invalidate();
        fake.fail.store(true, Ordering::SeqCst);
        assert!(
            matches!(maps.lookup(b"domains own.test").await, Answer::Temp(r) if r.contains("unreachable"))
        );
        fake.fail.store(false, Ordering::SeqCst);
        assert_eq!(maps.lookup(b"domains own.test").await, ok("own.test"), "a TEMP is not cached");
        assert_eq!(fake.lookups.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn answers_are_netstrings() {
        assert_eq!(ok("a@b").encode(), b"6:OK a@b,");
        assert_eq!(Answer::NotFound.encode(), b"9:NOTFOUND ,");
        assert_eq!(Answer::Temp("down".into()).encode(), b"9:TEMP down,");
    }

    async fn read(bytes: &[u8]) -> Result<Vec<u8>, ReadError> {
        let mut r = bytes;
        read_netstring(&mut r).await
    }

    #[tokio::test]
    async fn netstrings_are_read_with_a_cap() {
        assert_eq!(read(b"16:domains own.test,").await.expect("read"), b"domains own.test");
        assert!(matches!(read(b"").await, Err(ReadError::Closed)));
        assert!(matches!(read(b":x,").await, Err(ReadError::Malformed(_))));
        assert!(matches!(read(b"5x:hello,").await, Err(ReadError::Malformed(_))));
        assert!(matches!(read(b"5:hello;").await, Err(ReadError::Malformed(_))));
        assert!(matches!(read(b"5:hel").await, Err(ReadError::Io(_))));
        // A huge length is refused at its digits: nothing is allocated or read for it.
        assert!(matches!(read(b"99999999999999999999999:").await, Err(ReadError::Malformed(_))));
        assert!(matches!(
            read(format!("4097:{},", "a".repeat(4097)).as_bytes()).await,
            Err(ReadError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn a_connection_serves_many_requests_and_closes_on_garbage() {
        let maps = Maps::new(Arc::new(Fake::default()), config());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let serving = async { serve_connection(server, &maps, Duration::from_secs(5)).await };
        let talking = async {
            client.write_all(b"16:domains own.test,19:domains example.org,garbage").await.expect("write");
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.expect("read");
            out
        };
        let ((), out) = tokio::join!(serving, talking);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("11:OK own.test,9:NOTFOUND ,"), "{text}");
        assert!(text.contains("PERM malformed request"), "{text}");
    }
}
