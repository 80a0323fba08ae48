//! Suppression lists over the API on SQLite and PostgreSQL: the five operations, the 422 on
//! every sending path, tenancy and scope.

use crate::common;

use common::{TestApp, enc};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(
    agent_blocks_refuse_every_sending_path,
    account_list_and_its_guards,
    managed_unsubscribe_one_click,
    a_run_of_soft_bounces_suppresses
);

const BOT: &str = "bot@agents.test";

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

fn path(rest: &str) -> String {
    format!("/v1/agents/{}{rest}", enc(BOT))
}

async fn agent_blocks_refuse_every_sending_path(app: &TestApp) {
    setup(app).await;
    let added =
        app.post(&path("/suppressions"), json!({"address": " Ann@Example.org ", "reason": "asked us"})).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert_eq!(added.body["agent_email"], BOT);
    assert_eq!(added.body["address"], "ann@example.org");
    assert_eq!(added.body["source"], "manual");
    assert_eq!(added.body["reason"], "asked us");
    // Adding it again is the same entry, not a second event.
    let again = app.post(&path("/suppressions"), json!({"address": "ann@example.org"})).await;
    assert_eq!((again.status, &again.body["created_at"]), (StatusCode::OK, &added.body["created_at"]));
    let events = app.get("/v1/events?type=agent.suppression_added").await;
    let items = events.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", events.body);
    assert_eq!(
        items[0]["data"],
        json!({"agent_email": BOT, "address": "ann@example.org", "source": "manual", "reason": "asked us"})
    );

    // Send (with a display name), reply and forward are all refused, naming the address.
    let send = app
        .post(&path("/messages"), json!({"to": ["Ann <ANN@example.org>"], "subject": "Hi", "text": "Hello"}))
        .await;
    assert_eq!(send.error().0, 422, "{}", send.body);
    assert_eq!(send.code(), "recipient_suppressed");
    assert_eq!(send.body["error"]["details"], json!({"address": "ann@example.org", "source": "manual"}));
    let cc = app
        .post(
            &path("/messages"),
            json!({"to": ["bob@example.org"], "cc": ["ann@example.org"], "subject": "Hi", "text": "Hello"}),
        )
        .await;
    assert_eq!(cc.code(), "recipient_suppressed");
    let inbound = "From: Ann <ann@example.org>\r\nTo: bot@agents.test\r\nSubject: Q\r\nMessage-ID: <q@example.org>\r\n\r\nHi\r\n";
    let id = app.deliver(BOT, inbound.as_bytes(), true).await;
    let reply = app.post(&path(&format!("/messages/{id}/reply")), json!({"text": "Answer"})).await;
    assert_eq!(reply.code(), "recipient_suppressed", "{}", reply.body);
    let forward = app
        .post(&path(&format!("/messages/{id}/forward")), json!({"to": ["ann@example.org"], "text": "FYI"}))
        .await;
    assert_eq!(forward.code(), "recipient_suppressed");
    // Nothing was stored for any of them.
    let out = app.get(&path("/messages?direction=outbound&read_status=all")).await;
    assert_eq!(out.body["items"], json!([]), "{}", out.body);

    // A held send whose recipient is suppressed before approval: 422, and it stays pending.
    let gate = json!({"inbound": {"gate": {}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}}, "holds": {}});
    assert_eq!(
        app.call(Method::PUT, &path("/protection"), Some(&app.key), Some(gate)).await.status,
        StatusCode::OK
    );
    let held = app
        .post(&path("/messages"), json!({"to": ["carl@example.org"], "subject": "Hi", "text": "Hello"}))
        .await;
    assert_eq!(held.body["status"], "pending_review", "{}", held.body);
    let held_id = held.body["message_id"].as_str().expect("id");
    assert_eq!(
        app.post(&path("/suppressions"), json!({"address": "carl@example.org"})).await.status,
        StatusCode::OK
    );
    let approve = app.post(&format!("/v1/reviews/{held_id}/approve"), json!({})).await;
    assert_eq!(approve.code(), "recipient_suppressed", "{}", approve.body);
    let review = app.get(&format!("/v1/reviews/{held_id}")).await;
    assert_eq!(review.body["review_status"], "pending_review", "{}", review.body);

    // The list pages, and deleting needs confirm=DELETE; then mail flows again.
    let list = app.get(&path("/suppressions?limit=1")).await;
    assert_eq!(list.body["items"].as_array().expect("items").len(), 1);
    assert!(list.body["next_cursor"].is_string(), "{}", list.body);
    let unconfirmed = app.delete(&path("/suppressions/ann@example.org")).await;
    assert_eq!(unconfirmed.status.as_u16() / 100, 4, "{}", unconfirmed.body);
    let deleted = app
        .call(Method::DELETE, &path("/suppressions/ann@example.org?confirm=DELETE"), Some(&app.key), None)
        .await;
    assert_eq!(deleted.body, json!({"deleted": true, "address": "ann@example.org"}));
    let gone = app
        .call(Method::DELETE, &path("/suppressions/ann@example.org?confirm=DELETE"), Some(&app.key), None)
        .await;
    assert_eq!(gone.code(), "not_found");
    let ok = app
        .post(&path("/messages"), json!({"to": ["ann@example.org"], "subject": "Hi", "text": "Hello"}))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
}

async fn account_list_and_its_guards(app: &TestApp) {
    use postagent_core::store::{Suppression, SuppressionStore};
    use postagent_core::vocab::SuppressionSource;
    setup(app).await;
    let s = Suppression {
        account_id: app.account_id().await,
        agent_email: None,
        address: "dead@example.org".into(),
        source: SuppressionSource::Bounce,
        reason: Some("dead@example.org 5.1.1: no such user".into()),
        source_message_id: Some("msg_x".into()),
        created_at: postagent_core::time::Timestamp::now(),
    };
    assert!(app.store.add_suppression(&s, None, Vec::new()).await.expect("add"));
    let list = app.get("/v1/account/suppressions").await;
    let item = &list.body["items"][0];
    assert_eq!(
        (item["address"].as_str(), item["source"].as_str()),
        (Some("dead@example.org"), Some("bounce"))
    );
    assert_eq!(item["source_message_id"], "msg_x");
    assert!(item.get("agent_email").is_none());
    // The account's list stops every agent.
    let send = app
        .post(&path("/messages"), json!({"to": ["dead@example.org"], "subject": "Hi", "text": "Hello"}))
        .await;
    assert_eq!(send.body["error"]["details"], json!({"address": "dead@example.org", "source": "bounce"}));
    // Another account sees nothing and cannot lift it; an agent key may not manage lists.
    let intruder = app.other_account().await;
    let other = app.call(Method::GET, "/v1/account/suppressions", Some(&intruder), None).await;
    assert_eq!(other.body["items"], json!([]));
    let lift = app
        .call(
            Method::DELETE,
            "/v1/account/suppressions/dead@example.org?confirm=DELETE",
            Some(&intruder),
            None,
        )
        .await;
    assert_eq!(lift.code(), "not_found");
    let agent_key = app.agent_key(BOT).await;
    let scoped = app.call(Method::GET, &path("/suppressions"), Some(&agent_key), None).await;
    assert_eq!(scoped.status, StatusCode::FORBIDDEN, "{}", scoped.body);
    let bad = app.post(&path("/suppressions"), json!({"address": "not an address"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let unknown = app.post(&path("/suppressions"), json!({"address": "a@b.org", "colour": "red"})).await;
    assert_eq!(unknown.status.as_u16() / 100, 4);
    let deleted = app
        .call(
            Method::DELETE,
            "/v1/account/suppressions/DEAD@example.org?confirm=DELETE",
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(deleted.body, json!({"deleted": true, "address": "dead@example.org"}));
}

async fn managed_unsubscribe_one_click(app: &TestApp) {
    setup(app).await;
    let managed = json!({"to": ["Ann <ann@example.org>"], "subject": "News", "text": "Hello", "unsubscribe": {"mode": "managed"}});
    let sent = app.post(&path("/messages"), managed).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let id = sent.body["message_id"].as_str().expect("id");
    let view = app.get(&path(&format!("/messages/{id}"))).await;
    let raw = crate::outbound::raw_of(&view.body);
    let url = raw
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("no List-Unsubscribe in:\n{raw}"))
        .to_owned();
    assert!(url.starts_with(&format!("{}/u/", app.base)), "{url}");
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{raw}");
    let (text, _) = postagent_core::mail::inbound::bodies(raw.as_bytes());
    let text = text.expect("a text body");
    assert!(text.contains(&format!("To stop receiving these messages: {url}")), "the footer: {text}");
    // More than one recipient, or another mode, is refused.
    let two = app.post(&path("/messages"), json!({"to": ["a@example.org", "b@example.org"], "subject": "s", "text": "t", "unsubscribe": {"mode": "managed"}})).await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST, "{}", two.body);
    let odd = app
        .post(
            &path("/messages"),
            json!({"to": ["a@example.org"], "subject": "s", "text": "t", "unsubscribe": {"mode": "manual"}}),
        )
        .await;
    assert_eq!(odd.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", odd.body);

    // GET is a page with a button (a prefetch unsubscribes nobody); POST unsubscribes.
    let http = reqwest::Client::new();
    let page = http.get(&url).send().await.expect("GET");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("<form method=\"post\">"));
    assert_eq!(app.get(&path("/suppressions")).await.body["items"], json!([]));
    let one_click = http.post(&url).form(&[("List-Unsubscribe", "One-Click")]).send().await.expect("POST");
    assert_eq!(one_click.status(), StatusCode::OK);
    let list = app.get(&path("/suppressions")).await;
    assert_eq!(list.body["items"][0]["address"], "ann@example.org", "{}", list.body);
    assert_eq!(list.body["items"][0]["source"], "unsubscribe");
    let events = app.get("/v1/events?type=agent.suppression_added").await;
    assert_eq!(events.body["items"][0]["data"]["source"], "unsubscribe");
    let again =
        app.post(&path("/messages"), json!({"to": ["ann@example.org"], "subject": "s", "text": "t"})).await;
    assert_eq!(again.code(), "recipient_suppressed");
    // A forged link is refused.
    let forged = http.post(format!("{url}x")).send().await.expect("POST");
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    // A held managed send is accepted, and keeps its unsubscribe for approval.
    let gate = json!({"inbound": {"gate": {}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}}, "holds": {}});
    assert_eq!(
        app.call(Method::PUT, &path("/protection"), Some(&app.key), Some(gate)).await.status,
        StatusCode::OK
    );
    let held = app.post(&path("/messages"), json!({"to": ["dan@example.org"], "subject": "s", "text": "t", "unsubscribe": {"mode": "managed"}})).await;
    assert_eq!(held.body["status"], "pending_review", "{}", held.body);
    let held_id = held.body["message_id"].as_str().expect("id");
    let approved = app.post(&format!("/v1/reviews/{held_id}/approve"), json!({})).await;
    assert_eq!(approved.status, StatusCode::ACCEPTED, "{}", approved.body);
    let raw = crate::outbound::raw_of(&app.get(&path(&format!("/messages/{held_id}"))).await.body);
    assert!(raw.contains("List-Unsubscribe: <"), "{raw}");
}

/// A send to `to` that the test marks `sent`, as the submitter would after Postfix took it.
async fn sent_to(app: &TestApp, to: &str) -> String {
    let r = app.post(&path("/messages"), json!({"to": [to], "subject": "s", "text": "t"})).await;
    let id = r.body["message_id"].as_str().expect("id").to_owned();
    app.mark_sent(&id).await;
    id
}

/// The DSN Postfix writes when it gives up on `rcpt` after retrying (a 4.x.x status).
fn soft_dsn(rcpt: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@x.test\r\nTo: bounce@agents.test\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\ngave up\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.test\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 4.2.2\r\n\
         Diagnostic-Code: smtp; 452 4.2.2 mailbox full\r\n\r\n--B--\r\n"
    )
    .into_bytes()
}

/// `suppress_after_soft_bounces`: an address is suppressed once an agent's last N messages to
/// it all soft-bounced; a message in between that did not bounce breaks the run, a repeated
/// DSN counts once, and lifting the suppression starts over.
async fn a_run_of_soft_bounces_suppresses(app: &TestApp) {
    use postagent_core::mail::outbound::bounce::{self, BouncePolicy};
    use postagent_core::time::Timestamp;
    setup(app).await;
    const FULL: &str = "full_box@example.org";
    let policy = BouncePolicy { suppress_after_soft: 2 };
    let bounce = |id: String, policy: BouncePolicy| async move {
        bounce::apply(app.store.as_ref(), &id, &soft_dsn(FULL), policy, Timestamp::now())
            .await
            .expect("apply")
    };
    let listed = || async {
        let list = app.get("/v1/account/suppressions").await.body;
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|s| s["address"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let first = sent_to(app, FULL).await;
    bounce(first.clone(), policy).await;
    bounce(first, policy).await;
    assert!(listed().await.is_empty(), "one soft bounce, reported twice, is one");
    let delivered = sent_to(app, FULL).await;
    let third = sent_to(app, FULL).await;
    bounce(third, policy).await;
    assert!(listed().await.is_empty(), "{delivered} got through in between: no run");
    let fourth = sent_to(app, FULL).await;
    bounce(fourth.clone(), BouncePolicy::default()).await;
    assert!(listed().await.is_empty(), "off by default");
    // Mail to an address that differs only where LIKE has a wildcard is not mail to this one,
    // so it does not break the run.
    sent_to(app, "fullxbox@example.org").await;
    let fifth = sent_to(app, FULL).await;
    bounce(fifth.clone(), policy).await;
    let list = app.get("/v1/account/suppressions").await.body;
    assert_eq!(list["items"][0]["address"], FULL, "{list}");
    assert_eq!(list["items"][0]["source"], "bounce");
    assert_eq!(list["items"][0]["source_message_id"], fifth.as_str());
    // The run is the third, fourth (recorded while the limit was off) and fifth messages.
    let reason = list["items"][0]["reason"].as_str().expect("reason");
    assert!(reason.starts_with("3 consecutive soft bounces") && reason.contains("4.2.2"), "{reason}");
    let send = app.post(&path("/messages"), json!({"to": [FULL], "subject": "s", "text": "t"})).await;
    assert_eq!(send.code(), "recipient_suppressed", "{}", send.body);
    // Lifting it forgets the run: the next soft bounce is the first of a new one.
    let r = app.delete(&format!("/v1/account/suppressions/{}?confirm=DELETE", enc(FULL))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sixth = sent_to(app, FULL).await;
    bounce(sixth, policy).await;
    assert!(listed().await.is_empty(), "a new run starts after the suppression was lifted");
    // DSNs come back in any order: the newer message's first, then the older one's, still
    // make a run of two.
    const SLOW: &str = "slow_box@example.org";
    let (older, newer) = (sent_to(app, SLOW).await, sent_to(app, SLOW).await);
    let soft = |id: String| async move {
        bounce::apply(app.store.as_ref(), &id, &soft_dsn(SLOW), policy, Timestamp::now())
            .await
            .expect("apply")
    };
    soft(newer).await;
    assert_eq!(listed().await, Vec::<String>::new());
    soft(older).await;
    assert_eq!(listed().await, [SLOW], "the run around the older message counts the newer one");
}
