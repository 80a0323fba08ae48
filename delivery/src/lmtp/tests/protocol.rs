//! The LMTP dialogue over a real TCP socket, driven by a scripted client.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Client, RecordingBackend, TestServer, dot_stuff, test_config};

const MESSAGE: &str = "From: s@sender.test\r\nTo: a@agents.test\r\nSubject: hi\r\n\r\nHello.\r\n";

async fn server() -> (TestServer, Arc<RecordingBackend>) {
    let backend = Arc::new(RecordingBackend::default());
    (TestServer::start(backend.clone(), test_config()).await, backend)
}

/// Runs MAIL, the RCPTs and DATA one by one and returns the replies after the message.
async fn transaction(c: &mut Client, from: &str, rcpts: &[&str], message: &str) -> Vec<String> {
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    assert!(r.starts_with("250 2.1.0"), "{r}");
    let mut accepted = 0;
    for rcpt in rcpts {
        if c.cmd(&format!("RCPT TO:<{rcpt}>")).await.starts_with("250 2.1.5") {
            accepted += 1;
        }
    }
    let r = c.cmd("DATA").await;
    assert!(r.starts_with("354 "), "{r}");
    c.send(dot_stuff(message).as_bytes()).await;
    c.replies(accepted).await
}

#[tokio::test]
async fn greeting_and_lhlo_capabilities() {
    let (srv, _) = server().await;
    let (mut c, greeting) = Client::connect(srv.addr).await;
    assert_eq!(greeting, "220 lmtp.test LMTP postagent ready\r\n");
    assert_eq!(
        c.cmd("LHLO mx.client.test").await,
        "250-lmtp.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 bye\r\n");
    c.expect_closed().await;
}

#[tokio::test]
async fn helo_and_ehlo_are_refused() {
    let (srv, _) = server().await;
    let (mut c, _) = Client::connect(srv.addr).await;
    assert!(c.cmd("HELO mx.client.test").await.starts_with("500 5.5.1 "));
    assert!(c.cmd("EHLO mx.client.test").await.starts_with("500 5.5.1 "));
    // Neither counts as a greeting.
    assert!(c.cmd("MAIL FROM:<s@sender.test>").await.starts_with("503 5.5.1 "));
}

#[tokio::test]
async fn pipelined_mail_rcpt_rcpt_data_in_one_write() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.send(b"MAIL FROM:<s@sender.test> SIZE=70 BODY=8BITMIME\r\nRCPT TO:<a@agents.test>\r\nRCPT TO:<B@Agents.Test>\r\nDATA\r\n")
        .await;
    let r = c.replies(4).await;
    assert!(r[0].starts_with("250 2.1.0 "), "{r:?}");
    assert_eq!(r[1], "250 2.1.5 <a@agents.test> recipient OK\r\n");
    assert_eq!(r[2], "250 2.1.5 <B@Agents.Test> recipient OK\r\n");
    assert!(r[3].starts_with("354 "), "{r:?}");
    // The message and the next command in one write, too.
    c.send(format!("{}NOOP\r\n", dot_stuff(MESSAGE)).as_bytes()).await;
    assert_eq!(
        c.replies(3).await,
        [
            "250 2.0.0 <a@agents.test> delivered\r\n",
            "250 2.0.0 <B@Agents.Test> delivered\r\n",
            "250 2.0.0 OK\r\n"
        ]
    );
    let d = backend.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].envelope.mail_from, "s@sender.test");
    assert_eq!(d[0].envelope.recipients, ["a@agents.test", "B@Agents.Test"]);
    assert_eq!(d[0].envelope.lhlo, "mx.client.test");
    assert!(d[0].envelope.client.starts_with("127.0.0.1:"), "{}", d[0].envelope.client);
    assert_eq!(&d[0].data[..], MESSAGE.as_bytes());
}

#[tokio::test]
async fn dot_unstuffing() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    let r = c.cmd("MAIL FROM:<>").await;
    assert!(r.starts_with("250 2.1.0 <> "), "{r}");
    c.cmd("RCPT TO:<a@agents.test>").await;
    c.cmd("DATA").await;
    // As a client sends it: a line starting with ".." and a line that is just "." escaped.
    c.send(b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...\r\nend\r\n.\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 <a@agents.test> delivered\r\n");
    let d = backend.deliveries();
    assert_eq!(&d[0].data[..], b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..\r\nend\r\n");
    assert_eq!(d[0].envelope.mail_from, "");
}

#[tokio::test]
async fn one_reply_per_recipient_in_rcpt_order() {
    let (srv, backend) = server().await;
    backend.set_temp_fail(&["b@agents.test"]);
    let mut c = Client::ready(srv.addr).await;
    let replies =
        transaction(&mut c, "s@sender.test", &["a@agents.test", "b@agents.test", "c@agents.test"], MESSAGE)
            .await;
    assert_eq!(
        replies,
        [
            "250 2.0.0 <a@agents.test> delivered\r\n",
            "451 4.3.0 try later\r\n",
            "250 2.0.0 <c@agents.test> delivered\r\n"
        ]
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n", "no extra reply after the per-recipient ones");
}

#[tokio::test]
async fn refused_recipients_get_no_reply_after_data() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    assert!(c.cmd("RCPT TO:<a@agents.test>").await.starts_with("250 2.1.5"));
    assert_eq!(c.cmd("RCPT TO:<unknown@agents.test>").await, "550 5.1.1 no such agent\r\n");
    assert!(c.cmd("RCPT TO:<down@agents.test>").await.starts_with("451 4.3.0 "));
    assert!(c.cmd("RCPT TO:<c@agents.test>").await.starts_with("250 2.1.5"));
    c.cmd("DATA").await;
    c.send(dot_stuff(MESSAGE).as_bytes()).await;
    assert_eq!(
        c.replies(2).await,
        ["250 2.0.0 <a@agents.test> delivered\r\n", "250 2.0.0 <c@agents.test> delivered\r\n"]
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    assert_eq!(backend.deliveries()[0].envelope.recipients, ["a@agents.test", "c@agents.test"]);
    assert_eq!(
        *backend.checked.lock().expect("lock"),
        ["a@agents.test", "unknown@agents.test", "down@agents.test", "c@agents.test"]
    );
}

#[tokio::test]
async fn missing_backend_replies_become_451() {
    let (srv, backend) = server().await;
    backend.short_replies.store(true, Ordering::SeqCst);
    let mut c = Client::ready(srv.addr).await;
    let replies = transaction(&mut c, "s@sender.test", &["a@agents.test", "b@agents.test"], MESSAGE).await;
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert!(replies[1].starts_with("451 4.3.0"), "{replies:?}");
}

#[tokio::test]
async fn a_panicking_backend_drops_only_its_connection() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    c.cmd("RCPT TO:<panic@agents.test>").await;
    c.cmd("DATA").await;
    c.send(dot_stuff(MESSAGE).as_bytes()).await;
    // No reply at all, so Postfix would retry the message later.
    c.expect_closed().await;
    let mut c = Client::ready(srv.addr).await;
    let replies = transaction(&mut c, "s@sender.test", &["a@agents.test"], MESSAGE).await;
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert_eq!(backend.deliveries().len(), 1);
}

#[tokio::test]
async fn size_limit_at_mail() {
    let (srv, _) = server().await;
    let mut c = Client::ready(srv.addr).await;
    assert_eq!(
        c.cmd("MAIL FROM:<s@sender.test> SIZE=10001").await,
        "552 5.3.4 message size exceeds fixed limit\r\n"
    );
    assert!(c.cmd("MAIL FROM:<s@sender.test> SIZE=10000").await.starts_with("250 2.1.0"));
}

#[tokio::test]
async fn size_limit_during_data() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    let big = format!("Subject: big\r\n\r\n{}", format!("{}\r\n", "x".repeat(98)).repeat(200));
    let replies = transaction(&mut c, "s@sender.test", &["a@agents.test", "b@agents.test"], &big).await;
    assert_eq!(replies, ["552 5.3.4 message size exceeds fixed limit\r\n"; 2]);
    assert!(backend.deliveries().is_empty(), "deliver must not be called");
    // The connection stays in sync and usable.
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    let replies = transaction(&mut c, "s@sender.test", &["a@agents.test"], MESSAGE).await;
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
}

#[tokio::test]
async fn rset_clears_the_transaction() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    c.cmd("RCPT TO:<a@agents.test>").await;
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 OK\r\n");
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1 "));
    assert!(c.cmd("RCPT TO:<a@agents.test>").await.starts_with("503 5.5.1 "));
    // After RSET a new MAIL is not "nested", and the old recipient is gone.
    let replies = transaction(&mut c, "t@sender.test", &["b@agents.test"], MESSAGE).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(backend.deliveries()[0].envelope.recipients, ["b@agents.test"]);
}

#[tokio::test]
async fn second_transaction_on_the_same_connection() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    transaction(&mut c, "one@sender.test", &["a@agents.test", "b@agents.test"], MESSAGE).await;
    let second = "Subject: two\r\n\r\nSecond.\r\n";
    let replies = transaction(&mut c, "two@sender.test", &["c@agents.test"], second).await;
    assert_eq!(replies, ["250 2.0.0 <c@agents.test> delivered\r\n"]);
    let d = backend.deliveries();
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[1].envelope.mail_from.as_str(), &d[1].envelope.recipients[..]),
        ("two@sender.test", &["c@agents.test".to_owned()][..])
    );
    assert_eq!(&d[1].data[..], second.as_bytes());
}

#[tokio::test]
async fn max_recipients() {
    let (srv, backend) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    for r in ["a", "b", "c"] {
        assert!(c.cmd(&format!("RCPT TO:<{r}@agents.test>")).await.starts_with("250 2.1.5"));
    }
    assert_eq!(c.cmd("RCPT TO:<d@agents.test>").await, "452 4.5.3 too many recipients\r\n");
    c.cmd("DATA").await;
    c.send(dot_stuff(MESSAGE).as_bytes()).await;
    assert_eq!(c.replies(3).await.len(), 3);
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    assert_eq!(backend.checked.lock().expect("lock").len(), 3, "the 4th is refused before the backend");
}

#[tokio::test]
async fn bad_sequence() {
    let (srv, _) = server().await;
    let (mut c, _) = Client::connect(srv.addr).await;
    assert!(c.cmd("MAIL FROM:<s@sender.test>").await.starts_with("503 5.5.1 "), "MAIL before LHLO");
    c.cmd("LHLO mx.client.test").await;
    assert!(c.cmd("RCPT TO:<a@agents.test>").await.starts_with("503 5.5.1 "), "RCPT before MAIL");
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1 "), "DATA before MAIL");
    c.cmd("MAIL FROM:<s@sender.test>").await;
    assert!(c.cmd("MAIL FROM:<s@sender.test>").await.starts_with("503 5.5.1 "), "nested MAIL");
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 no valid recipients\r\n", "DATA before RCPT");
    c.cmd("RCPT TO:<unknown@agents.test>").await;
    assert_eq!(c.cmd("DATA").await, "503 5.5.1 no valid recipients\r\n", "only refused recipients");
    // LHLO resets the transaction (RFC 5321 §4.1.4).
    c.cmd("LHLO again.client.test").await;
    assert!(c.cmd("RCPT TO:<a@agents.test>").await.starts_with("503 5.5.1 "));
}

#[tokio::test]
async fn syntax_and_other_commands() {
    let (srv, _) = server().await;
    let mut c = Client::ready(srv.addr).await;
    assert!(c.cmd("FROB").await.starts_with("500 5.5.2 "));
    assert!(c.cmd("MAIL FROM:s@sender.test").await.starts_with("501 5.5.4 "));
    assert!(c.cmd("MAIL FROM:<s@sender.test> SMTPUTF8").await.starts_with("555 5.5.4 "));
    assert!(c.cmd("RSET now").await.starts_with("501 5.5.4 "));
    assert!(c.cmd("VRFY someone").await.starts_with("252 2.1.5 "));
    assert!(c.cmd("EXPN list").await.starts_with("502 5.5.1 "));
    assert!(c.cmd("HELP").await.starts_with("214 2.0.0 "));
    // Bare-LF command lines are accepted.
    c.send(b"NOOP\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 OK\r\n");
}

#[tokio::test]
async fn overlong_line() {
    let (srv, _) = server().await;
    let mut c = Client::ready(srv.addr).await;
    // Longer than the limit and than one read, then a normal command in the same write.
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(40_000));
    c.send(long.as_bytes()).await;
    assert_eq!(c.replies(2).await, ["500 5.5.2 line too long\r\n", "250 2.0.0 OK\r\n"]);
    let just_over = format!("NOOP {}\r\n", "x".repeat(super::super::session::MAX_COMMAND_LINE - 6));
    assert_eq!(c.cmd(just_over.trim_end()).await, "500 5.5.2 line too long\r\n");
    let just_fits = format!("NOOP {}", "x".repeat(super::super::session::MAX_COMMAND_LINE - 7));
    assert_eq!(c.cmd(&just_fits).await, "250 2.0.0 OK\r\n");
}

#[tokio::test]
async fn too_many_errors_closes_the_connection() {
    let (srv, _) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.send("FROB\r\n".repeat(25).as_bytes()).await;
    let replies = c.replies(20).await;
    assert!(replies.iter().all(|r| r.starts_with("500 5.5.2")), "{replies:?}");
    assert!(c.reply().await.starts_with("421 4.7.0 "));
    c.expect_closed().await;
}

#[tokio::test]
async fn command_timeout() {
    let backend = Arc::new(RecordingBackend::default());
    let config = super::super::LmtpConfig { command_timeout: Duration::from_millis(200), ..test_config() };
    let srv = TestServer::start(backend, config).await;
    let mut c = Client::ready(srv.addr).await;
    // The client says nothing more; the server gives up on its own.
    assert!(c.reply().await.starts_with("421 4.4.2 "));
    c.expect_closed().await;
}

#[tokio::test]
async fn data_timeout() {
    let backend = Arc::new(RecordingBackend::default());
    let config = super::super::LmtpConfig { data_timeout: Duration::from_millis(200), ..test_config() };
    let srv = TestServer::start(backend.clone(), config).await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    c.cmd("RCPT TO:<a@agents.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: stalled\r\n").await;
    assert!(c.reply().await.starts_with("421 4.4.2 "));
    c.expect_closed().await;
    assert!(backend.deliveries().is_empty());
}

#[tokio::test]
async fn a_peer_outside_lmtp_peers_is_closed_before_the_greeting() {
    let backend = Arc::new(RecordingBackend::default());
    let peers = postagent_core::peers::PeerList::parse("192.0.2.0/24").expect("peers");
    let srv = TestServer::start(backend.clone(), super::super::LmtpConfig { peers, ..test_config() }).await;
    let stream = tokio::net::TcpStream::connect(srv.addr).await.expect("connect");
    let mut got = Vec::new();
    use tokio::io::AsyncReadExt as _;
    let (mut r, _w) = stream.into_split();
    let read =
        tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got)).await.expect("closed in time");
    assert!(read.is_err() || got.is_empty(), "a stranger hears nothing: {:?}", String::from_utf8_lossy(&got));
    assert!(backend.checked.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn sessions_past_the_cap_get_421_and_the_rest_go_on() {
    let backend = Arc::new(RecordingBackend::default());
    let srv =
        TestServer::start(backend.clone(), super::super::LmtpConfig { max_sessions: 2, ..test_config() })
            .await;
    let mut first = Client::ready(srv.addr).await;
    let _second = Client::ready(srv.addr).await;
    let (mut third, greeting) = Client::connect(srv.addr).await;
    assert!(greeting.starts_with("421 4.3.2 "), "{greeting}");
    third.expect_closed().await;
    // A burst of refusals takes no session slot of its own (no task waits on them).
    for _ in 0..50 {
        let (_, greeting) = Client::connect(srv.addr).await;
        assert!(greeting.starts_with("421 4.3.2 "), "{greeting}");
    }
    // The sessions already open are served as before.
    assert_eq!(transaction(&mut first, "s@sender.test", &["a@agents.test"], MESSAGE).await.len(), 1);
    drop(first);
    // A freed slot is used again.
    let mut fourth = loop {
        let (c, greeting) = Client::connect(srv.addr).await;
        if greeting.starts_with("220 ") {
            break c;
        }
    };
    assert!(fourth.cmd("LHLO mx.client.test").await.starts_with("250-"));
}

#[tokio::test]
async fn a_session_past_its_deadline_is_closed_even_when_busy() {
    let backend = Arc::new(RecordingBackend::default());
    let config = super::super::LmtpConfig {
        session_deadline: Duration::from_millis(300),
        command_timeout: Duration::from_secs(10),
        ..test_config()
    };
    let srv = TestServer::start(backend.clone(), config).await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    c.cmd("RCPT TO:<a@agents.test>").await;
    c.cmd("DATA").await;
    // A peer that trickles its message (each read well within data_timeout) is still cut off.
    c.send(b"Subject: slow\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2 session time limit"), "{r}");
    c.expect_closed().await;
    assert!(backend.deliveries().is_empty(), "nothing half-delivered");
}

#[tokio::test]
async fn shutdown_while_idle_gives_421() {
    let (mut srv, _) = server().await;
    let mut c = Client::ready(srv.addr).await;
    c.cmd("MAIL FROM:<s@sender.test>").await;
    srv.begin_shutdown();
    assert_eq!(c.reply().await, "421 4.3.2 shutting down\r\n");
    c.expect_closed().await;
    let addr = srv.addr;
    srv.finished().await.expect("run returns Ok");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_lets_a_message_in_data_finish() {
    let (mut srv, backend) = server().await;
    let mut busy = Client::ready(srv.addr).await;
    let mut idle = Client::ready(srv.addr).await;
    busy.cmd("MAIL FROM:<s@sender.test>").await;
    busy.cmd("RCPT TO:<a@agents.test>").await;
    busy.cmd("DATA").await;
    busy.send(b"Subject: half\r\n").await;
    srv.begin_shutdown();
    // Once the idle session has its 421, shutdown is under way.
    assert_eq!(idle.reply().await, "421 4.3.2 shutting down\r\n");
    busy.send(b"\r\nrest of the body\r\n.\r\n").await;
    assert_eq!(busy.reply().await, "250 2.0.0 <a@agents.test> delivered\r\n");
    assert_eq!(busy.reply().await, "421 4.3.2 shutting down\r\n");
    busy.expect_closed().await;
    srv.finished().await.expect("run returns Ok");
    assert_eq!(&backend.deliveries()[0].data[..], b"Subject: half\r\n\r\nrest of the body\r\n");
}

#[tokio::test]
async fn unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lmtp.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind unix");
    let backend = Arc::new(RecordingBackend::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::super::run(
        super::super::LmtpListener::Unix(listener),
        backend.clone(),
        test_config(),
        async move {
            let _ = stopped.await;
        },
    ));
    let stream = tokio::net::UnixStream::connect(&path).await.expect("connect");
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::new(r);
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    w.write_all(
        format!(
            "LHLO x.test\r\nMAIL FROM:<s@sender.test>\r\nRCPT TO:<a@agents.test>\r\nDATA\r\n{}QUIT\r\n",
            dot_stuff(MESSAGE)
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut transcript = String::new();
    let read_all = async { while r.read_line(&mut transcript).await.expect("read") > 0 {} };
    tokio::time::timeout(super::WAIT, read_all).await.expect("server closes after QUIT");
    assert!(transcript.starts_with("220 lmtp.test"), "{transcript}");
    assert!(transcript.ends_with("250 2.0.0 <a@agents.test> delivered\r\n221 2.0.0 bye\r\n"), "{transcript}");
    assert_eq!(backend.deliveries()[0].envelope.client, "unix");
    let _ = stop.send(());
    server.await.expect("join").expect("run");
}

// The one log line per transaction is checked in `delivery/tests/lmtp_log.rs`, a test binary
// of its own: here, tests on other threads share tracing's callsite-interest cache.
