//! Loop protection on SQLite and PostgreSQL: automatic mail is labelled and never answered,
//! list mail may be, and the reply budget per correspondent makes two agents that answer
//! everything settle instead of ping-ponging.

use crate::common;

use common::{Db, TestApp, enc, spawn_app_configured, test_webhooks};
use reqwest::StatusCode;
use serde_json::json;

const A: &str = "alice-bot@agents.test";
const B: &str = "bob-bot@agents.test";

async fn app(db: Db) -> Option<TestApp> {
    spawn_app_configured(
        db,
        test_webhooks(),
        None,
        &[("loop_reply_budget", "3"), ("loop_reply_window", "10m")],
    )
    .await
}

fn mail(from: &str, to: &str, id: &str, extra: &str) -> Vec<u8> {
    format!("From: {from}\r\nTo: {to}\r\nSubject: note {id}\r\nMessage-ID: <{id}@example.org>\r\n{extra}\r\nhello\r\n").into_bytes()
}

async fn reply(app: &TestApp, agent: &str, id: &str) -> (StatusCode, serde_json::Value) {
    let r =
        app.post(&format!("/v1/agents/{}/messages/{id}/reply", enc(agent)), json!({"text": "Got it."})).await;
    (r.status, r.body)
}

async fn labels(app: &TestApp, agent: &str, id: &str) -> serde_json::Value {
    app.get(&format!("/v1/agents/{}/messages/{id}", enc(agent))).await.body["labels"].clone()
}

async fn automatic_mail_is_labelled_and_never_answered(db: Db) {
    let Some(app) = app(db).await else { return };
    assert_eq!(app.post("/v1/agents", json!({"email": A})).await.status, StatusCode::CREATED);
    let auto =
        app.deliver(A, &mail("x@example.org", A, "a1", "Auto-Submitted: auto-replied\r\n"), true).await;
    assert_eq!(labels(&app, A, &auto).await, json!(["e2a:auto-replied"]));
    let (status, body) = reply(&app, A, &auto).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("blocked_by_policy")),
        "{body}"
    );
    let away = String::from_utf8(mail("y@example.org", A, "a2", "")).expect("utf-8").replacen(
        "Subject: note a2",
        "Subject: Out of Office: away",
        1,
    );
    let ooo = app.deliver(A, away.as_bytes(), true).await;
    assert_eq!(labels(&app, A, &ooo).await, json!(["e2a:auto-responder"]));
    assert_eq!(reply(&app, A, &ooo).await.0, StatusCode::FORBIDDEN);
    // List mail is labelled but may be answered on purpose; a person's mail is not labelled.
    let list = app.deliver(A, &mail("z@example.org", A, "a3", "List-Id: <dev.example.org>\r\n"), true).await;
    assert_eq!(labels(&app, A, &list).await, json!(["e2a:bulk"]));
    assert_eq!(reply(&app, A, &list).await.0, StatusCode::ACCEPTED);
    let person = app.deliver(A, &mail("w@example.org", A, "a4", ""), true).await;
    assert_eq!(labels(&app, A, &person).await, json!([]));
    // The label filters the inbox like any other.
    let auto_only =
        app.get(&format!("/v1/agents/{}/messages?labels=e2a:auto-replied&read_status=all", enc(A))).await;
    assert_eq!(auto_only.body["items"].as_array().map(Vec::len), Some(1), "{}", auto_only.body);
}

/// Two agents that answer everything they receive: each reply is delivered to the other,
/// which answers it. Within the budget (3 per correspondent) both stop, and the next reply
/// of each is refused.
async fn two_agents_settle_within_the_budget(db: Db) {
    let Some(app) = app(db).await else { return };
    for agent in [A, B] {
        assert_eq!(app.post("/v1/agents", json!({"email": agent})).await.status, StatusCode::CREATED);
    }
    let mut inbox = app.deliver(A, &mail(B, A, "start", ""), true).await;
    let (mut me, mut peer) = (A, B);
    let mut replies = 0;
    let mut refused = 0;
    for round in 0..20 {
        let (status, body) = reply(&app, me, &inbox).await;
        if status == StatusCode::FORBIDDEN {
            assert!(
                body["error"]["message"].as_str().is_some_and(|m| m.contains("loop protection")),
                "{body}"
            );
            refused += 1;
            if refused == 2 {
                break;
            }
        } else {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            replies += 1;
        }
        // The reply arrives at the peer (as Postfix would deliver it), which answers in turn.
        inbox = app.deliver(peer, &mail(me, peer, &format!("r{round}"), ""), true).await;
        std::mem::swap(&mut me, &mut peer);
    }
    assert_eq!(replies, 6, "three replies each, then both are stopped");
    assert_eq!(refused, 2);
    // Another correspondent is not affected.
    let other = app.deliver(A, &mail("carol@example.org", A, "c1", ""), true).await;
    assert_eq!(reply(&app, A, &other).await.0, StatusCode::ACCEPTED);
}

/// The inbound gate's automatic-mail rule: with `block`, an autoresponder's answer is kept
/// from the agent (no `email.received`, so an agent that answers everything never sees it);
/// with `review` it waits for a person; a person's mail is untouched either way.
async fn the_gate_keeps_automatic_mail_from_the_agent(db: Db) {
    let Some(app) = app(db).await else { return };
    assert_eq!(app.post("/v1/agents", json!({"email": A})).await.status, StatusCode::CREATED);
    let path = format!("/v1/agents/{}/protection", enc(A));
    let rule = |automatic: serde_json::Value| {
        json!({
            "inbound": {"gate": {"policy": "open", "action": "flag", "automatic": automatic}, "scan": {}},
            "outbound": {"gate": {}, "scan": {}},
            "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
        })
    };
    let r =
        app.call(reqwest::Method::PUT, &path, Some(&app.key), Some(rule(json!({"action": "block"})))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["inbound"]["gate"]["automatic"],
        json!({"action": "block", "classes": ["auto-replied", "auto-generated", "null-sender", "auto-responder"]}),
        "the view shows the rule with its classes"
    );
    assert_eq!(app.get(&path).await.body, r.body, "and keeps it");
    let bad = rule(json!({"action": "drop", "classes": ["spam"]}));
    let r = app.call(reqwest::Method::PUT, &path, Some(&app.key), Some(bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let mut outbound = rule(json!({"action": "block"}));
    outbound["outbound"]["gate"]["automatic"] = json!({"action": "block"});
    let r = app.call(reqwest::Method::PUT, &path, Some(&app.key), Some(outbound)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.to_string().contains("body.outbound.gate.automatic"), "{}", r.body);

    let auto =
        app.deliver(A, &mail("x@example.org", A, "g1", "Auto-Submitted: auto-replied\r\n"), true).await;
    assert_eq!(app.event_kinds(&auto).await, ["email.blocked"], "never email.received");
    let ev = app.get(&format!("/v1/events?message_id={auto}")).await.body;
    assert_eq!(ev["items"][0]["data"]["reason_source"], "automatic_mail", "{ev}");
    assert!(ev["items"][0]["data"]["reason"].as_str().is_some_and(|r| r.contains("auto-replied")), "{ev}");
    let agent_key = app.agent_key(A).await;
    let inbox = app
        .call(reqwest::Method::GET, &format!("/v1/agents/{}/messages", enc(A)), Some(&agent_key), None)
        .await;
    assert_eq!(inbox.body["items"], json!([]), "the agent sees nothing to answer");
    let person = app.deliver(A, &mail("w@example.org", A, "g2", ""), true).await;
    assert_eq!(app.event_kinds(&person).await, ["email.received"]);

    let r = app
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&app.key),
            Some(rule(json!({"action": "review", "classes": ["auto-responder"]}))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let away = String::from_utf8(mail("y@example.org", A, "g3", "")).expect("utf-8").replacen(
        "Subject: note g3",
        "Subject: Automatic reply: away",
        1,
    );
    let held = app.deliver(A, away.as_bytes(), true).await;
    assert_eq!(app.event_kinds(&held).await, ["email.review_requested"]);
    let review = app.get(&format!("/v1/reviews/{held}")).await.body;
    assert_eq!(review["hold_reason"]["code"], "automatic_mail", "{review}");
    // Not a listed class: delivered, and still never answerable.
    let generated =
        app.deliver(A, &mail("z@example.org", A, "g4", "Auto-Submitted: auto-generated\r\n"), true).await;
    assert_eq!(app.event_kinds(&generated).await, ["email.received"]);
    assert_eq!(reply(&app, A, &generated).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn automatic_gate_on_sqlite() {
    the_gate_keeps_automatic_mail_from_the_agent(Db::Sqlite).await;
}

#[tokio::test]
async fn automatic_gate_on_postgres() {
    the_gate_keeps_automatic_mail_from_the_agent(Db::Postgres).await;
}

#[tokio::test]
async fn automatic_mail_on_sqlite() {
    automatic_mail_is_labelled_and_never_answered(Db::Sqlite).await;
}

#[tokio::test]
async fn automatic_mail_on_postgres() {
    automatic_mail_is_labelled_and_never_answered(Db::Postgres).await;
}

#[tokio::test]
async fn two_agents_settle_on_sqlite() {
    two_agents_settle_within_the_budget(Db::Sqlite).await;
}

#[tokio::test]
async fn two_agents_settle_on_postgres() {
    two_agents_settle_within_the_budget(Db::Postgres).await;
}

/// With `mark_auto_submitted`, agent mail says it is automatic (RFC 3834): a send is
/// `auto-generated`, a reply `auto-replied`, so the other side's loop protection knows it.
#[tokio::test]
async fn agent_mail_is_marked_auto_submitted() {
    let Some(app) =
        spawn_app_configured(Db::Sqlite, test_webhooks(), None, &[("mark_auto_submitted", "true")]).await
    else {
        return;
    };
    assert_eq!(app.post("/v1/agents", json!({"email": A})).await.status, StatusCode::CREATED);
    let sent = app
        .post(
            &format!("/v1/agents/{}/messages", enc(A)),
            json!({"to": ["x@example.org"], "subject": "s", "text": "t"}),
        )
        .await;
    let id = sent.body["message_id"].as_str().expect("id");
    let raw = crate::outbound::raw_of(&app.get(&format!("/v1/agents/{}/messages/{id}", enc(A))).await.body);
    assert!(raw.contains("Auto-Submitted: auto-generated"), "{raw}");
    let inbound = app.deliver(A, &mail("y@example.org", A, "m1", ""), true).await;
    let (status, body) = reply(&app, A, &inbound).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["message_id"].as_str().expect("id");
    let raw = crate::outbound::raw_of(&app.get(&format!("/v1/agents/{}/messages/{id}", enc(A))).await.body);
    assert!(raw.contains("Auto-Submitted: auto-replied"), "{raw}");
    // And such mail, arriving at another agent, is recognised as automatic.
    assert_eq!(
        postagent_core::mail::loops::classify(raw.as_bytes(), A),
        Some(postagent_core::vocab::AutoClass::AutoReplied)
    );
}
