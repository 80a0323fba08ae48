//! The milter driven over the milter protocol by `indymilter-test`, the way Postfix drives
//! it, with a loopback DNS server holding the sender's SPF and DMARC records.

mod common;

use common::{AUTHSERV_ID, FakeDirectory, Milter, config, secret};
use indymilter_test::{EomAction, EomActions, MacroStage, Status, TestConnection};
use postagent_core::auth::headers::{ALL, Claims, Delivery, EntityType, VerifyError, verify};
use postagent_core::time::Timestamp;
use postagent_lab::DnsServer;
use std::time::{Duration, Instant};

const CLIENT: [u8; 4] = [192, 0, 2, 10];

/// example.org allows the test client by SPF and publishes `p=reject`.
async fn dns() -> DnsServer {
    let dns = DnsServer::start().await.expect("dns");
    dns.add_txt("example.org", "v=spf1 ip4:192.0.2.10 -all");
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=reject");
    dns.add_txt("other.example", "v=spf1 ip4:192.0.2.10 -all");
    dns
}

async fn milter(dns: &DnsServer) -> Milter {
    let dir = FakeDirectory::new(&["own.test"], &["bot@agents.test", "bot@own.test"]);
    Milter::spawn(dir, config(Some(dns.addr()), Duration::from_secs(2))).await
}

/// Opens a connection as Postfix would: `daemon` is the listener's `{daemon_name}`.
async fn open(m: &Milter, daemon: &str) -> TestConnection {
    common::init_tracing();
    let mut conn = TestConnection::open(m.addr).await.expect("open");
    conn.macros(MacroStage::Connect, [("{daemon_name}", daemon), ("j", AUTHSERV_ID)]).await.expect("macros");
    assert_eq!(conn.connect("client.example.org", CLIENT).await.expect("connect"), Status::Continue);
    assert_eq!(conn.helo("client.example.org").await.expect("helo"), Status::Continue);
    conn
}

const QUEUE_ID: &str = "4XQUEUE1D";

/// One message: headers as (name, value-without-leading-space), then `body`; returns the EOM
/// actions and status.
async fn send(
    conn: &mut TestConnection,
    mail_from: &str,
    rcpt: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (EomActions, Status) {
    send_as(conn, mail_from, rcpt, headers, body, QUEUE_ID).await
}

/// A stage that never refuses answers "continue", or nothing at all where Postfix agreed to
/// expect no reply (over a unix socket).
fn acked(status: Status) -> bool {
    matches!(status, Status::Continue | Status::Noreply)
}

async fn send_as(
    conn: &mut TestConnection,
    mail_from: &str,
    rcpt: &str,
    headers: &[(&str, &str)],
    body: &str,
    queue_id: &str,
) -> (EomActions, Status) {
    assert!(acked(conn.mail([mail_from]).await.expect("mail")));
    assert_eq!(conn.rcpt([rcpt]).await.expect("rcpt"), Status::Continue);
    for (name, value) in headers {
        assert!(acked(conn.header(*name, *value).await.expect("header")));
    }
    assert!(acked(conn.body(body.to_owned()).await.expect("body")));
    conn.macros(MacroStage::Eom, [("i", queue_id)]).await.expect("eom macros");
    conn.eom().await.expect("eom")
}

/// The set of a replayed message, checked for `rcpt` (these messages carry no trace header
/// of Postfix's, so the queue id is compared with the EOM macro instead).
fn check(raw: &str, rcpt: &str) -> Result<Claims, VerifyError> {
    let claims = verify(
        &secret(),
        raw.as_bytes(),
        Timestamp::now(),
        Some(60),
        Delivery { recipient: Some(rcpt), check_queue_id: false },
    )?;
    assert_eq!(claims.queue_id, QUEUE_ID, "bound to the queue id Postfix gave at end of message");
    Ok(claims)
}

/// Replays the milter's header actions on `headers` the way Postfix applies them and returns
/// the resulting message (values as the milter saw them: with their leading space).
fn apply(headers: &[(&str, &str)], body: &str, actions: &EomActions) -> (Vec<(String, String)>, String) {
    let mut h: Vec<(String, String)> =
        headers.iter().map(|(n, v)| ((*n).to_owned(), format!(" {v}"))).collect();
    for a in &actions.actions {
        match a {
            EomAction::DeleteHeader { name, index } => {
                let name = name.to_str().expect("utf-8 name");
                let pos = h
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| n.eq_ignore_ascii_case(name))
                    .nth(usize::try_from(*index).expect("positive index") - 1)
                    .map(|(i, _)| i)
                    .unwrap_or_else(|| panic!("no {name} #{index} to delete"));
                h.remove(pos);
            }
            EomAction::InsertHeader { index, name, value } => {
                let at = usize::try_from(*index).expect("index").min(h.len());
                h.insert(
                    at,
                    (name.to_str().expect("name").to_owned(), value.to_str().expect("value").to_owned()),
                );
            }
            other => panic!("unexpected action {other:?}"),
        }
    }
    let mut raw = String::new();
    for (n, v) in &h {
        raw.push_str(&format!("{n}:{}\r\n", v.replace('\n', "\r\n").replace("\r\r\n", "\r\n")));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    (h, raw)
}

fn deletions(actions: &EomActions) -> Vec<(String, i32)> {
    actions
        .actions
        .iter()
        .filter_map(|a| match a {
            EomAction::DeleteHeader { name, index } => Some((name.to_string_lossy().into_owned(), *index)),
            _ => None,
        })
        .collect()
}

const BODY: &str = "Hello agent,\r\nplease  file the invoice.\r\n";

#[tokio::test]
async fn forged_headers_go_and_one_verifying_set_is_inserted_on_top() {
    let dns = dns().await;
    let m = milter(&dns).await;
    let mut conn = open(&m, "mx.postagent.test").await;
    let headers = [
        ("Received", "from client.example.org by mx.postagent.test"),
        ("X-E2A-Auth-Verified", "true"),
        ("From", "Alice <alice@example.org>"),
        ("x-e2a-auth-verified", "true"),
        ("X-E2A-AUTH-DOMAIN-CHECK", "spf=pass;\n\tdkim=pass (d=example.org);\n\tdmarc=pass"),
        ("Authentication-Results", "mx.postagent.test; dmarc=pass header.from=example.org"),
        ("Authentication-Results", "relay.example.net;\n\tspf=pass smtp.mailfrom=example.org"),
        ("X-E2A-Conversation-Id", "conv_forged"),
        ("Subject", "a folded\n\tsubject"),
        ("AUTHENTICATION-RESULTS", "(forged)\n MX.POSTAGENT.TEST 1; spf=pass"),
        ("X-E2A-Auth-Signature", "0000"),
        ("X-E2A-Auth-Verified", "true"),
    ];
    let (actions, status) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, BODY).await;
    assert_eq!(status, Status::Continue);

    // Highest position first, per-name indices as received, all before any insertion.
    assert_eq!(
        deletions(&actions),
        [
            ("X-E2A-Auth-Verified", 3),
            ("X-E2A-Auth-Signature", 1),
            ("AUTHENTICATION-RESULTS", 3),
            ("X-E2A-Conversation-Id", 1),
            ("Authentication-Results", 1),
            ("X-E2A-AUTH-DOMAIN-CHECK", 1),
            ("x-e2a-auth-verified", 2),
            ("X-E2A-Auth-Verified", 1),
        ]
        .map(|(n, i)| (n.to_owned(), i))
    );
    let first_insert = actions.actions.iter().position(|a| matches!(a, EomAction::InsertHeader { .. }));
    assert_eq!(first_insert, Some(8), "deletions all come first: {actions:?}");
    assert!(actions.actions.iter().all(|a| match a {
        EomAction::InsertHeader { index, .. } => *index == 0,
        _ => true,
    }));

    let (fields, raw) = apply(&headers, BODY, &actions);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    let mut top = ALL.to_vec();
    top.push("Authentication-Results");
    assert_eq!(&names[..14], &top[..], "{names:?}");
    assert_eq!(
        &names[14..],
        ["Received", "From", "Authentication-Results", "Subject"],
        "our forged A-R removed, the relay's kept"
    );
    let ar = &fields[13].1;
    assert_eq!(
        ar.trim(),
        "mx.postagent.test; spf=pass smtp.mailfrom=example.org; dkim=none; dmarc=pass (p=reject) header.from=example.org"
    );
    assert!(fields[16].1.contains("relay.example.net"));

    let claims = check(&raw, "Bot@Agents.Test").expect("the inserted set verifies");
    assert_eq!(
        check(&raw, "other@agents.test"),
        Err(VerifyError::Recipient("other@agents.test".into())),
        "bound to the recipients the milter accepted"
    );
    assert!(claims.verified(), "aligned SPF pass under p=reject: {claims:?}");
    assert_eq!(claims.sender, "alice@example.org");
    assert_eq!(claims.entity_type, EntityType::Human);
    assert_eq!(claims.delegation, "");
    assert_eq!(claims.authentication.spf.aligned, Some(true));
    assert_eq!(claims.authentication.dmarc.aligned_by, [postagent_core::vocab::Alignment::Spf]);
    assert!(claims.message_id.starts_with("msg_"));
    conn.close().await.expect("close");
    m.stop().await;
}

/// An outbound message as the submission worker hands it to Postfix: composed headers with a
/// fresh submission token on top.
fn submitted(token_secret: &postagent_core::secret::Secret) -> (Vec<(String, String)>, String) {
    let composed = "From: Bot <bot@agents.test>\r\nTo: someone@example.org\r\nSubject: Plan\r\nX-E2A-Conversation-Id: conv_0123\r\nX-E2A-Message-Id: msg_0123456789abcdef0123456789abcdef\r\nX-E2A-Auth-Entity-Type: agent\r\n\r\nhi\r\n";
    let raw = postagent_core::auth::submission::stamp(
        token_secret,
        composed.as_bytes(),
        "msg_0123456789abcdef0123456789abcdef",
        "usr_owner",
        "bot@agents.test",
        Timestamp::now(),
    );
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("blank line");
    let headers = head
        .split("\r\n")
        .map(|l| l.split_once(": ").map(|(n, v)| (n.to_owned(), v.to_owned())).expect("field"))
        .collect();
    (headers, body.to_owned())
}

#[tokio::test]
async fn originating_mail_with_a_valid_token_is_agent_mail_and_keeps_its_conversation() {
    let dns = dns().await;
    let m = milter(&dns).await;
    let mut conn = open(&m, "ORIGINATING").await;
    let (headers, body) = submitted(&secret());
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let (actions, status) = send(&mut conn, "<bot@agents.test>", "<bot@own.test>", &headers, &body).await;
    assert_eq!(status, Status::Continue);
    assert_eq!(
        deletions(&actions),
        [("X-E2A-Auth-Entity-Type".to_owned(), 1), ("X-E2A-Submission".to_owned(), 1)],
        "the token and forged fields go; the conversation id stays"
    );
    let (fields, raw) = apply(&headers, &body, &actions);
    assert!(fields.iter().any(|(n, v)| n == "X-E2A-Conversation-Id" && v.trim() == "conv_0123"));
    let claims = check(&raw, "bot@own.test").expect("verifies");
    assert_eq!(claims.entity_type, EntityType::Agent);
    assert_eq!(claims.sender, "bot@agents.test");
    assert_eq!(claims.delegation, "agent=bot@agents.test;human=usr_owner");
    assert_eq!(claims.delegated_account(), Some("usr_owner"));
    assert!(!claims.verified(), "agents.test publishes no SPF or DMARC here");
    m.stop().await;
}

#[tokio::test]
async fn a_from_naming_an_agent_is_never_enough() {
    let dns = dns().await;
    let m = milter(&dns).await;
    // No token, a token of another deployment, and a valid token on another listener.
    let (plain, body) = submitted(&secret());
    let no_token: Vec<(&str, &str)> = plain
        .iter()
        .filter(|(n, _)| n != "X-E2A-Submission")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (foreign, _) = submitted(&postagent_core::secret::Secret::new(vec![1; 32]));
    let foreign: Vec<(&str, &str)> = foreign.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let valid: Vec<(&str, &str)> = plain.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    for (what, daemon, headers) in [
        ("no token", "ORIGINATING", &no_token),
        ("another secret's token", "ORIGINATING", &foreign),
        ("a token on the internet listener", "mx", &valid),
    ] {
        let mut conn = open(&m, daemon).await;
        let (actions, status) = send(&mut conn, "<bot@agents.test>", "<bot@own.test>", headers, &body).await;
        assert_eq!(status, Status::Continue, "{what}");
        let (fields, raw) = apply(headers, &body, &actions);
        assert!(
            !fields
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("X-E2A-Conversation-Id") || n == "X-E2A-Submission"),
            "{what}: the conversation id and the token are removed: {fields:?}"
        );
        let claims = check(&raw, "bot@own.test").expect("verifies");
        assert_eq!((claims.entity_type, claims.delegation.as_str()), (EntityType::Human, ""), "{what}");
        conn.close().await.expect("close");
    }
    assert!(common::logs().contains("without a valid submission token"));
    m.stop().await;
}

#[tokio::test]
async fn a_signed_message_that_comes_back_is_carried_over_only_unchanged() {
    let dns = dns().await;
    let m = milter(&dns).await;
    let mut conn = open(&m, "mx").await;
    let headers = [("From", "alice@example.org"), ("Subject", "Invoice")];
    let (actions, _) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, BODY).await;
    let (fields, raw) = apply(&headers, BODY, &actions);
    let first = check(&raw, "bot@agents.test").expect("verifies");
    assert!(first.verified());
    // A content filter hands it back from 127.0.0.1 (SPF would fail there) under a new queue id.
    let back: Vec<(String, String)> = fields.iter().map(|(n, v)| (n.clone(), v.trim().to_owned())).collect();
    let back: Vec<(&str, &str)> = back.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut filter = TestConnection::open(m.addr).await.expect("open");
    filter.macros(MacroStage::Connect, [("{daemon_name}", "mx"), ("j", AUTHSERV_ID)]).await.expect("macros");
    filter.connect("localhost", [127, 0, 0, 1]).await.expect("connect");
    filter.helo("localhost").await.expect("helo");
    let (again, _) =
        send_as(&mut filter, "<alice@example.org>", "<bot@agents.test>", &back, BODY, "4XREINJECT").await;
    let (_, raw2) = apply(&back, BODY, &again);
    let carried = verify(
        &secret(),
        raw2.as_bytes(),
        Timestamp::now(),
        None,
        Delivery { recipient: Some("bot@agents.test"), check_queue_id: false },
    )
    .expect("verifies");
    assert_eq!(carried.queue_id, "4XREINJECT", "re-bound to the new queue entry");
    assert_eq!((carried.message_id.as_str(), carried.verified()), (first.message_id.as_str(), true));
    assert!(common::logs().contains("carried over from queue id 4XQUEUE1D"));
    // Changed on the way, or sent to a recipient the set does not name: evaluated afresh.
    let changed: Vec<(&str, &str)> =
        back.iter().map(|&(n, v)| if n == "Subject" { (n, "Invoice (paid)") } else { (n, v) }).collect();
    for (what, hs, rcpt) in
        [("a changed subject", &changed, "<bot@agents.test>"), ("another recipient", &back, "<bot@own.test>")]
    {
        let (actions, _) = send_as(&mut filter, "<alice@example.org>", rcpt, hs, BODY, "4XREINJECT2").await;
        let (_, raw3) = apply(hs, BODY, &actions);
        let fresh = verify(&secret(), raw3.as_bytes(), Timestamp::now(), None, Delivery::default())
            .expect("verifies");
        assert_ne!(fresh.message_id, first.message_id, "{what}");
        assert!(!fresh.verified(), "{what}: 127.0.0.1 is not in example.org's SPF");
    }
    m.stop().await;
}

#[tokio::test]
async fn too_many_forged_fields_are_refused() {
    let dns = dns().await;
    let m = milter(&dns).await;
    let mut conn = open(&m, "mx").await;
    let names: Vec<String> = (0..1100).map(|i| format!("X-E2A-Auth-F{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    headers.push(("From", "alice@example.org"));
    let (_, status) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, BODY).await;
    assert!(matches!(status, Status::Reject { .. }), "{status:?}");
    m.stop().await;
}

#[tokio::test]
async fn message_state_does_not_leak_between_messages_on_one_connection() {
    let dns = dns().await;
    let m = milter(&dns).await;
    let mut conn = open(&m, "mx").await;
    let forged = [("From", "alice@example.org"), ("X-E2A-Auth-Verified", "true")];
    let (a1, _) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &forged, "one\r\n").await;
    assert_eq!(deletions(&a1).len(), 1);
    // An aborted message (RSET) leaves nothing behind either.
    assert_eq!(conn.mail(["<alice@example.org>"]).await.expect("mail"), Status::Continue);
    assert_eq!(conn.rcpt(["<bot@agents.test>"]).await.expect("rcpt"), Status::Continue);
    conn.header("X-E2A-Auth-Signature", "00").await.expect("header");
    conn.abort().await.expect("abort");
    let clean = [("From", "carol@other.example")];
    let (a2, _) = send(&mut conn, "<carol@other.example>", "<bot@own.test>", &clean, "two\r\n").await;
    assert!(deletions(&a2).is_empty(), "{a2:?}");
    let (_, raw) = apply(&clean, "two\r\n", &a2);
    let claims = check(&raw, "bot@own.test").expect("verifies");
    assert_eq!(check(&raw, "bot@agents.test"), Err(VerifyError::Recipient("bot@agents.test".into())));
    assert_eq!(claims.sender, "carol@other.example");
    assert_eq!(claims.authentication.spf.status.as_str(), "pass");
    assert_eq!(claims.authentication.spf.aligned, None, "no DMARC record for other.example");
    assert_eq!(claims.authentication.dmarc.status.as_str(), "none");
    assert!(!claims.verified());
    m.stop().await;
}

#[tokio::test]
async fn recipients_unknown_agent_550_store_failure_451_foreign_passes() {
    let dns = dns().await;
    let dir = FakeDirectory::new(&["own.test"], &["bot@agents.test"]);
    let m = Milter::spawn(dir.clone(), config(Some(dns.addr()), Duration::from_secs(2))).await;
    let mut conn = open(&m, "mx").await;
    assert_eq!(conn.mail(["<alice@example.org>"]).await.expect("mail"), Status::Continue);
    assert_eq!(conn.rcpt(["<Bot@Agents.Test>"]).await.expect("rcpt"), Status::Continue);
    assert_eq!(conn.rcpt(["<someone@elsewhere.example>"]).await.expect("rcpt"), Status::Continue);
    let reject = |addr: &str| Status::Reject {
        message: Some(std::ffi::CString::new(format!("550 5.1.1 <{addr}>: no such agent here")).expect("c")),
    };
    assert_eq!(conn.rcpt(["<nobody@agents.test>"]).await.expect("rcpt"), reject("nobody@agents.test"));
    assert_eq!(conn.rcpt(["<nobody@own.test>"]).await.expect("rcpt"), reject("nobody@own.test"));
    dir.set_failing(true);
    let tempfail = Status::Tempfail {
        message: Some(c"451 4.3.0 agent directory unavailable, try again later".to_owned()),
    };
    assert_eq!(conn.rcpt(["<bot@agents.test>"]).await.expect("rcpt"), tempfail);
    assert_eq!(conn.rcpt(["<x@own.test>"]).await.expect("rcpt"), tempfail);
    // A foreign domain still needs the directory (is it a verified domain of ours?).
    assert!(matches!(conn.rcpt(["<x@elsewhere.example>"]).await.expect("rcpt"), Status::Tempfail { .. }));
    m.stop().await;
}

#[tokio::test]
async fn dns_timeout_is_a_temperror_within_the_budget() {
    let dns = dns().await;
    dns.add_txt("slow.example", "v=spf1 ip4:192.0.2.10 -all");
    dns.add_txt("_dmarc.slow.example", "v=DMARC1; p=reject");
    dns.set_drop("slow.example", true);
    dns.set_drop("_dmarc.slow.example", true);
    let dns_timeout = Duration::from_millis(300);
    let dir = FakeDirectory::new(&[], &["bot@agents.test"]);
    let m = Milter::spawn(dir, config(Some(dns.addr()), dns_timeout)).await;
    let mut conn = open(&m, "mx").await;
    let headers = [("From", "dave@slow.example")];
    let t0 = Instant::now();
    let (actions, status) =
        send(&mut conn, "<dave@slow.example>", "<bot@agents.test>", &headers, "x\r\n").await;
    let took = t0.elapsed();
    assert_eq!(status, Status::Continue);
    // The documented bound: four DNS timeouts, plus slack for a loaded machine.
    assert!(took < dns_timeout * 4 + Duration::from_secs(1), "took {took:?}");
    let (_, raw) = apply(&headers, "x\r\n", &actions);
    let claims = check(&raw, "bot@agents.test").expect("verifies");
    assert_eq!(claims.authentication.spf.status.as_str(), "temperror");
    assert_eq!(claims.authentication.dmarc.status.as_str(), "temperror");
    assert!(!claims.verified());
    m.stop().await;
}

#[tokio::test]
async fn oversized_message_reports_dkim_permerror_but_keeps_spf() {
    let dns = dns().await;
    let dir = FakeDirectory::new(&[], &["bot@agents.test"]);
    let mut cfg = config(Some(dns.addr()), Duration::from_secs(2));
    cfg.max_message_bytes = 2048;
    let m = Milter::spawn(dir, cfg).await;
    let mut conn = open(&m, "mx").await;
    let headers = [
        (
            "DKIM-Signature",
            "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel1;\n\th=from; bh=AAAA; b=AAAA",
        ),
        ("From", "alice@example.org"),
    ];
    let body = "0123456789 ".repeat(500) + "\r\n";
    let (actions, _) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, &body).await;
    let (_, raw) = apply(&headers, &body, &actions);
    let claims = check(&raw, "bot@agents.test").expect("body hash covers the whole body");
    let dkim = &claims.authentication.dkim;
    assert_eq!(dkim.len(), 1);
    assert_eq!(
        (dkim[0].status.as_str(), dkim[0].domain.as_deref(), dkim[0].selector.as_deref()),
        ("permerror", Some("example.org"), Some("sel1"))
    );
    assert!(claims.verified(), "SPF alignment still verifies a large message");
    m.stop().await;
}

#[tokio::test]
async fn a_second_from_past_the_header_cap_still_unsigns_the_sender() {
    let dns = dns().await;
    let dir = FakeDirectory::new(&[], &["bot@agents.test"]);
    let mut cfg = config(Some(dns.addr()), Duration::from_secs(2));
    cfg.max_header_fields = 5;
    let m = Milter::spawn(dir, cfg).await;
    let mut conn = open(&m, "mx").await;
    let mut headers = vec![("From", "alice@example.org")];
    headers.extend(std::iter::repeat_n(("X-Filler", "x"), 10));
    let (actions, _) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, BODY).await;
    let (_, raw) = apply(&headers, BODY, &actions);
    assert_eq!(check(&raw, "bot@agents.test").expect("signed").sender, "alice@example.org");
    // The same with a second From past the cap: the author is ambiguous, the Sender empty.
    headers.push(("From", "ceo@bank.example"));
    let (actions, _) = send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, BODY).await;
    let (_, raw) = apply(&headers, BODY, &actions);
    assert_eq!(check(&raw, "bot@agents.test").expect("signed").sender, "");
    m.stop().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_milter_timeout() {
    let dns = dns().await;
    let dir = FakeDirectory::new(&[], &["bot@agents.test"]);
    let mut cfg = config(Some(dns.addr()), Duration::from_secs(2));
    cfg.timeout = Duration::from_millis(300);
    let m = Milter::spawn(dir, cfg).await;
    // A peer that connects and never says a word holds its slot only until the timeout.
    let started = Instant::now();
    let mut idle = tokio::net::TcpStream::connect(m.addr).await.expect("connect");
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt as _;
    let closed = tokio::time::timeout(Duration::from_secs(30), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the milter closed the idle connection");
    assert!(started.elapsed() >= Duration::from_millis(300));
    m.stop().await;
}

#[tokio::test]
async fn negotiates_only_what_it_uses() {
    let dns = dns().await;
    let m = milter(&dns).await;
    let conn = TestConnection::open(m.addr).await.expect("open");
    use indymilter_test::{Actions, ProtoOpts};
    assert_eq!(conn.negotiated_actions(), Actions::ADD_HEADER | Actions::CHANGE_HEADER);
    let opts = conn.negotiated_opts();
    assert!(opts.contains(ProtoOpts::NO_EOH | ProtoOpts::NO_UNKNOWN), "{opts:?}");
    // DATA is negotiated on purpose (see callbacks.rs: Postfix's Nagle stall otherwise).
    assert!(!opts.contains(ProtoOpts::NO_DATA), "{opts:?}");
    assert!(opts.contains(ProtoOpts::LEADING_SPACE));
    let macros = conn.requested_macros();
    assert_eq!(macros.get(&MacroStage::Connect).map(|m| m.to_str().expect("utf-8")), Some("j {daemon_name}"));
    assert_eq!(macros.get(&MacroStage::Eom).map(|m| m.to_str().expect("utf-8")), Some("i"));
    conn.close().await.expect("close");
    m.stop().await;
}

#[tokio::test]
async fn serves_a_unix_socket_too() {
    let dns = dns().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("milter.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind unix");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let directory = FakeDirectory::new(&[], &["bot@agents.test"]);
    let task = tokio::spawn(postagent_milter::run_with_directory(
        postagent_milter::MilterListener::Unix(listener),
        directory,
        config(Some(dns.addr()), Duration::from_secs(2)),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut conn = TestConnection::configure().open_unix(&path).await.expect("open unix");
    // On a unix socket the stages that never refuse are negotiated without replies (over
    // TCP, the other tests, every stage answers).
    assert_eq!(conn.connect("client.example.org", CLIENT).await.expect("connect"), Status::Noreply);
    assert_eq!(conn.helo("client.example.org").await.expect("helo"), Status::Noreply);
    let headers = [("From", "alice@example.org")];
    let (actions, status) =
        send(&mut conn, "<alice@example.org>", "<bot@agents.test>", &headers, "x\r\n").await;
    assert_eq!(status, Status::Continue);
    let (_, raw) = apply(&headers, "x\r\n", &actions);
    assert!(check(&raw, "bot@agents.test").expect("verifies").verified());
    conn.close().await.expect("close");
    stop.send(()).expect("stop");
    task.await.expect("join").expect("clean exit");
}
