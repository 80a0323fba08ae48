//! Tests of the LMTP server over real sockets: a scripted client ([`protocol`]) and a real
//! private Postfix ([`postfix`]), both against [`RecordingBackend`].
//!
//! Nothing here sleeps: readiness is a bound listener, progress is a reply read from the
//! socket or a delivery received on a channel, and every wait has a timeout that fails loudly.

mod postfix;
mod props;
mod protocol;

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Envelope, LmtpBackend, LmtpConfig, LmtpListener, Reply, run};

/// Generous: only ever reached when a test is about to fail.
const WAIT: Duration = Duration::from_secs(30);

/// One call of [`LmtpBackend::deliver`].
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub envelope: Envelope,
    pub data: Bytes,
}

/// A backend that records every call. Recipients whose local part starts with `unknown` are
/// refused at RCPT (550 5.1.1), `down@…` gets 451 4.3.0; `deliver` answers 451 for the
/// recipients in `temp_fail` and Ok for the rest, and panics for a `panic@…` recipient.
#[derive(Default)]
pub(super) struct RecordingBackend {
    pub checked: Mutex<Vec<String>>,
    pub deliveries: Mutex<Vec<Delivery>>,
    pub temp_fail: Mutex<HashSet<String>>,
    /// Answer one reply too few (a buggy backend).
    pub short_replies: AtomicBool,
    notify: Mutex<Option<mpsc::UnboundedSender<Delivery>>>,
}

impl RecordingBackend {
    /// A backend and a receiver that yields each delivery as it happens.
    pub fn with_channel() -> (Arc<Self>, mpsc::UnboundedReceiver<Delivery>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let backend = RecordingBackend { notify: Mutex::new(Some(tx)), ..Default::default() };
        (Arc::new(backend), rx)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("lock").clone()
    }

    pub fn set_temp_fail(&self, rcpts: &[&str]) {
        *self.temp_fail.lock().expect("lock") = rcpts.iter().map(|r| (*r).to_owned()).collect();
    }
}

#[async_trait::async_trait]
impl LmtpBackend for RecordingBackend {
    async fn check_recipient(&self, rcpt: &str) -> Reply {
        self.checked.lock().expect("lock").push(rcpt.to_owned());
        if rcpt.starts_with("unknown") {
            Reply::unknown_recipient()
        } else if rcpt.starts_with("down@") {
            Reply::store_unavailable()
        } else {
            Reply::Ok
        }
    }

    async fn deliver(&self, envelope: &Envelope, data: Bytes) -> Vec<Reply> {
        assert!(!envelope.recipients.iter().any(|r| r.starts_with("panic@")), "backend bug (on purpose)");
        let delivery = Delivery { envelope: envelope.clone(), data };
        self.deliveries.lock().expect("lock").push(delivery.clone());
        if let Some(tx) = &*self.notify.lock().expect("lock") {
            let _ = tx.send(delivery);
        }
        let temp_fail = self.temp_fail.lock().expect("lock").clone();
        let mut replies: Vec<Reply> = envelope
            .recipients
            .iter()
            .map(|r| if temp_fail.contains(r) { Reply::temp(451, "4.3.0", "try later") } else { Reply::Ok })
            .collect();
        if self.short_replies.load(Ordering::SeqCst) {
            replies.pop();
        }
        replies
    }
}

/// Small limits so tests can hit them: 10 000 octets, 3 recipients, 10 s timeouts.
pub(super) fn test_config() -> LmtpConfig {
    LmtpConfig {
        hostname: "lmtp.test".into(),
        max_message_bytes: 10_000,
        max_recipients: 3,
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        peers: postagent_core::peers::PeerList::loopback(),
        max_sessions: 100,
        session_deadline: Duration::from_secs(60),
    }
}

/// [`run`] on 127.0.0.1:0 in a task, with a trigger for its shutdown.
pub(super) struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    pub async fn start(backend: Arc<dyn LmtpBackend>, config: LmtpConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, backend, config)
    }

    pub fn start_on(listener: TcpListener, backend: Arc<dyn LmtpBackend>, config: LmtpConfig) -> TestServer {
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(run(LmtpListener::Tcp(listener), backend, config, shutdown));
        TestServer { addr, stop: Some(stop), task }
    }

    /// Signals shutdown; [`Self::finished`] waits for `run` to return.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn finished(self) -> io::Result<()> {
        tokio::time::timeout(WAIT, self.task).await.expect("run returns in time").expect("run task")
    }
}

/// A scripted LMTP client: raw writes, whole (multi-line) replies.
pub(super) struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    /// Connects and returns the client and the greeting.
    pub async fn connect(addr: SocketAddr) -> (Client, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (r, w) = stream.into_split();
        let mut client = Client { r: BufReader::new(r), w };
        let greeting = client.reply().await;
        (client, greeting)
    }

    /// Connects and says LHLO.
    pub async fn ready(addr: SocketAddr) -> Client {
        let (mut c, greeting) = Client::connect(addr).await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        let lhlo = c.cmd("LHLO mx.client.test").await;
        assert!(lhlo.starts_with("250-"), "{lhlo}");
        c
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).await.expect("write");
    }

    /// One reply: every line up to the one with a space after the code.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.r.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("read reply");
            assert!(n > 0, "connection closed; replies so far: {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub async fn cmd(&mut self, cmd: &str) -> String {
        self.send(format!("{cmd}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// `n` replies, for pipelined commands.
    pub async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut all = Vec::new();
        for _ in 0..n {
            all.push(self.reply().await);
        }
        all
    }

    /// Asserts the server closes the connection with nothing more to say.
    pub async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.r.read_to_end(&mut rest))
            .await
            .expect("server closes in time")
            .expect("read to end");
        assert!(rest.is_empty(), "unexpected data before close: {:?}", String::from_utf8_lossy(&rest));
    }
}

/// Dot-stuffs `message` (RFC 5321 §4.5.2) and appends the terminator.
pub(super) fn dot_stuff(message: &str) -> String {
    let mut out = String::new();
    for line in message.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out.push_str(".\r\n");
    out
}
