//! Retention on SQLite and PostgreSQL, with a clock the test controls: the trash purged
//! after its window (messages, and agents with their mail), old bodies dropped while held
//! mail is kept, one replica at a time through the lease, and what `/v1/info` reports.

use crate::common;

use common::{TestApp, enc};
use postagent_core::janitor::{Purged, Retention, purge};
use postagent_core::store::{MessageStore, RetentionStore};
use postagent_core::time::Timestamp;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

on_both_backends!(
    the_trash_is_purged_after_its_window,
    old_bodies_are_dropped_and_held_mail_kept,
    one_replica_at_a_time
);

const BOT: &str = "bot@agents.test";
const DAY: i64 = 86_400;
const LEASE: Duration = Duration::from_secs(60);

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: {BOT}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         Body of {subject}.\r\n--b\r\nContent-Type: text/csv; name=a.csv\r\nContent-Disposition: attachment; filename=a.csv\r\n\r\n\
         x,y\r\n--b--\r\n"
    )
    .into_bytes()
}

async fn agent(app: &TestApp, email: &str) {
    let r = app.post("/v1/agents", json!({"email": email})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

fn path(agent: &str, rest: &str) -> String {
    format!("/v1/agents/{}{rest}", enc(agent))
}

async fn the_trash_is_purged_after_its_window(app: &TestApp) {
    agent(app, BOT).await;
    let kept = app.deliver(BOT, &message("kept"), true).await;
    let trashed = app.deliver(BOT, &message("trashed"), true).await;
    assert_eq!(app.delete(&path(BOT, &format!("/messages/{trashed}"))).await.status, StatusCode::OK);
    agent(app, "gone@agents.test").await;
    let of_gone = app.deliver("gone@agents.test", &message("of-gone"), true).await;
    let r = app.delete(&format!("{}?confirm=DELETE", path("gone@agents.test", ""))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let keep = Retention::new(Duration::from_secs(30 * 86_400), 30, 0);

    // Within the window nothing goes: both can still be restored.
    let early = purge(app.store.as_ref(), Timestamp::now().plus_secs(29 * DAY), keep, "a", LEASE)
        .await
        .expect("purge");
    assert_eq!(early, Purged { leased: true, ..Purged::default() });
    assert!(app.store.find_message(&trashed).await.expect("find").is_some());

    // Past it, the trashed message and the trashed agent (with its mail) are gone for good.
    let later = Timestamp::now().plus_secs(31 * DAY);
    let done = purge(app.store.as_ref(), later, keep, "a", LEASE).await.expect("purge");
    assert_eq!((done.messages, done.agents), (2, 1), "{done:?}");
    assert!(app.store.find_message(&trashed).await.expect("find").is_none());
    assert!(app.store.find_message(&of_gone).await.expect("find").is_none());
    let restore = app.post(&path(BOT, &format!("/messages/{trashed}/restore")), json!({})).await;
    assert_eq!(restore.status, StatusCode::NOT_FOUND, "{}", restore.body);
    assert_eq!(
        app.post(&path("gone@agents.test", "/restore"), json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    let trash = app.get("/v1/agents?deleted=true").await;
    assert_eq!(trash.body["items"], json!([]), "{}", trash.body);
    // The address is free again, for a new mailbox.
    agent(app, "gone@agents.test").await;
    // Live mail is untouched.
    let live = app.get(&path(BOT, &format!("/messages/{kept}"))).await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.body["raw_message"].is_string());
    // An agent restored before the window passed keeps its mail.
    agent(app, "back@agents.test").await;
    let kept_mail = app.deliver("back@agents.test", &message("back"), true).await;
    app.delete(&format!("{}?confirm=DELETE", path("back@agents.test", ""))).await;
    app.post(&path("back@agents.test", "/restore"), json!({})).await;
    let after = purge(app.store.as_ref(), later, keep, "a", LEASE).await.expect("purge");
    assert_eq!(after.agents, 0);
    assert!(
        app.store.find_message(&kept_mail).await.expect("find").is_some(),
        "a restored agent keeps its mail"
    );
    // A second pass finds nothing.
    let again = purge(app.store.as_ref(), later, keep, "a", LEASE).await.expect("purge");
    assert_eq!((again.messages, again.agents), (0, 0));
}

async fn old_bodies_are_dropped_and_held_mail_kept(app: &TestApp) {
    agent(app, BOT).await;
    let old = app.deliver(BOT, &message("old"), true).await;
    // A draft held for review keeps its body whatever its age.
    let protection = json!({"inbound": {"gate": {}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 604800, "on_expiry": "reject"}});
    let r = app.call(reqwest::Method::PUT, &path(BOT, "/protection"), Some(&app.key), Some(protection)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let held = app
        .post(
            &path(BOT, "/messages"),
            json!({"to": ["carol@example.org"], "subject": "Held", "text": "Wait for me."}),
        )
        .await;
    assert_eq!(held.body["status"], "pending_review", "{}", held.body);
    let held_id = held.body["message_id"].as_str().expect("id").to_owned();

    let keep = Retention::new(Duration::from_secs(30 * 86_400), 30, 7);
    let early = purge(app.store.as_ref(), Timestamp::now().plus_secs(6 * DAY), keep, "a", LEASE)
        .await
        .expect("purge");
    assert_eq!(early.bodies, 0);
    let done = purge(app.store.as_ref(), Timestamp::now().plus_secs(8 * DAY), keep, "a", LEASE)
        .await
        .expect("purge");
    assert_eq!(done.bodies, 1, "the old message only: {done:?}");

    let view = app.get(&path(BOT, &format!("/messages/{old}"))).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["raw_message"], json!(null), "{}", view.body);
    assert_eq!(view.body["attachments"], json!([]));
    assert_eq!(view.body["subject"], "old", "the envelope stays");
    assert_eq!(view.body["authentication"]["dmarc"]["status"], "pass", "the verdict stays");
    let review = app.get(&format!("/v1/reviews/{held_id}")).await;
    assert_eq!(review.body["body"]["text"], "Wait for me.", "{}", review.body);
    assert_eq!(app.store.drop_bodies(Timestamp::now().plus_secs(8 * DAY), 500).await.expect("drop"), 0);
}

async fn one_replica_at_a_time(app: &TestApp) {
    // A lease of the test's own (the app's janitor holds `retention` from its first sweep).
    let now = Timestamp::now();
    let until = now.plus_secs(60);
    assert!(app.store.take_lease("test-lease", "a", now, until).await.expect("lease"));
    assert!(!app.store.take_lease("test-lease", "b", now, until).await.expect("lease"), "held by a");
    assert!(
        app.store.take_lease("test-lease", "a", now.plus_secs(30), now.plus_secs(90)).await.expect("lease"),
        "renewed"
    );
    assert!(
        !app.store.take_lease("test-lease", "b", now.plus_secs(60), now.plus_secs(120)).await.expect("lease")
    );
    assert!(
        app.store.take_lease("test-lease", "b", now.plus_secs(91), now.plus_secs(151)).await.expect("lease"),
        "expired"
    );
    // The purge itself does nothing on a replica without the lease: another holds it, far
    // in the future of any janitor.
    let later = now.plus_secs(400 * DAY);
    assert!(app.store.take_lease("retention", "b", later, later.plus_secs(60)).await.expect("lease"));
    let idle = purge(app.store.as_ref(), later, Retention::default(), "a", LEASE).await.expect("purge");
    assert!(!idle.leased);
    // /v1/info says what is kept.
    let info = app.call(reqwest::Method::GET, "/v1/info", None, None).await;
    assert_eq!(
        info.body["retention"],
        json!({"trash_days": 30, "message_days": null, "events_days": 30}),
        "{}",
        info.body
    );
}
