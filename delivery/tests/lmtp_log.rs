//! The LMTP server's one log line per transaction, in a test binary of its own: the process's
//! global subscriber captures every thread's lines, so no other test's logging can change
//! which callsites are enabled (in the unit tests' binary, tracing's callsite-interest cache
//! is shared with tests running on other threads, and the line was sometimes not captured).

use async_trait::async_trait;
use postagent_delivery::lmtp::{self, Envelope, LmtpBackend, LmtpConfig, LmtpListener, Reply};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Accepts every recipient at RCPT; after DATA, `b@` is a temporary failure.
struct Backend;

#[async_trait]
impl LmtpBackend for Backend {
    async fn check_recipient(&self, _rcpt: &str) -> Reply {
        Reply::Ok
    }
    async fn deliver(&self, envelope: &Envelope, _data: bytes::Bytes) -> Vec<Reply> {
        envelope
            .recipients
            .iter()
            .map(|r| if r.starts_with("b@") { Reply::store_unavailable() } else { Reply::Ok })
            .collect()
    }
}

async fn line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).await.expect("read");
    l
}

#[tokio::test]
async fn one_info_line_per_transaction_with_the_queue_id() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lmtp::run(
        LmtpListener::Tcp(listener),
        Arc::new(Backend),
        LmtpConfig::new("lmtp.test"),
        async {
            let _ = stopped.await;
        },
    ));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let local = stream.local_addr().expect("local");
    let (rd, mut w) = stream.into_split();
    let mut rd = BufReader::new(rd);
    assert!(line(&mut rd).await.starts_with("220 "));
    let message = "Received: from c.test (unknown [127.0.0.1])\r\n\
        \tby mx.postagent.test (Postfix) with ESMTP id 4dQ1xk0sYzz9sWL\r\n\
        \tfor <a@agents.test>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n\
        Subject: secret subject\r\n\r\nsecret body\r\n";
    w.write_all(b"LHLO mx.test\r\n").await.expect("write");
    while !line(&mut rd).await.starts_with("250 ") {}
    for cmd in ["MAIL FROM:<s@sender.test>", "RCPT TO:<a@agents.test>", "RCPT TO:<b@agents.test>", "DATA"] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.expect("write");
        let reply = line(&mut rd).await;
        assert!(reply.starts_with('2') || reply.starts_with('3'), "{cmd}: {reply}");
    }
    w.write_all(format!("{message}.\r\n").as_bytes()).await.expect("write");
    assert!(line(&mut rd).await.starts_with("250 "));
    assert!(line(&mut rd).await.starts_with("451 "));
    w.write_all(b"QUIT\r\n").await.expect("write");
    assert!(line(&mut rd).await.starts_with("221 "));
    let _ = stop.send(());
    server.await.expect("join").expect("server");
    let logs = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("from=<")).collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(
        lines[0].contains(&format!(
            "4dQ1xk0sYzz9sWL: lmtp done client={local} from=<s@sender.test> rcpts=2 size={} replies=250,451",
            message.len()
        )),
        "{logs}"
    );
    assert!(!logs.contains("secret"), "never log message content: {logs}");
}
