//! Protection settings, holds and their review (API, magic links, expiry), on SQLite and
//! PostgreSQL: outbound holds approved, edited, rejected and expired both ways; inbound
//! holds released to the inbox; agent keys kept out; two replicas sweeping the same expired
//! hold decide it once.

use crate::common;

use common::{TestApp, enc};
use postagent_core::magic::{self, Action};
use postagent_core::mail::review;
use postagent_core::secret::Secret;
use postagent_core::store::{JobQueue, SqlStore, Store};
use postagent_core::time::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    protection_settings,
    outbound_hold_approved_edited_and_decided_once,
    outbound_hold_rejected_keeps_the_draft,
    holds_expire_into_their_on_expiry,
    two_replicas_race_on_expiry,
    magic_links_confirm_then_act,
    inbound_holds_and_blocks,
    trash_pauses_a_hold,
);

const BOT: &str = "bot@agents.test";

fn messages() -> String {
    format!("/v1/agents/{}/messages", enc(BOT))
}

fn protection() -> String {
    format!("/v1/agents/{}/protection", enc(BOT))
}

/// The app's deployment secret (tests/it/common/mod.rs).
fn secret() -> Secret {
    Secret::new(vec![42; 32])
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// Every send held for review (the contract's HITL setting).
async fn review_everything(app: &TestApp, ttl: i64, on_expiry: &str) {
    let body = json!({
        "inbound": {"gate": {"policy": "open"}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": ttl, "on_expiry": on_expiry},
    });
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn held_send(app: &TestApp, subject: &str) -> (String, Value) {
    let r = app
        .post(&messages(), json!({"to": ["ann@example.org"], "subject": subject, "text": "please check"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "pending_review", "{}", r.body);
    (r.body["message_id"].as_str().expect("id").to_owned(), r.body.clone())
}

async fn event_data(app: &TestApp, id: &str, kind: &str) -> Value {
    let r = app.get(&format!("/v1/events?message_id={id}")).await;
    let items = r.body["items"].as_array().expect("items").clone();
    items.into_iter().find(|e| e["type"] == kind).unwrap_or_else(|| panic!("no {kind} in {}", r.body))["data"]
        .clone()
}

async fn submit_jobs(app: &TestApp) -> usize {
    app.store
        .claim_jobs(postagent_core::vocab::JobKind::Submit, "probe", Timestamp::now().plus_secs(3600), 1, 100)
        .await
        .expect("claim")
        .len()
}

async fn protection_settings(app: &TestApp) {
    setup(app).await;
    let r = app.get(&protection()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "inbound": {"gate": {"policy": "open", "action": "flag"}, "scan": {"sensitivity": "off"}},
            "outbound": {"gate": {"policy": "open", "action": "flag"}, "scan": {"sensitivity": "off"}},
            "holds": {"ttl_seconds": 604800, "on_expiry": "reject", "suppress_notifications": false},
        })
    );
    let bad = json!({
        "inbound": {"gate": {"policy": "everyone"}, "scan": {}},
        "outbound": {"gate": {"action": "review", "colour": "red"}, "scan": {}},
        "holds": {"ttl_seconds": 0},
    });
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.locations(), vec!["body.outbound.gate.colour"], "unknown fields first: {}", r.body);
    let bad = json!({"inbound": {"gate": {"policy": "everyone"}, "scan": {}}, "outbound": {"gate": {}, "scan": {}}, "holds": {"ttl_seconds": 0}});
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(bad)).await;
    assert_eq!(r.locations(), vec!["body.inbound.gate.policy", "body.holds.ttl_seconds"], "{}", r.body);
    let r = app
        .call(Method::PUT, &protection(), Some(&app.key), Some(json!({"inbound": {}, "outbound": {}})))
        .await;
    assert_eq!(r.locations(), vec!["body.holds"], "{}", r.body);

    let agent_key = app.agent_key(BOT).await;
    let r = app.call(Method::GET, &protection(), Some(&agent_key), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "protection is account scope");
    let intruder = app.other_account().await;
    let r = app.call(Method::GET, &protection(), Some(&intruder), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another account's agent does not exist");

    review_everything(app, 3600, "approve").await;
    let r = app.get(&protection()).await;
    assert_eq!(
        r.body["outbound"]["gate"],
        json!({"policy": "allowlist", "action": "review"}),
        "empty allowlist omitted"
    );
    assert_eq!(r.body["holds"]["ttl_seconds"], 3600);
    assert_eq!(r.body["holds"]["on_expiry"], "approve");
}

async fn outbound_hold_approved_edited_and_decided_once(app: &TestApp) {
    setup(app).await;
    review_everything(app, 3600, "reject").await;
    let before = Timestamp::now();
    let (id, body) = held_send(app, "Draft").await;
    let expires =
        Timestamp::parse_rfc3339(body["approval_expires_at"].as_str().expect("expiry")).expect("rfc3339");
    assert!(expires >= before.plus_secs(3600) && expires <= Timestamp::now().plus_secs(3600), "{body}");

    let list = app.get("/v1/reviews").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    for key in [
        "id",
        "agent_email",
        "direction",
        "header_from",
        "envelope_from",
        "verified_domain",
        "to",
        "subject",
        "review_status",
        "created_at",
    ] {
        assert!(items[0].get(key).is_some(), "ReviewView.{key} missing: {}", items[0]);
    }
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["review_status"], "pending_review");
    assert_eq!(items[0]["hold_reason"]["code"], "outbound_gate");

    let view = app.get(&format!("/v1/reviews/{id}")).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(view.body["raw_message"], Value::Null, "a held draft has no MIME yet");
    assert_eq!(view.body["body"]["text"], "please check");
    assert_eq!(view.body["review_status"], "pending_review");

    // The agent's own key can neither see nor approve what its agent waits on.
    let agent_key = app.agent_key(BOT).await;
    for (method, path) in
        [(Method::GET, "/v1/reviews".to_owned()), (Method::POST, format!("/v1/reviews/{id}/approve"))]
    {
        let r = app.call(method, &path, Some(&agent_key), Some(json!({}))).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{path}: {}", r.body);
    }
    let r = app.call(Method::DELETE, &format!("{}/{id}", messages()), Some(&app.key), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "message_held"));

    let r = app.post(&format!("/v1/reviews/{id}/approve"), json!({"subject": "Approved subject"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["method"], "smtp");
    assert_eq!(r.body["edited"], true);
    for again in ["approve", "reject"] {
        let r = app.post(&format!("/v1/reviews/{id}/{again}"), json!({})).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "message_not_pending"),
            "{again}: {}",
            r.body
        );
    }
    let m = app.get(&format!("{}/{id}", messages())).await.body;
    assert_eq!(m["delivery_status"], "accepted");
    assert_eq!(m["review_status"], "sent", "approved outbound collapses to sent");
    assert_eq!(m["subject"], "Approved subject");
    let raw = String::from_utf8_lossy(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            m["raw_message"].as_str().expect("raw"),
        )
        .expect("b64"),
    )
    .into_owned();
    assert!(raw.contains("Subject: Approved subject"), "{raw}");
    assert_eq!(app.event_kinds(&id).await, vec!["email.review_approved", "email.review_requested"]);
    assert_eq!(submit_jobs(app).await, 1, "queued for submission once");
    assert!(app.get("/v1/reviews").await.body["items"].as_array().expect("items").is_empty());
}

async fn outbound_hold_rejected_keeps_the_draft(app: &TestApp) {
    setup(app).await;
    review_everything(app, 3600, "approve").await;
    let (id, _) = held_send(app, "Risky").await;
    let r = app.post(&format!("/v1/reviews/{id}/reject"), json!({"reason": "not now"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"status": "review_rejected", "message_id": id, "rejection_reason": "not now"}));
    let r = app.post(&format!("/v1/reviews/{id}/reject"), json!({"reason": "x".repeat(2001)})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "the API refuses long reasons");
    let m = app.get(&format!("{}/{id}", messages())).await.body;
    assert_eq!(m["review_status"], "review_rejected");
    assert_eq!(m["body"]["text"], "please check", "data handling §11: the draft is retained");
    let data = event_data(app, &id, "email.review_rejected").await;
    assert_eq!(data["reason"], "not now");
    assert_eq!(submit_jobs(app).await, 0, "a rejected message is never queued");
}

async fn holds_expire_into_their_on_expiry(app: &TestApp) {
    setup(app).await;
    review_everything(app, 60, "approve").await;
    let (approve_id, _) = held_send(app, "Approve on expiry").await;
    review_everything(app, 60, "reject").await;
    let (reject_id, _) = held_send(app, "Reject on expiry").await;
    // An inbound hold that expires with on_expiry=approve is released to the inbox.
    let gate = json!({
        "inbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 60, "on_expiry": "approve"},
    });
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(gate)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mail = "From: alice@example.org\r\nTo: bot@agents.test\r\nSubject: Waiting\r\nMessage-ID: <w1@example.org>\r\n\r\nhi\r\n";
    let inbound = app.deliver(BOT, mail.as_bytes(), true).await;
    let store = app.store.as_ref() as &dyn Store;
    assert_eq!(
        review::sweep(store, &secret(), Timestamp::now(), 100).await.expect("sweep"),
        0,
        "not due yet"
    );
    let later = Timestamp::now().plus_secs(61);
    assert_eq!(review::sweep(store, &secret(), later, 100).await.expect("sweep"), 3);
    let inbox = app.get(&messages()).await.body;
    assert_eq!(inbox["items"][0]["id"], inbound.as_str(), "released by expiry: {inbox}");
    assert_eq!(
        app.get(&format!("{}/{inbound}", messages())).await.body["review_status"],
        "review_expired_approved"
    );
    assert_eq!(review::sweep(store, &secret(), later, 100).await.expect("sweep"), 0, "decided once");

    let a = app.get(&format!("{}/{approve_id}", messages())).await.body;
    assert_eq!(a["review_status"], "review_expired_approved");
    assert_eq!(a["delivery_status"], "accepted");
    assert_eq!(event_data(app, &approve_id, "email.review_approved").await["auto_resolved"], true);
    let b = app.get(&format!("{}/{reject_id}", messages())).await.body;
    assert_eq!(b["review_status"], "review_expired_rejected");
    assert_eq!(event_data(app, &reject_id, "email.review_rejected").await["auto_resolved"], true);
    assert_eq!(submit_jobs(app).await, 1, "only the approved one is queued");
    let r = app.post(&format!("/v1/reviews/{approve_id}/approve"), json!({})).await;
    assert_eq!(r.code(), "message_not_pending");

    // Past its deadline, before any sweep, a hold can no longer be decided by a person.
    let (late, _) = held_send(app, "Too late").await;
    let after = Timestamp::now().plus_secs(61);
    let by = review::DecidedBy::Reviewer("test".into());
    let refused =
        review::approve(store, &secret(), &late, review::Edits::default(), by.clone(), None, after).await;
    assert!(matches!(refused, Err(review::ReviewError::Expired)), "{refused:?}");
    assert!(matches!(review::reject(store, &late, None, by, after).await, Err(review::ReviewError::Expired)));
    assert_eq!(
        review::sweep(store, &secret(), after, 100).await.expect("sweep"),
        1,
        "the sweep still applies on_expiry"
    );
}

async fn two_replicas_race_on_expiry(app: &TestApp) {
    setup(app).await;
    review_everything(app, 1, "approve").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(held_send(app, &format!("race {i}")).await.0);
    }
    let other = SqlStore::open(app.store.url(), 5).await.expect("second replica");
    let later = Timestamp::now().plus_secs(5);
    let (s1, s2) = (secret(), secret());
    let (a, b) = tokio::join!(
        review::sweep(app.store.as_ref(), &s1, later, 100),
        review::sweep(&other, &s2, later, 100)
    );
    let (a, b) = (a.expect("replica 1"), b.expect("replica 2"));
    assert_eq!(a + b, 5, "each hold decided by exactly one replica ({a} + {b})");
    for id in &ids {
        let kinds = app.event_kinds(id).await;
        assert_eq!(kinds.iter().filter(|k| *k == "email.review_approved").count(), 1, "{id}: {kinds:?}");
    }
    assert_eq!(submit_jobs(app).await, 5, "one submission each");
    other.close().await;
}

async fn page(
    app: &TestApp,
    method: Method,
    url: &str,
    form: Option<&[(&str, &str)]>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = app.http.request(method, url);
    if let Some(f) = form {
        req = req.form(f);
    }
    let res = req.send().await.expect("request");
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.expect("body"))
}

fn token_of(url: &str) -> String {
    url.split_once("?t=").expect("t=").1.to_owned()
}

async fn magic_links_confirm_then_act(app: &TestApp) {
    setup(app).await;
    review_everything(app, 3600, "reject").await;
    let (id, body) = held_send(app, "Magic").await;
    let expires =
        Timestamp::parse_rfc3339(body["approval_expires_at"].as_str().expect("expiry")).expect("rfc3339");
    let (approve, reject) = magic::links(&app.base, &secret(), &id, expires);

    let (status, headers, html) = page(app, Method::GET, &approve, None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-robots-tag"], "noindex, nofollow");
    assert!(html.contains("<form method=\"post\" action=\"approve\">") && html.contains("Magic"), "{html}");
    let m = app.get(&format!("{}/{id}", messages())).await.body;
    assert_eq!(m["review_status"], "pending_review", "a GET decides nothing");

    let t = token_of(&approve);
    let mut tampered = t.clone();
    tampered.replace_range(0..1, if t.starts_with('b') { "c" } else { "b" });
    for (url, want) in [
        (format!("{}/v1/approve?t={tampered}", app.base), StatusCode::BAD_REQUEST),
        (format!("{}/v1/approve?t={}", app.base, token_of(&reject)), StatusCode::BAD_REQUEST),
        (format!("{}/v1/approve", app.base), StatusCode::BAD_REQUEST),
    ] {
        let (status, headers, html) = page(app, Method::GET, &url, None).await;
        assert_eq!(status, want, "{url}: {html}");
        assert!(headers["content-type"].to_str().expect("ct").starts_with("text/html"), "a page, not JSON");
        assert!(html.contains("not valid"), "{html}");
    }
    let expired = magic::link_token(&secret(), &id, Action::Approve, Timestamp::now().plus_secs(-1));
    let (status, _, html) =
        page(app, Method::POST, &format!("{}/v1/approve", app.base), Some(&[("t", &expired)])).await;
    assert_eq!(status, StatusCode::GONE, "{html}");
    let (status, headers, _) = page(app, Method::PUT, &approve, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, POST");
    assert_eq!(
        app.get(&format!("{}/{id}", messages())).await.body["review_status"],
        "pending_review",
        "nothing changed yet"
    );

    let (status, _, html) =
        page(app, Method::POST, &format!("{}/v1/approve", app.base), Some(&[("t", &t)])).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("queued for delivery"), "{html}");
    let m = app.get(&format!("{}/{id}", messages())).await.body;
    assert_eq!(m["delivery_status"], "accepted");
    let (status, _, html) =
        page(app, Method::POST, &format!("{}/v1/approve", app.base), Some(&[("t", &t)])).await;
    assert_eq!(status, StatusCode::CONFLICT, "a used link: {html}");
    assert!(html.contains("already approved"), "{html}");
    let (status, _, _) = page(
        app,
        Method::POST,
        &format!("{}/v1/reject", app.base),
        Some(&[("t", &token_of(&reject)), ("reason", "late")]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "the other link is used up too");

    // Reject through its link, with a reason.
    let (id2, body2) = held_send(app, "Second").await;
    let exp2 =
        Timestamp::parse_rfc3339(body2["approval_expires_at"].as_str().expect("expiry")).expect("rfc3339");
    let (_, reject2) = magic::links(&app.base, &secret(), &id2, exp2);
    let (status, _, html) = page(app, Method::GET, &reject2, None).await;
    assert!(status == StatusCode::OK && html.contains("name=\"reason\""), "{html}");
    let (status, _, html) = page(
        app,
        Method::POST,
        &format!("{}/v1/reject", app.base),
        Some(&[("t", &token_of(&reject2)), ("reason", "wrong tone")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("will not be sent"));
    assert_eq!(event_data(app, &id2, "email.review_rejected").await["reason"], "wrong tone");
}

async fn inbound_holds_and_blocks(app: &TestApp) {
    setup(app).await;
    let gate = |action: &str| {
        json!({
            "inbound": {"gate": {"policy": "domain", "allowlist": ["trusted.test"], "action": action}, "scan": {}},
            "outbound": {"gate": {}, "scan": {}},
            "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
        })
    };
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(gate("review"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mail = "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: Let me in\r\nMessage-ID: <in1@example.org>\r\n\r\nhello\r\n";
    let id = app.deliver(BOT, mail.as_bytes(), true).await;
    let inbox = app.get(&messages()).await;
    assert!(inbox.body["items"].as_array().expect("items").is_empty(), "held mail stays out of the inbox");
    assert_eq!(app.event_kinds(&id).await, vec!["email.review_requested"], "no email.received while held");
    let requested = app.get(&format!("/v1/events?message_id={id}")).await.body;
    assert_eq!(requested["items"][0]["data"]["reason_source"], "sender_gate", "{requested}");
    let reviews = app.get("/v1/reviews").await.body;
    assert_eq!(reviews["items"][0]["direction"], "inbound");
    assert_eq!(reviews["items"][0]["header_from"], "alice@example.org");
    // The agent's own key cannot read what is held from it, by id or its attachments.
    let agent_key = app.agent_key(BOT).await;
    for path in [format!("{}/{id}", messages()), format!("{}/{id}/attachments/0", messages())] {
        let r = app.call(Method::GET, &path, Some(&agent_key), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}: {}", r.body);
    }
    assert_eq!(app.get(&format!("/v1/reviews/{id}")).await.status, StatusCode::OK, "the account sees it");

    let r = app.post(&format!("/v1/reviews/{id}/approve"), json!({"subject": "edited"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "inbound mail cannot be edited: {}", r.body);
    let r = app.post(&format!("/v1/reviews/{id}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"status": "review_approved", "message_id": id}));
    let inbox = app.get(&messages()).await.body;
    assert_eq!(inbox["items"][0]["id"], id.as_str(), "released to the inbox");
    assert_eq!(inbox["items"][0]["read_status"], "unread");
    assert_eq!(
        app.event_kinds(&id).await,
        vec!["email.received", "email.review_approved", "email.review_requested"]
    );

    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(gate("block"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let blocked = app.deliver(BOT, mail.replace("in1@", "in2@").as_bytes(), true).await;
    assert_eq!(app.event_kinds(&blocked).await, vec!["email.blocked"]);
    let ev = app.get(&format!("/v1/events?message_id={blocked}")).await.body;
    assert_eq!(
        (&ev["items"][0]["data"]["reason_source"], &ev["items"][0]["data"]["policy"]),
        (&json!("sender_gate"), &json!("domain")),
        "{ev}"
    );
    assert_eq!(
        app.get(&messages()).await.body["items"].as_array().expect("items").len(),
        1,
        "blocked mail is hidden"
    );
    let r = app.call(Method::GET, &format!("{}/{blocked}", messages()), Some(&agent_key), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "blocked mail is not the agent's: {}", r.body);
    // A listed domain passes only when its From authenticated (DMARC-aligned, as the
    // milter signed it): the same From unsigned, or under another verified domain, does not.
    let mut allow = gate("block");
    allow["inbound"]["gate"]["allowlist"] = json!(["example.org"]);
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(allow)).await;
    assert_eq!(r.status, StatusCode::OK);
    let ok = app.deliver(BOT, mail.replace("in1@", "in3@").as_bytes(), true).await;
    assert_eq!(app.event_kinds(&ok).await, vec!["email.received"], "the allowed domain passes");
    let forged = app.deliver(BOT, mail.replace("in1@", "in5@").as_bytes(), false).await;
    assert_eq!(
        app.event_kinds(&forged).await,
        vec!["email.blocked"],
        "an unauthenticated From is not trusted"
    );
    let spoof = mail.replace("alice@example.org", "ceo@trusted.test").replace("in1@", "in6@");
    let mut trusted = gate("block");
    trusted["inbound"]["gate"]["policy"] = json!("allowlist");
    trusted["inbound"]["gate"]["allowlist"] = json!(["ceo@trusted.test"]);
    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(trusted)).await;
    assert_eq!(r.status, StatusCode::OK);
    let spoofed = app.deliver(BOT, spoof.as_bytes(), true).await;
    assert_eq!(
        app.event_kinds(&spoofed).await,
        vec!["email.blocked"],
        "verified as example.org, not trusted.test"
    );

    let r = app.call(Method::PUT, &protection(), Some(&app.key), Some(gate("flag"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let flagged = app.deliver(BOT, mail.replace("in1@", "in4@").as_bytes(), true).await;
    assert_eq!(app.event_kinds(&flagged).await, vec!["email.flagged", "email.received"]);
    let m = app.get(&format!("{}/{flagged}", messages())).await.body;
    assert_eq!(m["flagged"], true);
    assert!(m["flag_reason"].as_str().is_some_and(|r| r.contains("alice@example.org")), "{m}");
}

async fn trash_pauses_a_hold(app: &TestApp) {
    use postagent_core::store::OutboundStore;
    setup(app).await;
    review_everything(app, 60, "approve").await;
    let (id, _) = held_send(app, "Paused").await;
    let before = app.store.get_hold(&id).await.expect("hold").expect("exists").expires_at;
    let r = app.delete(&format!("/v1/agents/{}?confirm=DELETE", enc(BOT))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        app.get("/v1/reviews").await.body["items"].as_array().expect("items").is_empty(),
        "a trashed agent's holds drop out"
    );
    let store = app.store.as_ref() as &dyn Store;
    let later = Timestamp::now().plus_secs(120);
    assert_eq!(
        review::sweep(store, &secret(), later, 100).await.expect("sweep"),
        0,
        "the sweep skips trashed agents"
    );
    let r = app.post(&format!("/v1/agents/{}/restore", enc(BOT)), Value::Null).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let after = app.store.get_hold(&id).await.expect("hold").expect("exists").expires_at;
    assert!(after > before, "the deadline moved on by the time in the trash ({before} -> {after})");
    assert_eq!(app.get("/v1/reviews").await.body["items"][0]["id"], id.as_str(), "back in the queue");
}
