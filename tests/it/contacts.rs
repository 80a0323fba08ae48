//! Contacts and outreach on SQLite and PostgreSQL: canonical addresses, metadata bounds,
//! `If-Match`, imports with per-row results and their reversal, and the outreach facts
//! derived from real mail.

use crate::common;

use common::{TestApp, enc};
use reqwest::header::{ETAG, HeaderValue, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    contacts_are_keyed_by_canonical_address,
    imports_report_every_row_and_reverse,
    outreach_derives_its_facts_from_mail
);

const BOT: &str = "bot@agents.test";

/// A request with an `If-Match`.
async fn guarded(
    app: &TestApp,
    method: Method,
    path: &str,
    tag: &str,
    body: Value,
) -> (StatusCode, Value, Option<String>) {
    let res = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header(IF_MATCH, HeaderValue::from_str(tag).expect("tag"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = res.status();
    let etag = res.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, res.json().await.unwrap_or(Value::Null), etag)
}

async fn contacts_are_keyed_by_canonical_address(app: &TestApp) {
    let r = app
        .post(
            "/v1/contacts",
            json!({"address": "A. Partner <Partner@Fund.VC>", "metadata": {"tier": 1, "vip": true}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["address"], "partner@fund.vc");
    assert_eq!((r.body["display_name"].as_str(), r.body["source"].as_str()), (Some(""), Some("manual")));
    assert!(r.body.get("import_batch_id").is_none());
    let again = app.post("/v1/contacts", json!({"address": "partner@fund.vc"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    for (body, code) in [
        (json!({"address": "not an address"}), "invalid_recipient"),
        (json!({"address": "a@b.co", "metadata": {"nested": {"x": 1}}}), "invalid_request"),
        (json!({"address": "a@b.co", "metadata": {"s": "x".repeat(5000)}}), "invalid_request"),
    ] {
        assert_eq!(app.post("/v1/contacts", body.clone()).await.code(), code, "{body}");
    }
    let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(
        app.post("/v1/contacts", json!({"address": "a@b.co", "metadata": many})).await.code(),
        "invalid_request"
    );

    // The display-name form of the path finds the same contact, with its ETag.
    let path = format!("/v1/contacts/{}", enc("A. Partner <partner@fund.vc>"));
    let got = app.get(&path).await;
    assert_eq!(got.body["metadata"], json!({"tier": 1, "vip": true}));
    let tag = got.headers.get(ETAG).and_then(|v| v.to_str().ok()).expect("etag").to_owned();
    let (status, body, fresh) =
        guarded(app, Method::PATCH, &path, &tag, json!({"display_name": "Ann"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["display_name"].as_str(), body["metadata"]["tier"].as_i64()), (Some("Ann"), Some(1)));
    assert_ne!(fresh.as_deref(), Some(tag.as_str()));
    // The old tag is stale now: nothing is written.
    let (status, body, _) = guarded(app, Method::PATCH, &path, &tag, json!({"display_name": "Bob"})).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(app.get(&path).await.body["display_name"], "Ann");
    let weak = format!("W/{}", fresh.expect("etag"));
    let (status, _, _) = guarded(app, Method::PATCH, &path, &weak, json!({"metadata": {}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&path).await.body["metadata"], json!({}));

    // Listing with filters (the SDK's colon-less offsets).
    let list =
        app.get("/v1/contacts?source=manual&created_after=2020-01-01T00%3A00%3A00.000000%2B0000").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1), "{}", list.body);
    assert_eq!(app.get("/v1/contacts?source=import").await.body["items"], json!([]));
    // Another account sees nothing; an agent key is refused; delete needs confirming.
    let other = app.other_account().await;
    assert_eq!(app.call(Method::GET, &path, Some(&other), None).await.code(), "contact_not_found");
    assert_eq!(app.delete(&path).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.delete(&format!("{path}?confirm=DELETE")).await;
    assert_eq!(r.body, json!({"address": "partner@fund.vc", "deleted": true}));
    assert_eq!(app.get(&path).await.code(), "contact_not_found");
}

async fn imports_report_every_row_and_reverse(app: &TestApp) {
    assert_eq!(app.post("/v1/agents", json!({"email": BOT})).await.status, StatusCode::CREATED);
    assert_eq!(
        app.post("/v1/contacts", json!({"address": "old@x.co", "display_name": "Old"})).await.status,
        StatusCode::CREATED
    );
    let r = app
        .post(
            "/v1/contacts/import",
            json!({"agent_email": BOT, "stage": "new", "contacts": [
                {"address": "a@x.co", "display_name": "A"},
                {"address": "nope"},
                {"address": "A@x.co"},
                {"address": "old@x.co", "metadata": {"k": "v"}},
                {"address": "b@x.co", "metadata": {"deep": [1]}},
                {"address": "kept@x.co"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let statuses: Vec<&str> =
        r.body["results"].as_array().expect("results").iter().filter_map(|x| x["status"].as_str()).collect();
    assert_eq!(statuses, ["created", "failed", "skipped", "updated", "failed", "created"]);
    assert_eq!(r.body["results"][1]["code"], "invalid_recipient");
    assert_eq!(r.body["results"][2]["code"], "duplicate_in_batch");
    assert_eq!(r.body["results"][4]["code"], "invalid_request");
    assert_eq!(
        (r.body["created"].as_i64(), r.body["updated"].as_i64(), r.body["failed"].as_i64()),
        (Some(2), Some(1), Some(2))
    );
    assert_eq!(r.body["results"][0]["enrolled"], true);
    let batch = r.body["batch_id"].as_str().expect("batch").to_owned();
    let old = app.get("/v1/contacts/old%40x.co").await;
    assert_eq!(
        (old.body["display_name"].as_str(), old.body["metadata"]["k"].as_str()),
        (Some("Old"), Some("v"))
    );
    assert_eq!(old.body["source"], "manual", "provenance never changes");
    let imported = app.get(&format!("/v1/contacts?import_batch_id={batch}")).await;
    assert_eq!(imported.body["items"].as_array().map(Vec::len), Some(2));
    // skip leaves an existing contact alone.
    let r = app
        .post(
            "/v1/contacts/import",
            json!({"on_conflict": "skip", "contacts": [{"address": "old@x.co", "display_name": "New"}]}),
        )
        .await;
    assert_eq!(r.body["results"][0]["code"], "already_exists");
    assert_eq!(app.get("/v1/contacts/old%40x.co").await.body["display_name"], "Old");
    assert_eq!(
        app.post("/v1/contacts/import", json!({"contacts": []})).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let rows: Vec<Value> = (0..1001).map(|i| json!({"address": format!("r{i}@x.co")})).collect();
    assert_eq!(
        app.post("/v1/contacts/import", json!({"contacts": rows})).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Touch one: editing its outreach keeps the enrolment and the contact.
    let outreach = format!("/v1/agents/{}/contacts/{}", enc(BOT), enc("kept@x.co"));
    let r = app.call(Method::PUT, &outreach, Some(&app.key), Some(json!({"stage": "called"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let gone = app.delete(&format!("/v1/contacts/imports/{batch}?confirm=DELETE")).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert_eq!(
        (
            gone.body["contacts_deleted"].as_i64(),
            gone.body["contacts_retained"].as_i64(),
            gone.body["engagements_deleted"].as_i64()
        ),
        (Some(1), Some(1), Some(2)),
        "a@'s and old@'s enrolments go, kept@'s was edited: {}",
        gone.body
    );
    assert_eq!(app.get("/v1/contacts/a%40x.co").await.code(), "contact_not_found");
    assert_eq!(app.get("/v1/contacts/kept%40x.co").await.status, StatusCode::OK);
    assert_eq!(
        app.get("/v1/contacts/old%40x.co").await.status,
        StatusCode::OK,
        "pre-existing contacts are never removed"
    );
    let again = app.delete(&format!("/v1/contacts/imports/{batch}?confirm=DELETE")).await;
    assert_eq!(again.status, StatusCode::OK, "what survived still names the batch: {}", again.body);
    assert_eq!(
        app.delete("/v1/contacts/imports/imp_none?confirm=DELETE").await.code(),
        "import_batch_not_found"
    );
}

async fn outreach_derives_its_facts_from_mail(app: &TestApp) {
    assert_eq!(app.post("/v1/agents", json!({"email": BOT})).await.status, StatusCode::CREATED);
    let one = format!("/v1/agents/{}/contacts/{}", enc(BOT), enc("alice@example.org"));
    let r = app
        .call(
            Method::PUT,
            &one,
            Some(&app.key),
            Some(json!({"stage": "new", "next_action_at": "2026-01-01T00:00:00+00:00"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!((r.body["replied"].as_bool(), r.body["outbound_count"].as_i64()), (Some(false), Some(0)));
    assert!(r.body["first_outbound_at"].is_null() && r.body["last_inbound_at"].is_null(), "{}", r.body);
    assert_eq!(r.body["contact"]["address"], "alice@example.org");
    assert_eq!(
        app.get("/v1/contacts/alice%40example.org").await.body["source"],
        "manual",
        "enrolling made the contact"
    );

    // The agent writes, the contact answers (DMARC-verified), then a forged one arrives.
    let msgs = format!("/v1/agents/{}/messages", enc(BOT));
    let sent =
        app.post(&msgs, json!({"to": ["Alice <alice@example.org>"], "subject": "s", "text": "t"})).await;
    let sent = sent.body["message_id"].as_str().expect("id").to_owned();
    app.mark_sent(&sent).await;
    let reply = b"From: alice@example.org\r\nTo: bot@agents.test\r\nSubject: re\r\nMessage-ID: <r1@example.org>\r\n\r\nyes\r\n";
    app.deliver(BOT, reply, true).await;
    app.deliver(BOT, b"From: alice@example.org\r\nSubject: forged\r\n\r\nx\r\n", false).await;
    let r = app.get(&one).await;
    assert_eq!(
        (r.body["outbound_count"].as_i64(), r.body["inbound_count"].as_i64()),
        (Some(1), Some(1)),
        "{}",
        r.body
    );
    assert_eq!(r.body["replied"], true);
    assert!(r.body["last_conversation_id"].is_string(), "{}", r.body);
    assert_eq!(r.body["suppressed"], false);

    // Filters: due for a follow-up, replied, stage; suppression shows.
    let list = |q: &str| format!("/v1/agents/{}/contacts{q}", enc(BOT));
    let due = app.get(&list("?replied=false&next_action_before=2027-01-01T00%3A00%3A00.000000%2B0000")).await;
    assert_eq!(due.body["items"], json!([]), "it replied");
    assert_eq!(
        app.get(&list("?replied=true&stage=new")).await.body["items"].as_array().map(Vec::len),
        Some(1)
    );
    let r = app
        .post(&format!("/v1/agents/{}/suppressions", enc(BOT)), json!({"address": "alice@example.org"}))
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let r = app.get(&list("?suppressed=true")).await;
    assert_eq!(r.body["items"][0]["suppression_source"], "manual", "{}", r.body);

    // Clear the schedule with null; a conditional PUT for a missing enrolment is stale.
    let r = app.call(Method::PUT, &one, Some(&app.key), Some(json!({"next_action_at": null}))).await;
    assert_eq!(
        (r.status, r.body["next_action_at"].is_null(), r.body["stage"].as_str()),
        (StatusCode::OK, true, Some("new"))
    );
    let missing = format!("/v1/agents/{}/contacts/{}", enc(BOT), enc("bob@example.org"));
    let (status, _, _) = guarded(app, Method::PUT, &missing, "*", json!({"stage": "x"})).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    // An agent key drives its own agent's outreach.
    let key = app.agent_key(BOT).await;
    assert_eq!(app.call(Method::GET, &one, Some(&key), None).await.status, StatusCode::OK);
    assert_eq!(app.call(Method::GET, "/v1/contacts", Some(&key), None).await.status, StatusCode::FORBIDDEN);
    let r = app.delete(&format!("{one}?confirm=DELETE")).await;
    assert_eq!(r.body, json!({"address": "alice@example.org", "deleted": true}));
    assert_eq!(app.get(&one).await.code(), "engagement_not_found");
    assert_eq!(
        app.get("/v1/contacts/alice%40example.org").await.status,
        StatusCode::OK,
        "the contact survives"
    );
}
