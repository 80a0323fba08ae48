//! The trust chain attacked end to end, through a real private Postfix and the real binary:
//! who can reach the mail sockets, replaying a signed message (straight into LMTP and through
//! `sendmail`) with a changed From, Subject, body or recipient, a content filter that
//! re-queues mail, and a message built to be expensive.

use crate::common;

use common::bin::{Server, text};
use common::mail::{MailWorld, Options, raw_of};
use postagent_lab::mail_lab::{DKIM_ONLY_DOMAIN, sample_message};
use postagent_lab::smtp::Smtp;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const BOT: &str = "bot@agents.test";
const OTHER: &str = "other@agents.test";

/// A message from `alice@far.test`, DKIM-signed by far.test (whose SPF authorises nothing
/// here): verified only while its DKIM signature holds.
fn far_message(world: &MailWorld, subject: &str, id: &str) -> String {
    let m = sample_message(BOT, subject, id, "Please pay invoice 42.\r\n")
        .replace("alice@sender.test", &format!("alice@{DKIM_ONLY_DOMAIN}"));
    world.zone.sign_as(DKIM_ONLY_DOMAIN, &m).expect("dkim sign")
}

/// One LMTP transaction on `addr` for `rcpt`: the reply to the message.
async fn lmtp(addr: SocketAddr, rcpt: &str, raw: &[u8]) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect lmtp");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut read = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| -> String {
        let mut all = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).await.expect("read");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    assert!(read(&mut r).await.starts_with("220"));
    w.write_all(b"LHLO attacker.test\r\n").await.expect("write");
    read(&mut r).await;
    w.write_all(format!("MAIL FROM:<>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes()).await.expect("write");
    read(&mut r).await;
    read(&mut r).await;
    assert!(read(&mut r).await.starts_with("354"));
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let mut wire = String::new();
    for l in text.lines() {
        if l.starts_with('.') {
            wire.push('.');
        }
        wire.push_str(l);
        wire.push_str("\r\n");
    }
    wire.push_str(".\r\n");
    w.write_all(wire.as_bytes()).await.expect("write");
    read(&mut r).await
}

/// The stored message with `subject` in `agent`'s inbox (any read state), in full.
async fn by_subject(world: &MailWorld, agent: &str, subject: &str) -> Value {
    let list = world.get(&format!("/v1/agents/{agent}/messages?read_status=all")).await;
    let item = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|m| m["subject"] == subject)
        .unwrap_or_else(|| panic!("no {subject:?} for {agent}: {list}"))
        .clone();
    world.get(&format!("/v1/agents/{agent}/messages/{}", item["id"].as_str().expect("id"))).await
}

/// `sendmail` of the private Postfix, as a local user would run it.
fn sendmail(world: &MailWorld, from: &str, rcpt: &str, raw: &[u8]) {
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/sbin/sendmail")
        .args(["-C", world.postfix.config_dir().to_str().expect("utf-8"), "-f", from, rcpt])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sendmail");
    child.stdin.take().expect("stdin").write_all(raw).expect("write");
    assert!(child.wait().expect("wait").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_message_replayed_with_any_change_is_stored_unverified() {
    let options = Options { agents: vec![BOT, OTHER], ..Options::default() };
    let Some(mut world) = MailWorld::start(options).await else { return };
    let server = world.serve();
    let original = far_message(&world, "Invoice 42", "inv-42");
    let qid = world.send(&format!("alice@{DKIM_ONLY_DOMAIN}"), &[BOT], &original).await;
    world.wait_sent(&qid, BOT).await;
    let first = by_subject(&world, BOT, "Invoice 42").await;
    assert_eq!(first["verified_domain"], DKIM_ONLY_DOMAIN, "DKIM makes the original verified: {first}");
    let raw = raw_of(&first);
    let signed = String::from_utf8(raw.clone()).expect("utf-8");

    // Straight into LMTP (what a local user could do with a loopback LMTP listener).
    let lmtp_addr: SocketAddr = format!("127.0.0.1:{}", world.lmtp_port).parse().expect("addr");
    let cases = [
        ("another recipient", OTHER, signed.clone(), "Invoice 42", "recipient"),
        (
            "a changed subject",
            BOT,
            signed.replace("Subject: Invoice 42", "Subject: Invoice 43"),
            "Invoice 43",
            "headers",
        ),
        (
            "a changed From",
            BOT,
            signed
                .replace("From: Alice <alice@far.test>", "From: Alice <ceo@far.test>")
                .replace("Invoice 42", "Invoice 44"),
            "Invoice 44",
            "headers",
        ),
        (
            "a changed body",
            BOT,
            signed.replace("invoice 42.", "invoice 42 to IBAN XX00."),
            "Invoice 42",
            "body",
        ),
    ];
    for (what, rcpt, replay, subject, binding) in &cases {
        let reply = lmtp(lmtp_addr, rcpt, replay.as_bytes()).await;
        assert!(reply.starts_with("250"), "{what}: {reply}");
        let log = server.log();
        assert!(
            log.contains(&format!("binding={binding}")),
            "{what}: no binding={binding} in the log:\n{log}"
        );
        let list = world.get(&format!("/v1/agents/{rcpt}/messages?read_status=all")).await;
        let unverified = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|m| m["subject"] == *subject)
            .any(|m| m["verified_domain"].is_null());
        assert!(unverified, "{what}: stored, but not as verified: {list}");
    }

    // Through sendmail (pickup): the milter replaces the set and judges the message afresh;
    // with a changed subject the DKIM signature no longer holds.
    let resent = signed.replace("Subject: Invoice 42", "Subject: Invoice 45");
    sendmail(&world, "mallory@evil.test", OTHER, resent.as_bytes());
    world
        .postfix
        .wait_log_line(&[&format!("to=<{OTHER}>"), "status=sent"], common::mail::WAIT)
        .await
        .expect("sent");
    let view = by_subject(&world, OTHER, "Invoice 45").await;
    assert!(view["verified_domain"].is_null(), "{view}");
    let raw = String::from_utf8(raw_of(&view)).expect("utf-8");
    assert_eq!(raw.matches("X-E2A-Auth-Signature:").count(), 1, "one set, the milter's own:\n{raw}");
    assert!(!raw.contains(first["id"].as_str().expect("id")), "the old set is gone");
}

/// `postagent --config <cfg> serve` with the given milter and LMTP listeners.
fn serve_with(dir: &std::path::Path, cfg: &std::path::Path, db: &str, milter: &str, lmtp: &str) -> Server {
    let cfg = cfg.to_str().expect("utf-8");
    Server::start(
        dir,
        &[
            "--config",
            cfg,
            "serve",
            "--database-url",
            db,
            "--api-listen",
            "127.0.0.1:0",
            "--milter-listen",
            milter,
            "--lmtp-listen",
            lmtp,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_postfix_reaches_the_mail_sockets() {
    if !postagent_lab::postfix::require_postfix() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("postagent.db").display());
    common::mail::seed(&db, &[BOT]).await;
    // A TCP milter and LMTP that admit only an address the test does not have.
    std::fs::write(
        dir.path().join("postagent.toml"),
        "milter_peers = \"192.0.2.25\"\nlmtp_peers = \"192.0.2.25\"\n",
    )
    .expect("config");
    let cfg = dir.path().join("postagent.toml");
    let server = serve_with(dir.path(), &cfg, &db, "127.0.0.1:0", "127.0.0.1:0");
    for (role, addr) in [("milter", server.milter_addr.clone()), ("LMTP", server.lmtp_addr.clone())] {
        let addr = addr.expect("TCP listener");
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        // A milter client speaks first (SMFIC_OPTNEG); an LMTP server would greet.
        let _ = s.write_all(&[0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0x01, 0xff, 0, 0x1f, 0xff, 0xff]).await;
        let mut got = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await.expect("closed");
        assert!(
            read.is_err() || got.is_empty(),
            "{role}: a stranger got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // The refusals are logged (the log is read as it is written: wait for the lines).
    for line in ["milter refused connection from 127.0.0.1", "lmtp refused connection from 127.0.0.1"] {
        if !server.log().contains(line) {
            server.wait_for(line);
        }
    }
    drop(server);

    // Unix sockets: mode 0660, group postfix. Another local user cannot open them.
    let milter = dir.path().join("milter.sock");
    let lmtp = dir.path().join("lmtp.sock");
    std::fs::write(
        dir.path().join("postagent.toml"),
        "unix_socket_group = \"postfix\"\nunix_socket_mode = \"0660\"\n",
    )
    .expect("config");
    let (m, l) = (format!("unix:{}", milter.display()), format!("unix:{}", lmtp.display()));
    let _server = serve_with(dir.path(), &cfg, &db, &m, &l);
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    for sock in [&milter, &lmtp] {
        let out = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "python3", "-c"])
            .arg(format!(
                "import socket; s = socket.socket(socket.AF_UNIX); s.connect({:?})",
                sock.display().to_string()
            ))
            .output()
            .expect("runuser");
        assert!(!out.status.success(), "nobody connected to {}", sock.display());
        assert!(text(&out.stderr).contains("PermissionError"), "{}", text(&out.stderr));
    }
}

/// A content filter in the way Postfix's FILTER_README describes (`content_filter` to an SMTP
/// service, re-injection on a second smtpd without a content filter but with the milter):
/// what the test's filter receives it hands back, optionally changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_filter_that_requeues_keeps_the_verdict_unless_it_changes_the_message() {
    let (filter, mut scanned) = postagent_lab::lmtp_sink::smtp_sink(&[]).await;
    let reinject = postagent_lab::free_port().expect("port");
    let options = Options {
        agents: vec![BOT, OTHER],
        main_cf: vec![("content_filter", format!("smtp:[127.0.0.1]:{}", filter.port()))],
        master_cf: vec![format!(
            "127.0.0.1:{reinject} inet n - n - - smtpd\n  -o content_filter=\n  -o receive_override_options=no_unknown_recipient_checks"
        )],
        ..Options::default()
    };
    let Some(mut world) = MailWorld::start(options).await else { return };
    let server = world.serve();
    let back: SocketAddr = format!("127.0.0.1:{reinject}").parse().expect("addr");
    for (subject, rcpt, tamper) in [("Scanned clean", BOT, false), ("Scanned and tagged", OTHER, true)] {
        let m = far_message(&world, subject, &subject.replace(' ', "-"));
        let qid = world.send(&format!("alice@{DKIM_ONLY_DOMAIN}"), &[rcpt], &m).await;
        let d =
            tokio::time::timeout(common::mail::WAIT, scanned.recv()).await.expect("filtered").expect("sink");
        let data = if tamper {
            d.data.replace(&format!("Subject: {subject}"), &format!("Subject: [SPAM?] {subject}"))
        } else {
            d.data.clone()
        };
        let mut smtp = Smtp::connect(back, "filter.test").await;
        let reply = smtp.send(&format!("alice@{DKIM_ONLY_DOMAIN}"), &[rcpt], &data).await;
        assert!(reply.starts_with("250"), "{reply}");
        let requeued = reply.trim_end().rsplit(' ').next().expect("queue id").to_owned();
        assert_ne!(requeued, qid, "a new queue entry");
        world.wait_sent(&requeued, rcpt).await;
        let subject = if tamper { format!("[SPAM?] {subject}") } else { subject.to_owned() };
        let view = by_subject(&world, rcpt, &subject).await;
        if tamper {
            assert!(view["verified_domain"].is_null(), "a changed message is judged afresh: {view}");
        } else {
            assert_eq!(
                view["verified_domain"], DKIM_ONLY_DOMAIN,
                "the verdict survives the re-queue: {view}"
            );
            let raw = raw_of(&view);
            assert_eq!(world.verify(&raw).0, 0, "{}", world.verify(&raw).1);
            assert!(
                server.log().contains(&format!("{requeued}: msg="))
                    && server.log().contains(&format!("carried over from queue id {qid}")),
                "{}",
                server.log()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_part_message_through_postfix_is_stored_once_within_the_caps() {
    let options = Options {
        agents: vec![BOT],
        main_cf: vec![("message_size_limit", "20000000".into())],
        ..Options::default()
    };
    let Some(mut world) = MailWorld::start(options).await else { return };
    let _server = world.serve();
    let mut m = sample_message(BOT, "many parts", "many", "")
        .replace("Content-Type: text/plain; charset=utf-8", "Content-Type: multipart/mixed; boundary=b");
    m.push_str("--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n");
    m.push_str(&"--b\r\n\r\n\r\n".repeat(100_000));
    m.push_str("--b--\r\n");
    let qid = world.send("alice@sender.test", &[BOT], &m).await;
    world.wait_sent(&qid, BOT).await;
    let list = world.get(&format!("/v1/agents/{BOT}/messages?read_status=all")).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "stored once: {list}");
    let view = by_subject(&world, BOT, "many parts").await;
    assert_eq!(view["parsed"]["truncated"], true, "{}", view["parsed"]);
    assert!(view["attachments"].as_array().is_some_and(|a| a.len() <= 100));
    assert_eq!(view["verified_domain"], "sender.test", "the verdict does not depend on the size");
    let events = world.get(&format!("/v1/events?message_id={}", view["id"].as_str().expect("id"))).await;
    let size = serde_json::to_string(&events["items"][0]).expect("json").len();
    assert!(size < 64 * 1024, "the event stays small: {size} bytes");
}
