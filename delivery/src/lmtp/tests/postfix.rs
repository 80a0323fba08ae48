//! End to end through a real private Postfix: SMTP in, LMTP out to our server.
//!
//! What only the real Postfix can show: that its LMTP client (which pipelines MAIL/RCPT/DATA,
//! dot-stuffs, caches connections and counts per-recipient replies) agrees with us, and
//! that our replies make it do the right thing per recipient (sent, deferred, retried).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postagent_lab::postfix::require_postfix;
use postagent_lab::{PostfixBuilder, PostfixInstance};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{Client, Delivery, RecordingBackend, TestServer, WAIT, dot_stuff, test_config};
use postagent_core::mail::inbound::postfix_queue_id;

/// Complete headers, so Postfix adds nothing but its `Received:`; the dotted lines check
/// stuffing on both hops (client → smtpd, Postfix lmtp → us).
const MESSAGE: &str = "From: Sender <s@sender.test>\r\n\
    To: a@agents.test, b@agents.test, c@agents.test\r\n\
    Subject: end to end\r\n\
    Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
    Message-ID: <e2e-1@sender.test>\r\n\
    \r\n\
    Hello agents.\r\n\
    .a line that starts with a dot\r\n\
    .\r\n\
    Bye.\r\n";

const RCPTS: [&str; 3] = ["a@agents.test", "b@agents.test", "c@agents.test"];

fn postfix_to(lmtp: SocketAddr) -> PostfixInstance {
    PostfixBuilder::new()
        .relay_domain("agents.test")
        .transport("agents.test", &format!("lmtp:inet:{lmtp}"))
        .start()
        .expect("start postfix")
}

/// Submits `MESSAGE` over SMTP and returns Postfix's queue id.
async fn submit(pf: &PostfixInstance, rcpts: &[&str]) -> String {
    let (mut c, banner) = Client::connect(pf.smtp_addr()).await;
    assert!(banner.starts_with("220 "), "{banner}");
    assert!(c.cmd("EHLO client.sender.test").await.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<s@sender.test>").await.starts_with("250"));
    for rcpt in rcpts {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(dot_stuff(MESSAGE).as_bytes()).await;
    let queued = c.reply().await;
    assert!(queued.starts_with("250"), "{queued}");
    c.cmd("QUIT").await;
    queued.trim_end().rsplit(' ').next().expect("queue id").to_owned()
}

async fn next_delivery(rx: &mut mpsc::UnboundedReceiver<Delivery>, pf: &PostfixInstance) -> Delivery {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(d)) => d,
        _ => panic!("no delivery reached the backend; maillog:\n{}", pf.read_log()),
    }
}

/// Waits for Postfix's `status=sent` line for `rcpt`, which quotes our reply.
async fn wait_sent(pf: &PostfixInstance, rcpt: &str) -> String {
    let needle = format!("status=sent (250 2.0.0 <{rcpt}> delivered)");
    pf.wait_log_contains(&needle, WAIT).await.expect("status=sent")
}

/// Asserts `data` is `MESSAGE` below Postfix's own `Received:` header for `queue_id`.
fn assert_exact_body(data: &[u8], queue_id: &str) {
    let text = String::from_utf8_lossy(data);
    let prefix = text.strip_suffix(MESSAGE).unwrap_or_else(|| panic!("body changed in transit:\n{text}"));
    assert!(prefix.starts_with("Received: "), "{prefix}");
    assert!(
        prefix.lines().skip(1).all(|l| l.starts_with([' ', '\t'])),
        "more than one header added:\n{prefix}"
    );
    assert_eq!(postfix_queue_id(data).as_deref(), Some(queue_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_recipients_in_one_transaction() {
    if !require_postfix() {
        return;
    }
    let (backend, mut delivered) = RecordingBackend::with_channel();
    let srv = TestServer::start(backend.clone(), test_config()).await;
    let pf = postfix_to(srv.addr);
    let queue_id = submit(&pf, &RCPTS).await;

    let d = next_delivery(&mut delivered, &pf).await;
    assert_eq!(d.envelope.recipients, RCPTS);
    assert_eq!(d.envelope.mail_from, "s@sender.test");
    assert_eq!(d.envelope.lhlo, "mx.postagent.test");
    assert_exact_body(&d.data, &queue_id);
    for rcpt in RCPTS {
        let line = wait_sent(&pf, rcpt).await;
        assert!(line.contains(&format!("{queue_id}: to=<{rcpt}>")), "{line}");
    }
    pf.wait_queue_empty(WAIT).await.expect("queue drains");
    assert_eq!(backend.deliveries().len(), 1, "one LMTP transaction for all three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_failure_defers_only_that_recipient() {
    if !require_postfix() {
        return;
    }
    let (backend, mut delivered) = RecordingBackend::with_channel();
    backend.set_temp_fail(&["b@agents.test"]);
    let srv = TestServer::start(backend.clone(), test_config()).await;
    let pf = postfix_to(srv.addr);
    let queue_id = submit(&pf, &RCPTS).await;

    let first = next_delivery(&mut delivered, &pf).await;
    assert_eq!(first.envelope.recipients, RCPTS);
    let deferred = pf.wait_log_contains("said: 451 4.3.0 try later", WAIT).await.expect("deferred");
    assert!(deferred.contains(&format!("{queue_id}: to=<b@agents.test>")), "{deferred}");
    assert!(deferred.contains("status=deferred"), "{deferred}");
    wait_sent(&pf, "a@agents.test").await;
    wait_sent(&pf, "c@agents.test").await;

    backend.set_temp_fail(&[]);
    pf.flush().expect("flush");
    let line = wait_sent(&pf, "b@agents.test").await;
    assert!(line.contains(&format!("{queue_id}: to=<b@agents.test>")), "{line}");
    pf.wait_queue_empty(WAIT).await.expect("queue drains");

    let all = backend.deliveries();
    // Retries (Postfix's own 1 s queue run may add one before the flush) carry only b.
    assert!(all[1..].iter().all(|d| d.envelope.recipients == ["b@agents.test"]), "{all:?}");
    assert_exact_body(&all[all.len() - 1].data, &queue_id);
    let log = pf.read_log();
    for rcpt in RCPTS {
        let sent =
            log.lines().filter(|l| l.contains(&format!("to=<{rcpt}>")) && l.contains("status=sent")).count();
        assert_eq!(sent, 1, "{rcpt} sent once:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_then_up_delivers_once() {
    if !require_postfix() {
        return;
    }
    let port = postagent_lab::free_port().expect("free port");
    let lmtp = SocketAddr::from(([127, 0, 0, 1], port));
    let pf = postfix_to(lmtp);
    let queue_id = submit(&pf, &["a@agents.test"]).await;
    let refused = pf.wait_log_contains("status=deferred", WAIT).await.expect("deferred while down");
    assert!(refused.contains(&queue_id), "{refused}");

    let listener = TcpListener::bind(lmtp).await.expect("bind the LMTP port Postfix uses");
    let (backend, mut delivered) = RecordingBackend::with_channel();
    let _srv = TestServer::start_on(listener, Arc::clone(&backend) as _, test_config());
    // A flush that lands while the deferred message is still being moved out of the active
    // queue finds nothing to do (seen under a loaded test run): ask again until it arrives.
    let deadline = tokio::time::Instant::now() + WAIT;
    let d = loop {
        pf.flush().expect("flush");
        match tokio::time::timeout(Duration::from_secs(2), delivered.recv()).await {
            Ok(Some(d)) => break d,
            _ if tokio::time::Instant::now() < deadline => continue,
            _ => panic!("no delivery reached the backend; maillog:\n{}", pf.read_log()),
        }
    };
    assert_exact_body(&d.data, &queue_id);
    wait_sent(&pf, "a@agents.test").await;
    pf.wait_queue_empty(WAIT).await.expect("queue drains");
    assert_eq!(backend.deliveries().len(), 1, "delivered once");
}
