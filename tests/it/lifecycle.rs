//! The lifecycle ledger and the metrics read from it, on SQLite and PostgreSQL: the rows each
//! path writes with its state change, the events that carry them, paging, tenant isolation,
//! and the metrics' counters, rates, groups, days and window checks.

use crate::common;

use common::{TestApp, enc};
use postagent_core::mail::outbound::bounce::{self, BouncePolicy};
use postagent_core::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    inbound_mail_starts_its_ledger_at_the_queue_entry,
    sends_holds_and_self_sends_record_their_stages,
    feedback_adds_per_recipient_rows_and_metrics_count_messages
);

const BOT: &str = "bot@agents.test";

fn path(rest: &str) -> String {
    format!("/v1/agents/{}{rest}", enc(BOT))
}

async fn ledger(app: &TestApp, id: &str) -> Vec<Value> {
    let r = app.get(&path(&format!("/messages/{id}/lifecycle"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["next_cursor"].is_null(), "{}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

fn codes(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["reason_code"].as_str().unwrap_or("")).collect()
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": BOT})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn inbound_mail_starts_its_ledger_at_the_queue_entry(app: &TestApp) {
    setup(app).await;
    let raw = b"From: alice@example.org\r\nTo: bot@agents.test\r\nSubject: hi\r\nMessage-ID: <l1@example.org>\r\n\r\nhello\r\n";
    let id = app.deliver(BOT, raw, true).await;
    let rows = ledger(app, &id).await;
    assert_eq!(
        codes(&rows),
        ["acceptance.inbound_smtp", "authentication.dmarc_pass", "queue.inbound_processing"]
    );
    let first = &rows[0];
    assert_eq!(first["stage"], "accepted");
    assert_eq!(first["outcome"], "accepted");
    assert_eq!(first["direction"], "inbound");
    assert_eq!(first["reconstructed"], false);
    assert_eq!(first["retryable"], false);
    assert!(first.get("recipient").is_none(), "only per-recipient rows name one: {first}");
    assert!(first["correlation_ids"]["source_id"].is_string(), "{first}");
    assert_eq!(rows[1]["evidence"]["authentication"]["dmarc"]["status"], "pass", "{}", rows[1]);
    // Ascending (occurred_at, id), one page at a time.
    let one = app.get(&path(&format!("/messages/{id}/lifecycle?limit=1"))).await;
    assert_eq!(one.body["items"][0]["id"], rows[0]["id"]);
    let cursor = one.body["next_cursor"].as_str().expect("more");
    let two = app.get(&path(&format!("/messages/{id}/lifecycle?limit=2&cursor={}", enc(cursor)))).await;
    assert_eq!(two.body["items"].as_array().map(Vec::len), Some(2), "{}", two.body);
    assert_eq!(two.body["items"][1]["id"], rows[2]["id"]);
    // The email.received event carries the same rows.
    let events = app.get(&format!("/v1/events?message_id={id}")).await;
    let received =
        events.body["items"].as_array().expect("items").iter().find(|e| e["type"] == "email.received");
    let carried = &received.expect("email.received")["data"]["lifecycle_transitions"];
    assert_eq!(carried.as_array().expect("rows").len(), 3);
    assert_eq!(carried[0]["id"], rows[0]["id"]);
    // Unsigned mail verified nothing.
    let unsigned = app.deliver(BOT, b"From: x@example.org\r\nSubject: u\r\n\r\nx\r\n", false).await;
    assert_eq!(codes(&ledger(app, &unsigned).await)[1], "authentication.dmarc_none");
    // Another account's key sees no such message; a bad cursor is refused.
    let other = app.other_account().await;
    let r =
        app.call(reqwest::Method::GET, &path(&format!("/messages/{id}/lifecycle")), Some(&other), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app.get(&path(&format!("/messages/{id}/lifecycle?cursor=forged"))).await;
    assert_eq!(r.code(), "invalid_cursor");
}

async fn sends_holds_and_self_sends_record_their_stages(app: &TestApp) {
    setup(app).await;
    let sent =
        app.post(&path("/messages"), json!({"to": ["x@example.com"], "subject": "s", "text": "t"})).await;
    let id = sent.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(codes(&ledger(app, &id).await), ["acceptance.outbound_api", "queue.outbound_submission"]);

    // Loopback: the sent copy is accepted, queued and delivered locally; its twin is
    // accepted locally and queued for the agent.
    let own = app.post(&path("/messages"), json!({"to": [BOT], "subject": "me", "text": "t"})).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let own = own.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(
        codes(&ledger(app, &own).await),
        ["acceptance.outbound_api", "queue.outbound_submission", "submission.local_loopback_accepted"]
    );
    let inbox = app.get(&path("/messages")).await;
    let twin = inbox.body["items"][0]["id"].as_str().expect("twin").to_owned();
    assert_ne!(twin, own);
    assert_eq!(codes(&ledger(app, &twin).await), ["acceptance.local_loopback", "queue.inbound_processing"]);

    // A held send has exactly its acceptance and the hold (the contract's scenario), then the
    // decision and the queue when approved.
    let r = app
        .call(
            reqwest::Method::PUT,
            &path("/protection"),
            Some(&app.key),
            Some(json!({
                "inbound": {"gate": {"policy": "open"}, "scan": {}},
                "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
                "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let held =
        app.post(&path("/messages"), json!({"to": ["y@example.com"], "subject": "h", "text": "t"})).await;
    assert_eq!(held.body["status"], "pending_review", "{}", held.body);
    let held = held.body["message_id"].as_str().expect("id").to_owned();
    let rows = ledger(app, &held).await;
    assert_eq!(codes(&rows), ["acceptance.outbound_api", "review.hold_created"]);
    assert_eq!(rows[1]["outcome"], "pending");
    let r = app.post(&format!("/v1/reviews/{held}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(
        codes(&ledger(app, &held).await),
        ["acceptance.outbound_api", "review.hold_created", "review.approved", "queue.outbound_submission"]
    );
}

fn dsn(id_rcpt: &str, action: &str, status: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@example.com\r\nTo: bounce@agents.test\r\nSubject: report\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nreport\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; {id_rcpt}\r\nAction: {action}\r\n\
         Status: {status}\r\nDiagnostic-Code: smtp; {status} test\r\n\r\n--b--\r\n"
    )
    .into_bytes()
}

async fn feedback_adds_per_recipient_rows_and_metrics_count_messages(app: &TestApp) {
    setup(app).await;
    let mut ids = Vec::new();
    for rcpt in ["ok@example.com", "gone@example.com", "ok2@example.com"] {
        let r = app.post(&path("/messages"), json!({"to": [rcpt], "subject": "s", "text": "t"})).await;
        let id = r.body["message_id"].as_str().expect("id").to_owned();
        app.mark_sent(&id).await;
        ids.push(id);
    }
    let now = Timestamp::now();
    let store = app.store.as_ref();
    let report = dsn("ok@example.com", "delivered", "2.0.0");
    let done = bounce::apply(store, &ids[0], &report, BouncePolicy::default(), now).await.expect("dsn");
    assert!(matches!(done, bounce::BounceOutcome::NoFailure { .. }), "{done:?}");
    let report = dsn("gone@example.com", "failed", "5.1.1");
    let done = bounce::apply(store, &ids[1], &report, BouncePolicy::default(), now).await.expect("dsn");
    assert!(matches!(done, bounce::BounceOutcome::Bounced { .. }), "{done:?}");
    let rows = ledger(app, &ids[0]).await;
    let delivered = rows.last().expect("row");
    assert_eq!(delivered["reason_code"], "delivery.recipient_server_accepted");
    assert_eq!(delivered["recipient"], "ok@example.com");
    // The same report again records nothing twice.
    let again = bounce::apply(store, &ids[1], &report, BouncePolicy::default(), Timestamp::now()).await;
    assert!(again.is_ok());
    let rows = ledger(app, &ids[1]).await;
    assert_eq!(&codes(&rows)[2..], ["delivery.permanent_bounce", "suppression.hard_bounce_applied"]);
    assert_eq!(rows[3]["recipient"], "gone@example.com");
    // The suppression's event carries its row; the bounce's event carries its own.
    let events = app.get(&format!("/v1/events?message_id={}", ids[1])).await;
    let bounced =
        events.body["items"].as_array().expect("items").iter().find(|e| e["type"] == "email.bounced");
    assert_eq!(bounced.expect("bounced")["data"]["lifecycle_transitions"][0]["id"], rows[2]["id"]);

    let inbound = app.deliver(BOT, b"From: alice@example.org\r\nSubject: in\r\n\r\nx\r\n", true).await;
    assert!(!inbound.is_empty());
    let m = app.get(&path("/metrics")).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    let s = &m.body["summary"];
    assert_eq!(
        (s["accepted"].as_i64(), s["delivered"].as_i64(), s["bounced_hard"].as_i64()),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(
        (s["received"].as_i64(), s["dmarc_pass"].as_i64(), s["loopback"].as_i64()),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(m.body["messages_in_window"], 4);
    assert_eq!(m.body["messages_with_lifecycle"], 4);
    assert_eq!(m.body["agent_email"], BOT);
    // delivered / (accepted - loopback); no submission was recorded (these apps run no
    // submitter), so the bounce rate has no denominator: null, never 0.
    assert!((m.body["rates"]["delivered_rate"].as_f64().expect("rate") - 1.0 / 3.0).abs() < 1e-9);
    assert!(m.body["rates"]["bounce_rate"].is_null(), "{}", m.body["rates"]);
    let counters = m.body["counters"].as_array().expect("counters");
    let queued = counters.iter().find(|c| c["reason_code"] == "queue.outbound_submission").expect("queued");
    assert_eq!((queued["messages"].as_i64(), queued["stage"].as_str()), (Some(3), Some("queued")));

    let all = app.get("/v1/metrics?group_by=agent&bucket=day").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["summary"], m.body["summary"]);
    assert_eq!(all.body["agents"][0]["agent_email"], BOT);
    assert_eq!(all.body["agents_truncated"], false);
    let days = all.body["buckets"].as_array().expect("buckets");
    assert!(days.len() >= 30, "every day of the default 30-day window: {}", days.len());
    let total: i64 = days.iter().map(|d| d["summary"]["accepted"].as_i64().unwrap_or(0)).sum();
    assert_eq!(total, 3, "the days sum to the window");
    assert_eq!(all.body["webhooks"]["deliveries"], 0);
    assert!(all.body["webhooks"]["success_rate"].is_null());

    // A window of whole days reads the daily rollups alone; it counts what the rows do.
    let day = postagent_core::time::DAY_MICROS;
    let today = Timestamp::from_micros(Timestamp::now().as_micros().div_euclid(day) * day);
    let whole = format!("start={}&end={}", today.to_rfc3339(), today.plus_micros(day).to_rfc3339());
    let rolled = app.get(&path(&format!("/metrics?{whole}"))).await;
    assert_eq!(rolled.body["summary"], m.body["summary"], "{}", rolled.body);
    assert_eq!(rolled.body["counters"], m.body["counters"]);
    assert_eq!(rolled.body["messages_in_window"], 4);
    let all_rolled = app.get(&format!("/v1/metrics?group_by=agent&bucket=day&{whole}")).await;
    assert_eq!(all_rolled.body["agents"][0]["summary"], m.body["summary"]);
    assert_eq!(all_rolled.body["buckets"].as_array().map(Vec::len), Some(1));
    // Rebuilt from the ledger, the rollups hold the same.
    postagent_core::store::MetricsStore::rebuild_rollups(app.store.as_ref()).await.expect("rebuild");
    assert_eq!(app.get(&path(&format!("/metrics?{whole}"))).await.body["summary"], m.body["summary"]);

    // A window before any of it is empty; bad windows are refused.
    let past =
        app.get(&path("/metrics?start=2020-01-01T00:00:00.000000%2B0000&end=2020-01-02T00:00:00")).await;
    assert_eq!(past.status, StatusCode::OK, "{}", past.body);
    assert_eq!(past.body["summary"]["accepted"], 0);
    for bad in [
        "?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
        "?start=2020-01-01T00:00:00Z&end=2026-01-01T00:00:00Z",
    ] {
        assert_eq!(app.get(&path(&format!("/metrics{bad}"))).await.code(), "invalid_request", "{bad}");
    }
    assert_eq!(app.get("/v1/metrics?bucket=week").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The account view is account scope; an agent key reads its own agent.
    let key = app.agent_key(BOT).await;
    let r = app.call(reqwest::Method::GET, "/v1/metrics", Some(&key), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.call(reqwest::Method::GET, &path("/metrics"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
