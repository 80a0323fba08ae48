//! Data rights on SQLite and PostgreSQL: the account export (e2a's envelope, every message
//! with its raw MIME, no secrets) and the account deletion (one transaction, its counts,
//! nothing left that names the account), as an export, delete, export-again round trip; and
//! the operator's `postagent admin accounts export|delete`.

use crate::common;

use base64::Engine as _;
use common::{TestApp, enc};
use postagent_core::store::{AccountDataStore, StoreHealth};
use postagent_lab::receiver::Receiver;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(export_delete_export_round_trip);

const BOT: &str = "bot@agents.test";

fn path(rest: &str) -> String {
    format!("/v1/agents/{}{rest}", enc(BOT))
}

/// Everything an account can have: an agent, inbound mail with an attachment, a held draft,
/// suppressions at both levels, a webhook with its deliveries, a second key.
async fn populate(app: &TestApp) -> (String, String) {
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let rx = Receiver::start().await.expect("receiver");
    let r = app.post("/v1/webhooks", json!({"url": rx.url("/hook"), "events": ["email.received"]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let raw = "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: Report\r\nMessage-ID: <r1@example.org>\r\n\
               MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
               See attached.\r\n--b\r\nContent-Type: text/csv; name=q3.csv\r\nContent-Disposition: attachment; filename=q3.csv\r\n\r\n\
               quarter,total\r\n--b--\r\n";
    let inbound = app.deliver(BOT, raw.as_bytes(), true).await;
    let protection = json!({"inbound": {"gate": {}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 3600, "on_expiry": "reject"}});
    let r = app.call(reqwest::Method::PUT, &path("/protection"), Some(&app.key), Some(protection)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let held = app
        .post(
            &path("/messages"),
            json!({"to": ["carol@example.org"], "subject": "Draft", "text": "Held text."}),
        )
        .await;
    assert_eq!(held.body["status"], "pending_review", "{}", held.body);
    let r =
        app.post(&path("/suppressions"), json!({"address": "blocked@example.org", "reason": "asked"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.post("/v1/account/api-keys", json!({"name": "second"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post("/v1/templates", json!({"name": "t", "subject": "Hi {{n}}", "text": "x"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.post("/v1/contacts", json!({"address": "friend@example.org", "metadata": {"k": "v"}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .call(
            reqwest::Method::PUT,
            &path("/contacts/friend%40example.org"),
            Some(&app.key),
            Some(json!({"stage": "new"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (inbound, held.body["message_id"].as_str().expect("id").to_owned())
}

async fn export(app: &TestApp, key: &str) -> (StatusCode, Option<Value>, String) {
    let res = app
        .http
        .get(format!("{}/v1/account/export", app.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("export");
    let status = res.status();
    let disposition = res.headers().get("content-disposition").map(|v| v.to_str().unwrap_or("").to_owned());
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).ok(), disposition.unwrap_or_default())
}

async fn export_delete_export_round_trip(app: &TestApp) {
    let (inbound, held) = populate(app).await;
    let account = app.account_id().await;
    // Enough mail to cross the export's 200-message pages.
    for i in 0..205 {
        let raw = format!(
            "From: Bulk <bulk@example.org>\r\nTo: {BOT}\r\nSubject: bulk {i}\r\nMessage-ID: <bulk-{i}@example.org>\r\n\r\nhi\r\n"
        );
        app.deliver(BOT, raw.as_bytes(), true).await;
    }
    // Another tenant, with an agent and mail, which nothing below may touch.
    let other_key = app.other_account().await;
    let r = app
        .call(
            reqwest::Method::POST,
            "/v1/agents",
            Some(&other_key),
            Some(json!({"email": "other@agents.test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    app.deliver("other@agents.test", b"From: a@example.org\r\nSubject: theirs\r\n\r\nhi\r\n", true).await;
    let other = {
        use postagent_core::store::AccountStore;
        app.store.find_account_by_email("intruder@example.net").await.expect("find").expect("other").id
    };
    let (_, other_export, _) = export(app, &other_key).await;
    let other_rows = app.store.rows_naming(&other).await.expect("rows");

    let (status, body, disposition) = export(app, &app.key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.contains(&format!("postagent-export-{account}.json")), "{disposition}");
    let doc = body.expect("the export is one JSON document");
    for key in [
        "generated_at",
        "schema_version",
        "user",
        "domains",
        "agents",
        "api_keys",
        "messages",
        "suppressions",
        "protection_events",
    ] {
        assert!(doc.get(key).is_some(), "the envelope has {key}");
    }
    assert_eq!(doc["schema_version"], "4");
    assert_eq!(doc["user"]["email"], app.account_email);
    assert_eq!(doc["user"]["id"], account.as_str());
    let agent = &doc["agents"][0];
    assert_eq!((agent["email"].as_str(), agent["user_id"].as_str()), (Some(BOT), Some(account.as_str())));
    for key in [
        "domain_verified",
        "public",
        "ttl_seconds",
        "on_expiry",
        "suppress_notifications",
        "inbound_7d",
        "outbound_7d",
        "pending_count",
        "inbound_policy",
        "outbound_policy_action",
        "inbound_scan_review_threshold",
    ] {
        assert!(agent.get(key).is_some(), "AgentIdentity requires {key}: {agent}");
    }
    assert_eq!(
        (agent["outbound_policy_action"].as_str(), agent["ttl_seconds"].as_i64()),
        (Some("review"), Some(3600))
    );
    assert_eq!((agent["inbound_7d"].as_i64(), agent["pending_count"].as_i64()), (Some(206), Some(1)));
    // Keys: no secret, no hash; both keys listed.
    let keys = doc["api_keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.get("key").is_none() && k.get("key_hash").is_none() && k["key_prefix"].is_string())
    );
    assert!(!doc.to_string().contains(&app.key), "the plaintext key is nowhere in the export");
    // Messages: the inbound one with its raw MIME (its attachment inside), the draft's text.
    let messages = doc["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 207, "every message, across pages");
    let mut ids: Vec<&str> = messages.iter().filter_map(|m| m["id"].as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 207, "none twice");
    assert!(!doc.to_string().contains("theirs"), "another account's mail is not in the export");
    let m = messages.iter().find(|m| m["id"] == inbound.as_str()).expect("inbound");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(m["raw_message"].as_str().expect("raw"))
        .expect("b64");
    assert!(String::from_utf8_lossy(&raw).contains("quarter,total"));
    assert_eq!(m["attachments"][0]["filename"], "q3.csv");
    assert_eq!(m["authentication"]["dmarc"]["status"], "pass");
    assert_eq!(m["expires_at"], Value::Null);
    let d = messages.iter().find(|m| m["id"] == held.as_str()).expect("draft");
    assert_eq!(
        (d["text"].as_str(), d["review_status"].as_str()),
        (Some("Held text."), Some("pending_review"))
    );
    assert_eq!(doc["suppressions"][0]["agent_email"], BOT);
    // The account's templates, contacts and outreach are its data too.
    assert_eq!(doc["templates"][0]["subject"], "Hi {{n}}", "{}", doc["templates"]);
    assert_eq!(doc["contacts"][0]["metadata"], json!({"k": "v"}), "{}", doc["contacts"]);
    assert_eq!(doc["contact_engagements"][0]["stage"], "new", "{}", doc["contact_engagements"]);
    let events = doc["protection_events"].as_array().expect("protection events");
    assert_eq!(events[0]["message_id"], held.as_str());
    for key in ["id", "agent_email", "direction", "source", "reason", "action", "created_at"] {
        assert!(events[0].get(key).is_some(), "ProtectionEventExportEntry requires {key}");
    }

    // Deletion needs its confirmation, then takes everything in one go.
    let r = app.delete("/v1/account").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(app.store.rows_naming(&account).await.expect("rows").iter().any(|(t, _)| *t == "messages"));
    let r = app.delete("/v1/account?confirm=DELETE").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = &r.body;
    assert_eq!((b["deleted"].as_bool(), b["user_deleted"].as_bool()), (Some(true), Some(true)));
    assert_eq!(
        [
            &b["messages_deleted"],
            &b["agents_deleted"],
            &b["api_keys_deleted"],
            &b["agent_suppressions_deleted"]
        ],
        [&json!(207), &json!(1), &json!(2), &json!(1)],
        "{b}"
    );
    for key in [
        "usage_events_deleted",
        "usage_summaries_deleted",
        "domains_deleted",
        "sessions_deleted",
        "agent_unsubscribe_tokens_deleted",
    ] {
        assert!(b[key].is_u64(), "DeleteUserDataResult requires {key}");
    }
    assert_eq!(
        app.store.rows_naming(&account).await.expect("rows"),
        Vec::<(&str, i64)>::new(),
        "nothing names it"
    );
    let gauges = app.store.gauges().await.expect("gauges");
    assert!(gauges.jobs.iter().all(|(_, n)| *n == 0), "its queued work is gone: {:?}", gauges.jobs);

    // The other tenant is untouched.
    assert_eq!(app.store.rows_naming(&other).await.expect("rows"), other_rows);
    let (status, again, _) = export(app, &other_key).await;
    assert_eq!(status, StatusCode::OK);
    let count = |d: &Option<Value>| d.as_ref().and_then(|d| d["messages"].as_array().map(Vec::len));
    assert_eq!(count(&again), count(&other_export));
    assert_eq!(count(&again), Some(1));

    // Exporting again: the key died with the account.
    let (status, body, _) = export(app, &app.key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body:?}");
}
