//! Webhooks end to end against a real local HTTP receiver: subscriptions, signed deliveries
//! (both schemes), retries with attempt rows, 429/Retry-After, 410, redirects, hangs, the
//! SSRF guard at registration and at connect time, rotation, tests, the event log and
//! redelivery. Mail is filed by the real ingest path (the LMTP server's).

use crate::common;

use common::{Db, TestApp, spawn_app, spawn_app_with, test_webhooks};
use postagent_core::ssrf::WebhookMode;
use postagent_core::webhook_sig;
use postagent_lab::receiver::{Answer, Hit, Receiver, until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const AGENT: &str = "bot@agents.test";
const WAIT: Duration = Duration::from_secs(20);

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: {AGENT}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\n\r\nHello\r\n",
        postagent_core::ids::mint("m", 8)
    )
    .into_bytes()
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": AGENT})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn subscribe(app: &TestApp, url: &str, extra: Value) -> (String, String) {
    let mut body = json!({"url": url, "events": ["email.received"]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = app.post("/v1/webhooks", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.body["id"].as_str().expect("id").to_owned(),
        r.body["signing_secret"].as_str().expect("secret").to_owned(),
    )
}

/// Checks both signature schemes of a received POST against `secrets` (current first).
fn assert_signed(hit: &Hit, secrets: &[&str]) {
    let t: i64 = hit.header("webhook-timestamp").parse().expect("webhook-timestamp");
    let expected = webhook_sig::sign(
        secrets[0],
        secrets.get(1).copied(),
        hit.header("webhook-id"),
        t,
        hit.body.as_bytes(),
    );
    assert_eq!(hit.header("x-e2a-signature"), expected.e2a_signature, "e2a signature");
    assert_eq!(hit.header("webhook-signature"), expected.webhook_signature, "standard signature");
    assert_eq!(hit.header("webhook-id"), hit.json()["id"].as_str().expect("envelope id"));
    assert!(hit.header("x-e2a-signature").starts_with(&format!("t={t},v1=")));
    assert_eq!(hit.header("x-e2a-event-type"), hit.json()["type"].as_str().expect("type"));
    assert_eq!(hit.header("x-e2a-schema-version"), "1");
    assert_eq!(hit.header("content-type"), "application/json");
}

async fn delivery(app: &TestApp, webhook: &str, id: &str) -> Value {
    let r = app.get(&format!("/v1/webhooks/{webhook}/deliveries/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// The only delivery of `webhook`, once it reaches `status` with at least `attempts` tries.
async fn settled(app: &TestApp, webhook: &str, status: &str, attempts: i64) -> Value {
    let id = until("a delivery row", WAIT, || async {
        let r = app.get(&format!("/v1/webhooks/{webhook}/deliveries")).await;
        r.body["items"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    until(&format!("delivery {id} {status} after {attempts} tries"), WAIT, || async {
        let d = delivery(app, webhook, &id).await;
        (d["status"] == status && d["attempts"].as_i64() >= Some(attempts)).then_some(d)
    })
    .await
}

async fn signed_delivery_of_received_mail(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    let (hook, secret) = subscribe(app, &rx.url("/hook"), json!({"description": "inbox"})).await;
    let id = app.deliver(AGENT, &mail("Quarterly plan"), true).await;
    let hits = rx.wait_hits(1, WAIT).await;
    let hit = &hits[0];
    assert_eq!(hit.path, "/hook");
    assert_signed(hit, &[&secret]);
    let env = hit.json();
    assert_eq!(env["type"], "email.received");
    assert_eq!(env["schema_version"], "1");
    assert_eq!(env["data"]["message_id"], id.as_str());
    assert_eq!(env["data"]["subject"], "Quarterly plan");
    assert_eq!(env["data"]["verified_domain"], "example.org");
    // The envelope is the stored event, byte for byte.
    let event = app.get(&format!("/v1/events/{}", env["id"].as_str().expect("id"))).await;
    assert_eq!(event.status, StatusCode::OK, "{}", event.body);
    assert_eq!(event.body["data"], env["data"]);
    assert_eq!(event.body["status"], "processed");
    assert_eq!(event.body["message_id"], id.as_str());
    let d = settled(app, &hook, "delivered", 1).await;
    assert_eq!(d["last_status_code"], 204);
    assert_eq!(d["type"], "email.received");
    assert_eq!(d["attempt_log"].as_array().map(Vec::len), Some(1));
    let event = app.get(&format!("/v1/events/{}", env["id"].as_str().expect("id"))).await;
    assert_eq!(
        event.body["delivery_status"],
        json!({"matched_webhooks": 1, "pending": 0, "delivered": 1, "failed": 0})
    );
    let w = app.get(&format!("/v1/webhooks/{hook}")).await;
    assert!(w.body["last_delivered_at"].is_string(), "{}", w.body);
    assert!(w.body.get("signing_secret").is_none(), "the secret is shown once");
}

async fn retries_until_the_receiver_recovers(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    rx.script(vec![Answer::Status(500), Answer::Status(503), Answer::Status(200)]);
    let (hook, secret) = subscribe(app, &rx.url("/flaky"), json!({})).await;
    app.deliver(AGENT, &mail("flaky"), true).await;
    let d = settled(app, &hook, "delivered", 3).await;
    let log = d["attempt_log"].as_array().expect("attempt_log");
    let codes: Vec<i64> = log.iter().map(|a| a["status_code"].as_i64().expect("code")).collect();
    assert_eq!(codes, [500, 503, 200]);
    assert_eq!(log[0]["error"], "HTTP 500");
    assert_eq!(log[0]["response_body"], "ok", "the start of the answer is kept");
    assert!(log.iter().all(|a| a["duration_ms"].is_i64()));
    let hits = rx.hits();
    assert_eq!(hits.len(), 3);
    // Every try is the same event, the same bytes, freshly signed.
    assert!(
        hits.iter().all(|h| h.body == hits[0].body && h.header("webhook-id") == hits[0].header("webhook-id"))
    );
    for h in &hits {
        assert_signed(h, &[&secret]);
    }
    // The tries were spaced by the schedule (1 s, jittered by at most 10%).
    let gap = hits[1].at.duration_since(hits[0].at);
    assert!(gap >= Duration::from_millis(850), "retried after {gap:?}");
}

async fn throttled_receivers_are_given_time(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    rx.script(vec![Answer::With(429, vec![("Retry-After".into(), "4".into())]), Answer::Status(429)]);
    let (hook, _) = subscribe(app, &rx.url("/busy"), json!({})).await;
    app.deliver(AGENT, &mail("busy"), true).await;
    let d = settled(app, &hook, "pending", 1).await;
    let first = &d["attempt_log"][0];
    assert_eq!(first["status_code"], 429);
    let tried =
        postagent_core::Timestamp::parse_rfc3339(first["created_at"].as_str().expect("t")).expect("t");
    let next =
        postagent_core::Timestamp::parse_rfc3339(d["next_retry_at"].as_str().expect("next")).expect("next");
    let wait = (next.as_micros() - tried.as_micros()) / 1000;
    // Retry-After 4 s beats the 1 s schedule and the 2 s throttle minimum (capped at 5 s).
    assert!((3_900..=4_100).contains(&wait), "waited {wait} ms after Retry-After: 4");
    let d = settled(app, &hook, "delivered", 3).await;
    let log = d["attempt_log"].as_array().expect("log");
    let t = |i: usize| {
        postagent_core::Timestamp::parse_rfc3339(log[i]["created_at"].as_str().expect("t")).expect("t")
    };
    let second_gap = (t(2).as_micros() - t(1).as_micros()) / 1000;
    assert!(
        second_gap >= 1_900,
        "a 429 without Retry-After waits the throttle minimum (2 s), waited {second_gap} ms"
    );
}

async fn gone_disables_the_webhook(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    rx.script(vec![Answer::Status(410)]);
    let (hook, _) = subscribe(app, &rx.url("/gone"), json!({})).await;
    app.deliver(AGENT, &mail("gone"), true).await;
    let d = settled(app, &hook, "failed", 1).await;
    assert_eq!(d["last_status_code"], 410);
    let w = app.get(&format!("/v1/webhooks/{hook}")).await;
    assert_eq!(w.body["enabled"], false, "{}", w.body);
    assert!(w.body["auto_disabled_at"].is_string());
    // Disabled: no new deliveries; re-enabling right away is the cooldown.
    app.deliver(AGENT, &mail("after gone"), true).await;
    let again = app
        .call(Method::PATCH, &format!("/v1/webhooks/{hook}"), Some(&app.key), Some(json!({"enabled": true})))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.code(), "webhook_cooldown");
    let test = app.post(&format!("/v1/webhooks/{hook}/test"), json!({})).await;
    assert_eq!(test.status, StatusCode::CONFLICT);
    assert_eq!(test.code(), "webhook_disabled");
    assert_eq!(rx.hits().len(), 1, "nothing more was sent to a disabled webhook");
}

async fn redirects_are_not_followed(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    let elsewhere = rx.url("/elsewhere");
    rx.script(vec![Answer::With(302, vec![("Location".into(), elsewhere.clone())]), Answer::Status(204)]);
    let (hook, _) = subscribe(app, &rx.url("/moved"), json!({})).await;
    app.deliver(AGENT, &mail("moved"), true).await;
    let d = settled(app, &hook, "delivered", 2).await;
    assert_eq!(d["attempt_log"][0]["status_code"], 302);
    assert!(d["attempt_log"][0]["error"].as_str().is_some_and(|e| e.contains("not followed")), "{d}");
    assert!(rx.hits().iter().all(|h| h.path == "/moved"), "the Location was never requested");
}

async fn a_hanging_receiver_times_out(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    rx.script(vec![Answer::Hang]);
    let (hook, _) = subscribe(app, &rx.url("/slow"), json!({})).await;
    app.deliver(AGENT, &mail("slow"), true).await;
    let d = settled(app, &hook, "delivered", 2).await;
    let first = &d["attempt_log"][0];
    assert!(first["status_code"].is_null());
    assert!(first["error"].as_str().is_some_and(|e| e.contains("no answer")), "{d}");
    assert!(
        first["duration_ms"].as_i64().is_some_and(|ms| (1_900..6_000).contains(&ms)),
        "timeout is 2 s: {first}"
    );
}

async fn rotation_signs_with_both_secrets(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    let (hook, old) = subscribe(app, &rx.url("/rot"), json!({})).await;
    let r = app.post(&format!("/v1/webhooks/{hook}/rotate-secret"), Value::Null).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.body["signing_secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    let until_t =
        postagent_core::Timestamp::parse_rfc3339(r.body["previous_secret_expires_at"].as_str().expect("t"))
            .expect("t");
    let hours = (until_t.as_micros() - postagent_core::Timestamp::now().as_micros()) / 3_600_000_000;
    assert!((23..=24).contains(&hours), "24 h grace, got {hours} h");
    app.deliver(AGENT, &mail("rotated"), true).await;
    let hits = rx.wait_hits(1, WAIT).await;
    assert_signed(&hits[0], &[&new, &old]);
    let sig = hits[0].header("x-e2a-signature");
    assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
}

async fn filters_and_test_deliveries(app: &TestApp) {
    setup(app).await;
    let other = app.post("/v1/agents", json!({"email": "other@agents.test"})).await;
    assert_eq!(other.status, StatusCode::CREATED);
    let rx = Receiver::start().await.expect("receiver");
    let (only_other, _) =
        subscribe(app, &rx.url("/other"), json!({"filters": {"agent_emails": ["other@agents.test"]}})).await;
    let (sent_only, _) = subscribe(app, &rx.url("/sent"), json!({"events": ["email.sent"]})).await;
    let id = app.deliver(AGENT, &mail("filtered"), true).await;
    let events = app.get(&format!("/v1/events?message_id={id}")).await;
    assert_eq!(events.body["items"][0]["status"], "no_match", "{}", events.body);
    let t = app
        .post(&format!("/v1/webhooks/{sent_only}/test"), json!({"type": "email.sent", "data": {"hello": 1}}))
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let hits = rx.wait_hits(1, WAIT).await;
    assert_eq!(hits.len(), 1, "only the test delivery: {hits:?}");
    assert_eq!(hits[0].path, "/sent");
    assert_eq!(hits[0].json()["type"], "email.sent");
    assert_eq!(hits[0].json()["data"], json!({"hello": 1}));
    let listed = app.get(&format!("/v1/webhooks/{sent_only}/deliveries")).await;
    assert_eq!(listed.body["items"][0]["id"], t.body["delivery_id"]);
    // Test events are not part of the event log.
    let all = app.get("/v1/events").await;
    assert!(all.body["items"].as_array().expect("items").iter().all(|e| e["type"] == "email.received"));
    // The event list is an enum of the schema: an unknown type is 422 at its index, on
    // create and update alike.
    let r =
        app.post("/v1/webhooks", json!({"url": rx.url("/x"), "events": ["email.sent", "email.nope"]})).await;
    assert_eq!(
        (r.status, r.code(), r.locations()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", vec!["body.events[1]".to_owned()])
    );
    let id = only_other.clone();
    let r = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&app.key),
            Some(json!({"events": ["email.nope"]})),
        )
        .await;
    assert_eq!(
        (r.status, r.locations()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["body.events[0]".to_owned()])
    );
    // The handler's checks are 400, as e2a words them.
    for body in [
        json!({"url": rx.url("/x"), "events": []}),
        json!({"url": rx.url("/x"), "events": ["email.sent"], "description": "a\nb"}),
    ] {
        let r = app.post("/v1/webhooks", body.clone()).await;
        let want = if body["events"] == json!([]) {
            "events must be a non-empty array"
        } else {
            "description must not contain CR or LF"
        };
        assert_eq!(r.error(), (400, "invalid_request".to_owned(), want.to_owned()), "{body}");
    }
    let r = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&app.key),
            Some(json!({"description": "x\ry"})),
        )
        .await;
    assert_eq!(r.error().0, 400);
    // Bad filters are refused with the contract's code.
    for (body, code) in [
        (
            json!({"url": rx.url("/x"), "events": ["email.sent"], "filters": {"agent_emails": ["nobody@agents.test"]}}),
            "invalid_filter",
        ),
        (
            json!({"url": rx.url("/x"), "events": ["email.sent"], "filters": {"labels": ["bad label"]}}),
            "invalid_filter",
        ),
    ] {
        let r = app.post("/v1/webhooks", body).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, code), "{}", r.body);
    }
    let _ = only_other;
}

async fn events_log_and_redelivery(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    let (a, _) = subscribe(app, &rx.url("/a"), json!({})).await;
    let (b, _) = subscribe(app, &rx.url("/b"), json!({})).await;
    app.deliver(AGENT, &mail("one"), true).await;
    app.deliver(AGENT, &mail("two"), true).await;
    rx.wait_hits(4, WAIT).await;
    let page = app.get("/v1/events?limit=1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["items"][0]["data"]["subject"], "one", "the log walks forward in time");
    let cursor = page.body["next_cursor"].as_str().expect("cursor");
    let next = app.get(&format!("/v1/events?limit=1&cursor={cursor}")).await;
    assert_eq!(next.body["items"][0]["data"]["subject"], "two");
    assert!(next.body["next_cursor"].is_null());
    let tampered = app.get(&format!("/v1/events?limit=1&type=email.sent&cursor={cursor}")).await;
    assert_eq!(tampered.code(), "invalid_cursor", "filters are pinned in the cursor");
    let event_id = page.body["items"][0]["id"].as_str().expect("id").to_owned();
    // One webhook: the same event id and bytes again.
    let one = app.post(&format!("/v1/events/{event_id}/redeliver"), json!({"webhook_id": a})).await;
    assert_eq!(one.status, StatusCode::ACCEPTED, "{}", one.body);
    assert_eq!(one.body["status"], "pending");
    let again = app.post(&format!("/v1/events/{event_id}/redeliver"), json!({"webhook_id": a})).await;
    assert_eq!(again.body["delivery_id"], one.body["delivery_id"], "asking twice schedules one replay");
    let hits = rx.wait_hits(5, WAIT).await;
    let replay = hits.last().expect("replay");
    assert_eq!(replay.path, "/a");
    assert_eq!(replay.header("webhook-id"), event_id);
    // The worker delivers concurrently: the first POST of this event to /a, whichever came first.
    let first = hits.iter().find(|h| h.path == "/a" && h.header("webhook-id") == event_id).expect("first");
    assert_eq!(replay.body, first.body);
    // Every webhook it matched.
    let all = app.post(&format!("/v1/events/{event_id}/redeliver"), json!({})).await;
    assert_eq!(all.status, StatusCode::ACCEPTED);
    assert_eq!(all.body["status"], "scheduled");
    let ids: Vec<&str> = all.body["deliveries"]
        .as_array()
        .expect("d")
        .iter()
        .filter_map(|d| d["webhook_id"].as_str())
        .collect();
    assert!(ids.contains(&a.as_str()) && ids.contains(&b.as_str()), "{}", all.body);
    // A webhook that never matched the event, and unknown ids.
    let rx2 = Receiver::start().await.expect("receiver");
    let (late, _) = subscribe(app, &rx2.url("/late"), json!({})).await;
    let never = app.post(&format!("/v1/events/{event_id}/redeliver"), json!({"webhook_id": late})).await;
    assert_eq!((never.status, never.code()), (StatusCode::CONFLICT, "conflict"));
    let missing = app.get("/v1/events/evt_00000000000000000000000000000000").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // Another account sees none of it.
    let intruder = app.other_account().await;
    let hidden = app.call(Method::GET, &format!("/v1/events/{event_id}"), Some(&intruder), None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let hidden = app.call(Method::GET, &format!("/v1/webhooks/{a}"), Some(&intruder), None).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

async fn subscription_lifecycle(app: &TestApp) {
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    let (hook, _) = subscribe(app, &rx.url("/life"), json!({})).await;
    let list = app.get("/v1/webhooks").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["items"][0]["filters"], json!({}), "empty filters are omitted");
    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{hook}"),
            Some(&app.key),
            Some(json!({"enabled": false, "events": ["email.received", "email.sent"], "description": "paused"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["events"], json!(["email.received", "email.sent"]));
    app.deliver(AGENT, &mail("while paused"), true).await;
    let on = app
        .call(Method::PATCH, &format!("/v1/webhooks/{hook}"), Some(&app.key), Some(json!({"enabled": true})))
        .await;
    assert_eq!(on.body["enabled"], true, "a manual disable has no cooldown");
    let unknown = app
        .call(Method::PATCH, &format!("/v1/webhooks/{hook}"), Some(&app.key), Some(json!({"secret": "x"})))
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let no_confirm = app.delete(&format!("/v1/webhooks/{hook}")).await;
    assert_eq!(no_confirm.status, StatusCode::UNPROCESSABLE_ENTITY);
    let deleted = app.delete(&format!("/v1/webhooks/{hook}?confirm=DELETE")).await;
    assert_eq!(deleted.body, json!({"deleted": true, "id": hook}));
    assert_eq!(app.get(&format!("/v1/webhooks/{hook}")).await.status, StatusCode::NOT_FOUND);
    assert!(rx.hits().is_empty(), "nothing was delivered while disabled, and the webhook is gone");
    let agent_key = app.agent_key(AGENT).await;
    let forbidden = app.call(Method::GET, "/v1/webhooks", Some(&agent_key), None).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}

on_both_backends!(
    signed_delivery_of_received_mail,
    retries_until_the_receiver_recovers,
    throttled_receivers_are_given_time,
    gone_disables_the_webhook,
    redirects_are_not_followed,
    a_hanging_receiver_times_out,
    rotation_signs_with_both_secrets,
    filters_and_test_deliveries,
    events_log_and_redelivery,
    subscription_lifecycle,
    secrets_are_sealed_at_rest_and_old_rows_migrated,
);

/// The database keeps only sealed secrets: a subscription's secret is never in its row, and
/// a row written in the clear (before sealing) is sealed in place at start and still signs.
async fn secrets_are_sealed_at_rest_and_old_rows_migrated(app: &TestApp) {
    use postagent_core::store::WebhookStore as _;
    setup(app).await;
    let rx = Receiver::start().await.expect("receiver");
    let (id, secret) = subscribe(app, &rx.url("/sealed"), json!({})).await;
    let account = app.account_id().await;
    let row = app.store.get_webhook(&account, &id).await.expect("query").expect("row");
    assert!(!row.secret.contains(&secret[6..]) && row.secret.starts_with("sealed:v1:"), "{}", row.secret);
    // A row as an older postagent wrote it: the secret in the clear.
    let plain = webhook_sig::mint_secret();
    assert!(
        app.store
            .replace_webhook_secrets(&id, (row.secret.as_str(), None), (plain.as_str(), None))
            .await
            .expect("write plain")
    );
    let deployment = postagent_core::secret::Secret::new(vec![42; 32]);
    let sealed =
        postagent_core::service::seal_webhook_secrets(app.store.as_ref(), &deployment).await.expect("seal");
    assert!(sealed >= 1);
    let row = app.store.get_webhook(&account, &id).await.expect("query").expect("row");
    assert!(row.secret.starts_with("sealed:v1:") && !row.secret.contains(&plain[6..]), "{}", row.secret);
    assert_eq!(
        postagent_core::service::seal_webhook_secrets(app.store.as_ref(), &deployment).await.expect("again"),
        0
    );
    // It still signs with the same secret.
    app.deliver(AGENT, &mail("sealed"), true).await;
    let hit = rx.wait_hits(1, WAIT).await.into_iter().next().expect("hit");
    let header = hit.header("x-e2a-signature");
    let t: i64 =
        header.split(',').next().and_then(|p| p.strip_prefix("t=")).and_then(|t| t.parse().ok()).expect("t");
    assert!(header.contains(&webhook_sig::e2a_mac(&plain, t, hit.body.as_bytes())), "{header}");
}

/// A production-mode app: HTTPS only, public addresses only.
async fn production() -> TestApp {
    let mut settings = test_webhooks();
    settings.mode = WebhookMode::Production;
    spawn_app_with(Db::Sqlite, settings, None).await.expect("app")
}

#[tokio::test]
async fn ssrf_guard_at_registration() {
    let app = production().await;
    setup(&app).await;
    let names = [
        ("loopback.hooks.test", "127.0.0.1"),
        ("private10.hooks.test", "10.1.2.3"),
        ("private172.hooks.test", "172.16.5.5"),
        ("private192.hooks.test", "192.168.0.10"),
        ("metadata.hooks.test", "169.254.169.254"),
        ("cgnat.hooks.test", "100.64.1.1"),
        ("multicast.hooks.test", "224.0.0.251"),
        ("unspecified.hooks.test", "0.0.0.0"),
        ("reserved.hooks.test", "240.0.0.1"),
    ];
    for (name, ip) in names {
        app.dns.add_a(name, ip.parse().expect("ip"));
    }
    app.dns.add_aaaa("ula.hooks.test", "fd00::1".parse().expect("ip"));
    app.dns.add_aaaa("linklocal6.hooks.test", "fe80::1".parse().expect("ip"));
    app.dns.add_aaaa("loopback6.hooks.test", "::1".parse().expect("ip"));
    // One bad address among good ones refuses the name.
    app.dns.add_a("mixed.hooks.test", "93.184.216.34".parse().expect("ip"));
    app.dns.add_a("mixed.hooks.test", "10.0.0.7".parse().expect("ip"));
    app.dns.add_a("public.hooks.test", "93.184.216.34".parse().expect("ip"));
    let mut refused: Vec<String> = names.iter().map(|(n, _)| format!("https://{n}/hook")).collect();
    refused.extend(
        [
            "https://ula.hooks.test/",
            "https://linklocal6.hooks.test/",
            "https://loopback6.hooks.test/",
            "https://mixed.hooks.test/",
            "https://localhost/hook",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://93.184.216.34/hook",
            "https://2130706433/hook",
            "http://public.hooks.test/hook",
            "https://nxdomain.hooks.test/hook",
            "https://user:pw@public.hooks.test/hook",
            "ftp://public.hooks.test/",
        ]
        .map(String::from),
    );
    for url in &refused {
        let r = app.post("/v1/webhooks", json!({"url": url, "events": ["email.received"]})).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_webhook_url"),
            "{url}: {}",
            r.body
        );
    }
    let ok = app
        .post("/v1/webhooks", json!({"url": "https://public.hooks.test/hook", "events": ["email.received"]}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // A PATCH goes through the same guard.
    let id = ok.body["id"].as_str().expect("id");
    let p = app
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&app.key),
            Some(json!({"url": "https://metadata.hooks.test/"})),
        )
        .await;
    assert_eq!(p.code(), "invalid_webhook_url");
}

#[tokio::test]
async fn dns_rebinding_is_refused_at_connect_time() {
    let app = production().await;
    setup(&app).await;
    // Public when registered...
    app.dns.add_a("rebind.hooks.test", "93.184.216.34".parse().expect("ip"));
    let r = app
        .post("/v1/webhooks", json!({"url": "https://rebind.hooks.test/hook", "events": ["email.received"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let hook = r.body["id"].as_str().expect("id").to_owned();
    // ...loopback when the worker connects.
    app.dns.clear("rebind.hooks.test");
    app.dns.add_a("rebind.hooks.test", "127.0.0.1".parse().expect("ip"));
    app.deliver(AGENT, &mail("rebind"), true).await;
    let d = settled(&app, &hook, "pending", 1).await;
    let err = d["attempt_log"][0]["error"].as_str().expect("error").to_owned();
    assert!(err.contains("127.0.0.1") && err.contains("loopback"), "{err}");
    assert!(d["attempt_log"][0]["status_code"].is_null(), "no connection was made");
}

#[tokio::test]
async fn development_mode_still_refuses_internal_ranges() {
    let app = spawn_app(Db::Sqlite).await.expect("app");
    setup(&app).await;
    app.dns.add_a("internal.hooks.test", "10.9.9.9".parse().expect("ip"));
    for url in ["http://internal.hooks.test/", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/"]
    {
        let r = app.post("/v1/webhooks", json!({"url": url, "events": ["email.received"]})).await;
        assert_eq!(r.code(), "invalid_webhook_url", "{url}");
    }
    let ok =
        app.post("/v1/webhooks", json!({"url": "http://localhost:9/x", "events": ["email.received"]})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "development mode allows loopback receivers: {}", ok.body);
}

#[tokio::test]
async fn auto_disable_after_the_failure_window() {
    let mut settings = test_webhooks();
    settings.schedule = vec![Duration::from_millis(200); 10];
    settings.throttle_delay = Duration::from_millis(200);
    settings.disable_after = Duration::ZERO;
    settings.disable_min_failures = 3;
    let app = spawn_app_with(Db::Sqlite, settings, None).await.expect("app");
    setup(&app).await;
    let rx = Receiver::start().await.expect("receiver");
    rx.script(vec![Answer::Status(500); 20]);
    let (hook, _) = subscribe(&app, &rx.url("/down"), json!({})).await;
    app.deliver(AGENT, &mail("down"), true).await;
    let w = until("the webhook to be disabled", WAIT, || async {
        let w = app.get(&format!("/v1/webhooks/{hook}")).await;
        (w.body["enabled"] == false).then_some(w.body)
    })
    .await;
    assert!(w["auto_disabled_at"].is_string());
    assert!(w["auto_disabled_reason"].as_str().is_some_and(|r| r.contains("failing")), "{w}");
    assert_eq!(rx.hits().len(), 3, "disabled after the third failure");
}
