//! Inbound delivery into the store, on SQLite and PostgreSQL: signature checks, parsing,
//! threading, idempotent redelivery and the outbox event.

use postagent_core::auth::Authentication;
use postagent_core::auth::headers::{self, Claims, EntityType};
use postagent_core::mail::inbound::{self, Delivered, IngestError};
use postagent_core::secret::Secret;
use postagent_core::service;
use postagent_core::store::{MessageFilter, PageQuery, SqlStore, Store};
use postagent_core::time::Timestamp;
use postagent_core::vocab::ReadStatus;
use postagent_lab::pg::PgCluster;
use std::sync::Arc;

fn secret() -> Secret {
    Secret::new(vec![7; 32])
}

fn passing() -> Authentication {
    Authentication::aligned_pass("example.org", "s1")
}

/// A message as the milter would have signed it for `rcpts` (queue id 4AbC12xYz, the id of
/// its trace header).
fn signed_for(head: &str, body: &str, entity: EntityType, delegation: &str, rcpts: &[&str]) -> Vec<u8> {
    let message_id = postagent_core::ids::MessageId::mint().to_string();
    let sender = head
        .lines()
        .find_map(|l| l.strip_prefix("From: "))
        .map(|f| f.rsplit_once('<').map_or(f, |(_, a)| a.trim_end_matches('>')).to_owned())
        .unwrap_or_default();
    let claims = Claims {
        authentication: passing(),
        sender,
        entity_type: entity,
        delegation: delegation.into(),
        timestamp: Timestamp::now(),
        recipients: rcpts.iter().map(|r| headers::recipient_tag(&secret(), &message_id, r)).collect(),
        message_id,
        queue_id: String::new(),
        header_hash: String::new(),
        body_hash: String::new(),
    };
    let received = "Received: from client (unknown [127.0.0.1])\r\n\tby mx.test (Postfix) with ESMTP id 4AbC12xYz\r\n\tfor <bot@agents.test>; Sat, 21 Nov 2026 12:00:00 +0000\r\n";
    headers::prepend(&secret(), &claims, format!("{received}{head}\r\n{body}").as_bytes())
}

fn signed(head: &str, body: &str, entity: EntityType) -> Vec<u8> {
    signed_for(head, body, entity, "", &["bot@agents.test", "other@agents.test"])
}

fn rcpts(r: &[&str]) -> Vec<String> {
    r.iter().map(|r| (*r).to_owned()).collect()
}

const HEAD: &str = "From: Alice <alice@example.org>\r\nTo: bot@agents.test, other@agents.test\r\nCc: carol@example.net\r\nReply-To: desk@example.org\r\nSubject: Invoice 42\r\nMessage-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n";
const BODY: &str = "--b\r\nContent-Type: text/plain\r\n\r\nPlease pay.\r\n--b\r\nContent-Type: application/pdf; name=inv.pdf\r\nContent-Disposition: attachment; filename=inv.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";

async fn setup(store: &dyn Store) {
    let (account, _) = service::bootstrap_account(store, "owner@example.org").await.expect("account");
    for slug in ["bot", "other"] {
        service::create_agent(store, &account.id, &format!("{slug}@agents.test"), "", "agents.test")
            .await
            .expect("agent");
    }
}

async fn scenario(store: Arc<SqlStore>) {
    let s: &dyn Store = store.as_ref();
    setup(s).await;
    let account = s.find_account_by_email("owner@example.org").await.expect("q").expect("account").id;
    let now = Timestamp::now();

    let raw = signed(HEAD, BODY, EntityType::Human);
    let p = inbound::prepare(
        &secret(),
        raw.clone(),
        "bounce@example.org",
        &rcpts(&["bot@agents.test", "Other@Agents.Test"]),
        now,
    );
    assert!(p.claims.is_some(), "{:?}", p.unsigned_reason);
    assert_eq!(p.postfix_queue_id.as_deref(), Some("4AbC12xYz"));
    assert_eq!(p.parsed.header_from.as_deref(), Some("alice@example.org"));
    assert_eq!(p.parsed.to, vec!["bot@agents.test", "other@agents.test"]);
    assert_eq!(p.parsed.attachments.len(), 1);
    assert_eq!(p.parsed.attachments[0].filename.as_deref(), Some("inv.pdf"));
    assert_eq!(p.parsed.attachments[0].size_bytes, 9, "decoded size");

    let Delivered::Stored { id: bot_id } =
        inbound::store_for(s, &p, "bot@agents.test", now).await.expect("store")
    else {
        panic!("first delivery stores")
    };
    let Delivered::Stored { id: other_id } =
        inbound::store_for(s, &p, "Other@Agents.Test", now).await.expect("store")
    else {
        panic!("second agent stores its own copy")
    };
    assert_ne!(bot_id, other_id);
    // Postfix redelivers after a lost 250: stored once.
    assert_eq!(
        inbound::store_for(s, &p, "bot@agents.test", now).await.expect("store"),
        Delivered::Duplicate { id: bot_id.clone() }
    );
    assert!(matches!(
        inbound::store_for(s, &p, "nobody@agents.test", now).await,
        Err(IngestError::UnknownAgent(_))
    ));

    let m = s.get_message(&account, "bot@agents.test", &bot_id).await.expect("get").expect("stored");
    assert_eq!((m.direction.as_str(), m.read_status.map(ReadStatus::as_str)), ("inbound", Some("unread")));
    assert_eq!(m.verified_domain.as_deref(), Some("example.org"));
    assert_eq!(m.envelope_from.as_deref(), Some("bounce@example.org"));
    assert_eq!(m.subject, "Invoice 42");
    assert_eq!(m.reply_to, vec!["desk@example.org"]);
    let auth: serde_json::Value =
        serde_json::from_str(m.authentication.as_deref().expect("authentication")).expect("json");
    assert_eq!(auth["dmarc"]["aligned_by"], serde_json::json!(["spf", "dkim"]));
    assert_eq!(s.get_raw(&bot_id).await.expect("raw").as_deref(), Some(raw.as_slice()));
    assert_eq!(s.list_attachments(&bot_id).await.expect("attachments").len(), 1);

    // Mail that did not pass through the milter, or whose headers were forged, is stored
    // as unverified; its conversation header is ignored.
    let forged = String::from_utf8(signed(HEAD, BODY, EntityType::Agent))
        .expect("utf8")
        .replace("Please pay.", "Pay me.");
    let forged = format!("X-E2A-Conversation-Id: conv_hijack\r\n{forged}").into_bytes();
    let p2 = inbound::prepare(&secret(), forged, "", &rcpts(&["bot@agents.test"]), now);
    assert!(p2.claims.is_none());
    assert!(
        p2.unsigned_reason.as_deref().is_some_and(|r| r.contains("Body-Hash")),
        "{:?}",
        p2.unsigned_reason
    );
    assert_eq!(p2.unsigned_binding, Some("body"));
    let Delivered::Stored { id } = inbound::store_for(s, &p2, "bot@agents.test", now).await.expect("store")
    else {
        panic!("stored")
    };
    let m2 = s.get_message(&account, "bot@agents.test", &id).await.expect("get").expect("stored");
    assert_eq!((m2.authentication, m2.verified_domain, m2.envelope_from), (None, None, None));
    assert_eq!(m2.conversation_id, None, "an unsigned conversation header is not trusted");

    // A set made for other recipients proves nothing for this one: its copy is unsigned.
    let p_other = inbound::prepare(
        &secret(),
        signed_for(HEAD, "Pay now.\r\n", EntityType::Human, "", &["bot@agents.test"]),
        "bounce@example.org",
        &rcpts(&["bot@agents.test", "other@agents.test"]),
        now,
    );
    assert!(p_other.claims_for("BOT@agents.test").is_some());
    assert!(p_other.claims_for("other@agents.test").is_none());
    let Delivered::Stored { id: unbound } =
        inbound::store_for(s, &p_other, "other@agents.test", now).await.expect("store")
    else {
        panic!("stored")
    };
    let unbound = s.get_message(&account, "other@agents.test", &unbound).await.expect("get").expect("stored");
    assert_eq!((unbound.authentication, unbound.verified_domain), (None, None), "not verified for other");

    // Another account's agent mail does not carry its conversation id into this account.
    let foreign = "From: bot@agents.test\r\nTo: other@agents.test\r\nSubject: Hijack\r\nMessage-ID: <hijack@agents.test>\r\nX-E2A-Conversation-Id: conv_ffffffffffffffffffffffffffffffff\r\n";
    let p_foreign = inbound::prepare(
        &secret(),
        signed_for(
            foreign,
            "Hi\r\n",
            EntityType::Agent,
            "agent=bot@agents.test;human=usr_someoneelse",
            &["other@agents.test"],
        ),
        "bot@agents.test",
        &rcpts(&["other@agents.test"]),
        now,
    );
    assert!(p_foreign.claims.is_some(), "{:?}", p_foreign.unsigned_reason);
    let Delivered::Stored { id: hijack } =
        inbound::store_for(s, &p_foreign, "other@agents.test", now).await.expect("store")
    else {
        panic!("stored")
    };
    let hijack = s.get_message(&account, "other@agents.test", &hijack).await.expect("get").expect("stored");
    assert_eq!(hijack.conversation_id, None, "another account's conversation id is not honoured");

    // Our own agent's mail (signed as agent mail for this account) carries its conversation;
    // a human reply that references it joins that conversation.
    let ours = "From: bot@agents.test\r\nTo: other@agents.test\r\nSubject: Plan\r\nMessage-ID: <plan-1@agents.test>\r\nX-E2A-Conversation-Id: conv_0123456789abcdef0123456789abcdef\r\n";
    let delegation = format!("agent=bot@agents.test;human={}", account.as_str());
    let p3 = inbound::prepare(
        &secret(),
        signed_for(ours, "Hi\r\n", EntityType::Agent, &delegation, &["other@agents.test"]),
        "bot@agents.test",
        &rcpts(&["other@agents.test"]),
        now,
    );
    let Delivered::Stored { id: plan } =
        inbound::store_for(s, &p3, "other@agents.test", now).await.expect("store")
    else {
        panic!("stored")
    };
    let plan = s.get_message(&account, "other@agents.test", &plan).await.expect("get").expect("stored");
    assert_eq!(plan.conversation_id.as_deref(), Some("conv_0123456789abcdef0123456789abcdef"));
    let reply = "From: carol@example.net\r\nTo: other@agents.test\r\nSubject: Re: Plan\r\nIn-Reply-To: <plan-1@agents.test>\r\nReferences: <older@x> <plan-1@agents.test>\r\n";
    let p4 = inbound::prepare(
        &secret(),
        format!("{reply}\r\nok\r\n").into_bytes(),
        "",
        &rcpts(&["other@agents.test"]),
        now.plus_secs(1),
    );
    let Delivered::Stored { id: r } =
        inbound::store_for(s, &p4, "other@agents.test", now.plus_secs(1)).await.expect("store")
    else {
        panic!("stored")
    };
    let r = s.get_message(&account, "other@agents.test", &r).await.expect("get").expect("stored");
    assert_eq!(r.conversation_id, plan.conversation_id, "threaded by References");
    let page = PageQuery { after: None, limit: 10 };
    let convs =
        s.list_conversations(&account, "other@agents.test", None, None, &page).await.expect("conversations");
    assert_eq!(convs.len(), 1, "the id-less inbound copy is not a conversation");
    let c = &convs[0];
    assert_eq!((c.message_count, c.inbound_count, c.outbound_count, c.has_unread), (2, 2, 0, true));
    assert_eq!((c.latest_subject.as_str(), c.latest_from.as_str()), ("Re: Plan", "carol@example.net"));
    assert!(c.first_message_at < c.last_message_at);
    assert_eq!(s.get_conversation(&account, "other@agents.test", &c.id).await.expect("get"), Some(c.clone()));
    assert_eq!(s.get_conversation(&account, "bot@agents.test", &c.id).await.expect("get"), None, "per agent");
    let later = s
        .list_conversations(&account, "other@agents.test", Some(now.plus_secs(5)), None, &page)
        .await
        .expect("conversations");
    assert!(later.is_empty(), "since bounds the last message time");

    // The inbox: newest first, filters, read state.
    let page = PageQuery { after: None, limit: 10 };
    let inbox =
        s.list_messages(&account, "bot@agents.test", &MessageFilter::default(), &page).await.expect("list");
    assert_eq!(inbox.len(), 2);
    let by_subject = MessageFilter { subject_contains: Some("INVOICE".into()), ..MessageFilter::default() };
    assert_eq!(
        s.list_messages(&account, "bot@agents.test", &by_subject, &page).await.expect("list").len(),
        2
    );
    let by_from = MessageFilter { from_contains: Some("ALICE@".into()), ..MessageFilter::default() };
    assert_eq!(s.list_messages(&account, "bot@agents.test", &by_from, &page).await.expect("list").len(), 2);
    let nobody = MessageFilter { from_contains: Some("mallory".into()), ..MessageFilter::default() };
    assert!(s.list_messages(&account, "bot@agents.test", &nobody, &page).await.expect("list").is_empty());
    let percent = MessageFilter { subject_contains: Some("%".into()), ..MessageFilter::default() };
    assert!(
        s.list_messages(&account, "bot@agents.test", &percent, &page).await.expect("list").is_empty(),
        "LIKE metacharacters are literal"
    );
    assert!(s.mark_read(&bot_id, now).await.expect("read"));
    assert!(!s.mark_read(&bot_id, now).await.expect("read twice"));
    let unread = MessageFilter { read_status: Some(ReadStatus::Unread), ..MessageFilter::default() };
    assert_eq!(s.list_messages(&account, "bot@agents.test", &unread, &page).await.expect("list").len(), 1);

    // The outbox row, with the deterministic event id.
    let usage = s.account_usage(&account, Timestamp::from_micros(0)).await.expect("usage");
    assert_eq!(usage.messages_month, 7);
    assert!(usage.storage_bytes > raw.len() as i64);
}

/// A message built to be expensive: 100,000 empty MIME parts and 150 attachments after a
/// few ordinary parts. It is stored once, whole, with a view within the caps: at most
/// `max_attachments` attachment rows, a small `email.received` event, `truncated` set.
async fn hostile_mail_is_cheap(store: Arc<SqlStore>) {
    let s: &dyn Store = store.as_ref();
    setup(s).await;
    let account = s.find_account_by_email("owner@example.org").await.expect("q").expect("account").id;
    let mut raw = b"From: Mallory <mallory@example.net>\r\nTo: bot@agents.test\r\nSubject: many parts\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        .to_vec();
    for i in 0..150 {
        raw.extend_from_slice(
            format!("--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\r\nx\r\n")
                .as_bytes(),
        );
    }
    raw.extend(std::iter::repeat_n(b"--b\r\n".as_slice(), 100_000).flatten());
    raw.extend_from_slice(b"--b--\r\n");
    let now = Timestamp::now();
    let p = inbound::prepare(&secret(), raw.clone(), "m@example.net", &rcpts(&["bot@agents.test"]), now);
    assert!(p.parsed.truncated, "past the caps");
    assert_eq!(p.parsed.attachments.len(), 100, "max_attachments rows, not one per part");
    assert_eq!(p.parsed.subject, "many parts");
    let Delivered::Stored { id } = inbound::store_for(s, &p, "bot@agents.test", now).await.expect("store")
    else {
        panic!("stored")
    };
    assert_eq!(
        s.get_raw(&id).await.expect("raw").as_deref(),
        Some(raw.as_slice()),
        "stored whole, byte for byte"
    );
    assert_eq!(s.list_attachments(&id).await.expect("rows").len(), 100);
    let filter = postagent_core::store::EventFilter { message_id: Some(id.clone()), ..Default::default() };
    let events = s.list_events(&account, &filter, None, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    let payload = s.event_payload(&events[0].id).await.expect("payload").expect("event");
    assert!(payload.len() < 64 * 1024, "the event stays small: {} bytes", payload.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mail_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/hostile.db", dir.path().display());
    hostile_mail_is_cheap(Arc::new(SqlStore::open(&url, 4).await.expect("open"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mail_on_postgres() {
    let Some(cluster) = PgCluster::shared() else { return };
    let url = cluster.create_database().expect("db");
    hostile_mail_is_cheap(Arc::new(SqlStore::open(&url, 4).await.expect("open"))).await;
}

/// A row no store can take: its account does not exist (a foreign key fails).
fn orphan(n: usize) -> postagent_core::store::NewInboundMessage {
    use postagent_core::vocab::MessageStatus;
    postagent_core::store::NewInboundMessage {
        id: format!("msg_orphan{n}"),
        account_id: postagent_core::ids::AccountId::mint(),
        agent_email: "bot@agents.test".into(),
        source_id: format!("orphan-{n}"),
        header_from: None,
        envelope_from: None,
        verified_domain: None,
        to: Vec::new(),
        cc: Vec::new(),
        reply_to: Vec::new(),
        delivered_to: "bot@agents.test".into(),
        subject: "orphan".into(),
        rfc_message_id: None,
        in_reply_to: None,
        references: Vec::new(),
        conversation_id: None,
        authentication: None,
        raw: b"Subject: orphan\r\n\r\nx\r\n".to_vec(),
        size_bytes: 20,
        postfix_queue_id: None,
        created_at: Timestamp::now(),
        status: MessageStatus::Received,
        review_status: None,
        flag_reason: None,
        labels: Vec::new(),
        hold: None,
        lifecycle: Vec::new(),
    }
}

/// Concurrent deliveries share commits (core/src/store/group_commit.rs): every one is stored
/// once with its own answer, redeliveries racing their first copy are duplicates, and a
/// message that cannot be stored fails alone instead of taking its batch with it.
async fn concurrent_deliveries(store: Arc<SqlStore>) {
    let s: &dyn Store = store.as_ref();
    setup(s).await;
    let now = Timestamp::now();
    let prepared: Vec<_> = (0..40)
        .map(|n| {
            let head = HEAD.replace("Invoice 42", &format!("Invoice {n}"));
            let raw = signed_for(&head, "Pay.\r\n", EntityType::Human, "", &["bot@agents.test"]);
            Arc::new(inbound::prepare(
                &secret(),
                raw,
                "bounce@example.org",
                &rcpts(&["bot@agents.test"]),
                now,
            ))
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    // Each message once, the first five twice more at the same time, and orphans among them.
    for (n, p) in prepared.iter().enumerate() {
        for _ in 0..if n < 5 { 3 } else { 1 } {
            let (store, p) = (store.clone(), p.clone());
            tasks.spawn(async move {
                let stored =
                    inbound::store_for(store.as_ref(), &p, "bot@agents.test", Timestamp::now()).await;
                (p.source_id.clone(), stored.map_err(|e| e.to_string()))
            });
        }
        if n % 10 == 0 {
            let store = store.clone();
            tasks.spawn(async move {
                let r = postagent_core::store::MessageStore::insert_inbound(
                    store.as_ref(),
                    orphan(n),
                    Vec::new(),
                    Vec::new(),
                )
                .await;
                (
                    format!("orphan-{n}"),
                    r.map(|_| Delivered::Duplicate { id: String::new() }).map_err(|e| e.to_string()),
                )
            });
        }
    }
    let mut stored = std::collections::HashMap::<String, usize>::new();
    let (mut duplicates, mut orphans_failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("join") {
            (source, Ok(Delivered::Stored { .. })) => *stored.entry(source).or_default() += 1,
            (_, Ok(Delivered::Duplicate { .. })) => duplicates += 1,
            (source, Err(e)) => {
                assert!(source.starts_with("orphan-"), "a good delivery failed: {e}");
                orphans_failed += 1;
            }
        }
    }
    assert_eq!(stored.len(), 40, "every message stored");
    assert!(stored.values().all(|&n| n == 1), "each stored once: {stored:?}");
    assert_eq!(duplicates, 10, "the racing redeliveries are duplicates");
    assert_eq!(orphans_failed, 4, "each orphan failed on its own");
    let listed = s
        .list_messages(
            &s.find_account_by_email("owner@example.org").await.expect("q").expect("account").id,
            "bot@agents.test",
            &MessageFilter::default(),
            &PageQuery { after: None, limit: 100 },
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/in.db", dir.path().display());
    concurrent_deliveries(Arc::new(SqlStore::open(&url, 4).await.expect("open"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_on_postgres() {
    let Some(cluster) = PgCluster::shared() else { return };
    let url = cluster.create_database().expect("db");
    concurrent_deliveries(Arc::new(SqlStore::open(&url, 4).await.expect("open"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/in.db", dir.path().display());
    scenario(Arc::new(SqlStore::open(&url, 4).await.expect("open"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_on_postgres() {
    let Some(cluster) = PgCluster::shared() else { return };
    let url = cluster.create_database().expect("db");
    scenario(Arc::new(SqlStore::open(&url, 4).await.expect("open"))).await;
}

#[test]
fn a_second_from_past_the_header_cap_leaves_the_message_unsigned() {
    // The set names the first From; a second one may hide past max_header_fields (1000).
    let padded = format!("{HEAD}{}", "X-Filler: x\r\n".repeat(1100));
    let prepare = |head: &str| {
        let raw = signed(head, BODY, EntityType::Human);
        inbound::prepare(&secret(), raw, "bounce@example.org", &rcpts(&["bot@agents.test"]), Timestamp::now())
    };
    let p = prepare(&format!("{padded}From: ceo@bank.example\r\n"));
    assert!(p.parsed.truncated, "the view stops at the cap");
    assert_eq!(p.parsed.header_from, None, "two From fields: no single author");
    assert!(p.claims.is_none());
    assert!(p.unsigned_reason.as_deref().is_some_and(|r| r.contains("From")), "{:?}", p.unsigned_reason);
    let p = prepare(&padded);
    assert!(p.claims.is_some(), "without the hidden From the same padding verifies: {:?}", p.unsigned_reason);
}
