//! End to end through a real private Postfix: SMTP in, our milter on `smtpd_milters`, LMTP
//! out to a sink that records the delivered bytes. DNS (SPF, DKIM keys, DMARC) comes from a
//! loopback server; DKIM signatures come from an independent signer (dkimpy); agents live in
//! a SQLite store. Every client is 127.0.0.1, as postfix-lab pitfall 9 warns: nothing is
//! exempted for loopback.

mod common;

use common::{AUTHSERV_ID, SHARED_DOMAIN, config, secret};
use postagent_core::auth::headers::{Claims, Delivery, EntityType, VERIFIED, verify};
use postagent_core::service;
use postagent_core::store::{SqlStore, Store};
use postagent_core::time::Timestamp;
use postagent_lab::dkimpy as dkim;
use postagent_lab::lmtp_sink::{Delivered, sink};
use postagent_lab::mail_lab::Wiring;
use postagent_lab::postfix::require_postfix;
use postagent_lab::smtp::Smtp;
use postagent_lab::{DnsServer, PostfixInstance, free_port};
use postagent_milter::MilterListener;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const AGENT: &str = "bot@agents.test";

/// Postfix, the milter, the sink, DNS and the store, wired together.
struct Lab {
    dns: DnsServer,
    postfix: PostfixInstance,
    delivered: mpsc::UnboundedReceiver<Delivered>,
    originating: SocketAddr,
    _stop_milter: oneshot::Sender<()>,
    _data: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Option<Lab> {
        if !require_postfix() {
            return None;
        }
        common::init_tracing();
        let dns = DnsServer::start().await.expect("dns");
        let data = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/milter.db", data.path().display());
        let store: Arc<dyn Store> = Arc::new(SqlStore::open(&url, 4).await.expect("sqlite"));
        let (account, _) = service::bootstrap_account(&*store, "owner@example.org").await.expect("account");
        service::create_agent(&*store, &account.id, AGENT, "Bot", SHARED_DOMAIN).await.expect("agent");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind milter");
        let milter_addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let cfg = config(Some(dns.addr()), Duration::from_secs(2));
        tokio::spawn(postagent_milter::run(
            MilterListener::Tcp(listener, postagent_core::peers::PeerList::loopback()),
            store,
            cfg,
            shutdown,
        ));

        let (lmtp, delivered) = sink().await;
        let originating = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().expect("port")));
        // Wired as an operator would (postfix-conf fragments), with the sink as the next hop.
        let wiring = Wiring {
            hostname: AUTHSERV_ID.into(),
            agent_domains: vec![SHARED_DOMAIN.into()],
            milter: Some(format!("inet:{milter_addr}")),
            lmtp: format!("lmtp:inet:{lmtp}"),
            smtp_port: None,
            originating_port: Some(originating.port()),
        };
        let builder = wiring.builder().expect("wiring");
        let postfix =
            tokio::task::spawn_blocking(move || builder.start()).await.expect("join").expect("start postfix");
        Some(Lab { dns, postfix, delivered, originating, _stop_milter: stop, _data: data })
    }

    /// Sends one message to the agent and returns what the LMTP sink received.
    async fn deliver(&mut self, via: SocketAddr, mail_from: &str, message: &str) -> Delivered {
        let mut smtp = Smtp::connect(via, "client.example.net").await;
        let r = smtp.send(mail_from, &[AGENT], message).await;
        assert!(r.starts_with("250"), "end of DATA: {r}\n{}", self.postfix.read_log());
        smtp.cmd("QUIT").await;
        tokio::time::timeout(Duration::from_secs(30), self.delivered.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing delivered; maillog:\n{}", self.postfix.read_log()))
            .expect("sink alive")
    }

    async fn deliver_inbound(&mut self, mail_from: &str, message: &str) -> Delivered {
        let smtp = self.postfix.smtp_addr();
        self.deliver(smtp, mail_from, message).await
    }
}

/// The delivered message carries exactly one signed set, and it verifies.
fn claims_of(d: &Delivered) -> Claims {
    let verified_headers = d
        .data
        .lines()
        .filter(|l| {
            l.len() > VERIFIED.len() && l[..VERIFIED.len() + 1].eq_ignore_ascii_case(&format!("{VERIFIED}:"))
        })
        .count();
    assert_eq!(verified_headers, 1, "exactly one signed set:\n{}", d.data);
    // Everything the LMTP server checks: content, this queue entry (the message's own trace
    // header) and the recipient.
    let delivery = Delivery { recipient: Some(AGENT), check_queue_id: true };
    verify(&secret(), d.data.as_bytes(), Timestamp::now(), Some(300), delivery)
        .unwrap_or_else(|e| panic!("signed set does not verify: {e}\n{}", d.data))
}

fn message(from: &str, subject: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {AGENT}\r\nSubject: {subject}\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@client.example.net>\r\n{extra_headers}\r\n{body}",
        subject.replace(' ', "-")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signed_by_an_independent_signer_verifies_and_a_changed_body_does_not() {
    let Some(venv) =
        tokio::task::spawn_blocking(|| postagent_lab::clients::venv("dkimpy")).await.expect("join")
    else {
        return;
    };
    let Some(mut lab) = Lab::start().await else { return };
    let keys = tempfile::tempdir().expect("tempdir");
    let Some((key, public)) = dkim::rsa_key(keys.path()) else { return };
    lab.dns.add_txt("sel1._domainkey.signed.example", &format!("v=DKIM1; k=rsa; p={public}"));
    lab.dns.add_txt("_dmarc.signed.example", "v=DMARC1; p=reject");
    // SPF fails on purpose: only the aligned DKIM signature can verify this sender.
    lab.dns.add_txt("signed.example", "v=spf1 -all");

    let body = "Dear agent,\r\n\r\n.a line starting with a dot\r\nplease  file the invoice.\r\n";
    let original = message("Alice <alice@signed.example>", "signed mail", "", body);
    for canon in ["simple/simple", "relaxed/relaxed"] {
        let options = dkim::Options { domain: "signed.example", selector: "sel1", canon, length: false };
        let signed = dkim::sign(&venv, &key, options, &original);
        // A forged set and a forged verdict in our name ride along; both must be replaced.
        let forged = format!(
            "X-E2A-Auth-Verified: true\r\nAuthentication-Results: {AUTHSERV_ID}; dkim=pass\r\n{signed}"
        );
        let d = lab.deliver_inbound("alice@signed.example", &forged).await;
        let claims = claims_of(&d);
        let auth = &claims.authentication;
        assert_eq!(auth.spf.status.as_str(), "fail", "{canon}: {auth:?}");
        assert_eq!(auth.dkim.len(), 1, "{canon}: {auth:?}");
        assert_eq!(auth.dkim[0].status.as_str(), "pass", "{canon}: {auth:?}\n{}", d.data);
        assert_eq!(auth.dkim[0].domain.as_deref(), Some("signed.example"));
        assert_eq!(auth.dkim[0].selector.as_deref(), Some("sel1"));
        assert_eq!(auth.dkim[0].aligned, Some(true));
        assert_eq!(auth.dmarc.status.as_str(), "pass");
        assert_eq!(auth.dmarc.policy.as_deref(), Some("reject"));
        assert_eq!(auth.dmarc.aligned_by, [postagent_core::vocab::Alignment::Dkim]);
        assert!(claims.verified(), "{canon}");
        assert_eq!(claims.sender, "alice@signed.example");
        let ours = format!("Authentication-Results: {AUTHSERV_ID};");
        assert_eq!(d.data.matches(&ours).count(), 1, "one A-R in our name:\n{}", d.data);
        assert!(d.data.contains("dkim=pass header.d=signed.example header.s=sel1"), "{}", d.data);

        // The same signature over a body changed after signing.
        let tampered = signed.replace("please  file", "please  pay");
        let d = lab.deliver_inbound("alice@signed.example", &tampered).await;
        let claims = claims_of(&d);
        let auth = &claims.authentication;
        assert_eq!(auth.dkim[0].status.as_str(), "fail", "{canon}: {auth:?}");
        assert_eq!(auth.dmarc.status.as_str(), "fail", "{canon}: {auth:?}");
        assert!(auth.dmarc.aligned_by.is_empty());
        assert!(!claims.verified(), "{canon}");
    }

    // Two signatures: the author domain's on top of an ESP's. Both pass, in header order,
    // and only the author's aligns.
    lab.dns.add_txt("esp1._domainkey.esp.example", &format!("v=DKIM1; k=rsa; p={public}"));
    let esp =
        dkim::Options { domain: "esp.example", selector: "esp1", canon: "relaxed/relaxed", length: false };
    let author =
        dkim::Options { domain: "signed.example", selector: "sel1", canon: "relaxed/simple", length: false };
    let twice = dkim::sign(&venv, &key, author, &dkim::sign(&venv, &key, esp, &original));
    let d = lab.deliver_inbound("alice@signed.example", &twice).await;
    let claims = claims_of(&d);
    let dkim: Vec<(&str, Option<&str>, Option<bool>)> = claims
        .authentication
        .dkim
        .iter()
        .map(|r| (r.status.as_str(), r.domain.as_deref(), r.aligned))
        .collect();
    assert_eq!(
        dkim,
        [("pass", Some("signed.example"), Some(true)), ("pass", Some("esp.example"), Some(false))]
    );
    assert!(claims.verified());

    // `l=` leaves room for unsigned content after the signed length: refused as `policy`.
    let limited = dkim::Options { length: true, ..author };
    let d = lab.deliver_inbound("alice@signed.example", &dkim::sign(&venv, &key, limited, &original)).await;
    let claims = claims_of(&d);
    let r = &claims.authentication.dkim;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].status.as_str(), r[0].domain.as_deref(), r[0].selector.as_deref()),
        ("policy", Some("signed.example"), Some("sel1"))
    );
    assert_eq!(claims.authentication.dmarc.status.as_str(), "fail");
    assert!(!claims.verified());

    let log = lab.postfix.read_log();
    assert!(!log.contains("milter-reject") && !log.contains("warning: milter"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_alone_verifies_only_when_aligned_with_the_from_domain() {
    let Some(mut lab) = Lab::start().await else { return };
    lab.dns.add_txt("spf.example", "v=spf1 ip4:127.0.0.1 -all");
    lab.dns.add_txt("_dmarc.spf.example", "v=DMARC1; p=reject");
    // A bulk sender whose bounce domain passes SPF for someone else's From.
    lab.dns.add_txt("bulk.example", "v=spf1 ip4:127.0.0.1 -all");
    lab.dns.add_txt("_dmarc.brand.example", "v=DMARC1; p=reject");

    let d = lab
        .deliver_inbound("carol@spf.example", &message("carol@spf.example", "aligned", "", "hi\r\n"))
        .await;
    let claims = claims_of(&d);
    let auth = &claims.authentication;
    assert_eq!((auth.spf.status.as_str(), auth.spf.aligned), ("pass", Some(true)), "{auth:?}");
    assert_eq!(auth.spf.domain.as_deref(), Some("spf.example"));
    assert!(auth.dkim.is_empty());
    assert_eq!(auth.dmarc.aligned_by, [postagent_core::vocab::Alignment::Spf]);
    assert!(claims.verified());

    let d = lab
        .deliver_inbound("bounce@bulk.example", &message("dan@brand.example", "unaligned", "", "hi\r\n"))
        .await;
    let claims = claims_of(&d);
    let auth = &claims.authentication;
    assert_eq!((auth.spf.status.as_str(), auth.spf.aligned), ("pass", Some(false)), "{auth:?}");
    assert_eq!(auth.spf.domain.as_deref(), Some("bulk.example"));
    assert_eq!(auth.dmarc.status.as_str(), "fail");
    assert_eq!(auth.dmarc.domain.as_deref(), Some("brand.example"));
    assert!(!claims.verified(), "an unaligned SPF pass is not verification");
    assert_eq!(claims.sender, "dan@brand.example");

    // Postfix's queue id starts our line too, beside the message id: one id to grep.
    let qid = lab
        .postfix
        .wait_log_contains("from=<bounce@bulk.example>", Duration::from_secs(10))
        .await
        .expect("qmgr line")
        .split(": ")
        .nth(1)
        .map(str::to_owned)
        .expect("queue id");
    let ours = common::logs()
        .lines()
        .find(|l| l.contains(&format!(" {qid}: msg=")))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no milter line for {qid}:\n{}", common::logs()));
    assert!(
        ours.contains(&format!(
            "{qid}: msg={} client=127.0.0.1 helo=client.example.net mail_from=bounce@bulk.example \
             from_domain=brand.example spf=pass dkim=none dmarc=fail verified=false",
            claims.message_id
        )),
        "{ours}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agents_are_refused_at_rcpt_and_originating_mail_keeps_its_thread() {
    let Some(mut lab) = Lab::start().await else { return };
    let mut smtp = Smtp::connect(lab.postfix.smtp_addr(), "client.example.net").await;
    assert!(smtp.cmd("MAIL FROM:<x@example.org>").await.starts_with("250"));
    let r = smtp.cmd("RCPT TO:<nobody@agents.test>").await;
    assert!(r.starts_with("550 5.1.1 <nobody@agents.test>: no such agent here"), "{r}");
    let r = smtp.cmd("RCPT TO:<bot@agents.test>").await;
    assert!(r.starts_with("250"), "{r}");
    smtp.cmd("QUIT").await;

    let headers = "X-E2A-Conversation-Id: conv_00112233445566778899aabbccddeeff\r\n";
    let from_inbound = message("eve@example.org", "forged thread", headers, "hi\r\n");
    let d = lab.deliver_inbound("eve@example.org", &from_inbound).await;
    assert!(!d.data.contains("X-E2A-Conversation-Id"), "internet mail loses it:\n{}", d.data);
    assert_eq!(claims_of(&d).entity_type, EntityType::Human);

    // The originating listener without a token: a From naming the agent is not enough.
    let outbound = message(AGENT, "agent thread", headers, "hi\r\n");
    let via = lab.originating;
    let d = lab.deliver(via, AGENT, &outbound).await;
    assert!(!d.data.contains("X-E2A-Conversation-Id"), "unproven mail loses it:\n{}", d.data);
    assert_eq!(claims_of(&d).entity_type, EntityType::Human);

    // With the submission worker's token it is our agent's mail and keeps its thread; the
    // token itself never leaves the milter.
    let id_header = "X-E2A-Message-Id: msg_00112233445566778899aabbccddeeff\r\n";
    let outbound = message(AGENT, "agent thread", &format!("{headers}{id_header}"), "hi\r\n");
    let stamped = postagent_core::auth::submission::stamp(
        &secret(),
        outbound.as_bytes(),
        "msg_00112233445566778899aabbccddeeff",
        "usr_owner",
        AGENT,
        Timestamp::now(),
    );
    let d = lab.deliver(via, AGENT, &String::from_utf8(stamped).expect("utf-8")).await;
    assert!(d.data.contains(headers), "proven agent mail keeps it:\n{}", d.data);
    assert!(!d.data.contains("X-E2A-Submission"), "the token is removed:\n{}", d.data);
    let claims = claims_of(&d);
    assert_eq!(claims.entity_type, EntityType::Agent);
    assert_eq!(claims.delegation, format!("agent={AGENT};human=usr_owner"));
}
