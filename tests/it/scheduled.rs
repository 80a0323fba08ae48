//! Scheduled send (`send_at`, beta): accepted as `scheduled` on both backends, its checks,
//! cancelling by the trash and re-arming by a restore; and through a real Postfix, sent at
//! its time and not before, while a trashed one never leaves.

use crate::common;
use crate::outbound_e2e::{next, send, wait_status, world_with};

use common::{TestApp, enc};
use postagent_core::store::{JobQueue, MessageUpdate, OutboundStore, Transition};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{JobKind, MessageStatus};
use postagent_lab::receiver::until;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

on_both_backends!(a_future_send_at_is_scheduled_and_cancellable);

const BOT: &str = "bot@agents.test";

fn msgs() -> String {
    format!("/v1/agents/{}/messages", enc(BOT))
}

async fn ledger(app: &TestApp, id: &str) -> Vec<String> {
    let r = app.get(&format!("{}/{id}/lifecycle", msgs())).await;
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|x| x["reason_code"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The submission jobs due by `at` (claimed, so a second look does not see them).
async fn due(app: &TestApp, at: Timestamp) -> Vec<String> {
    let jobs = app.store.claim_jobs(JobKind::Submit, "test", at, 60, 100).await.expect("claim");
    jobs.into_iter().map(|j| j.ref_id).collect()
}

async fn a_future_send_at_is_scheduled_and_cancellable(app: &TestApp) {
    assert_eq!(app.post("/v1/agents", json!({"email": BOT})).await.status, StatusCode::CREATED);
    let at = Timestamp::now().plus_secs(3600);
    let body = |send_at: String| json!({"to": ["x@example.com"], "subject": "later", "text": "t", "send_at": send_at});
    let r = app.post(&format!("{}?wait=sent", msgs()), body(at.to_rfc3339())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "scheduled", "wait=sent does not wait for a schedule");
    assert_eq!(r.body["scheduled_at"], json!(at));
    let id = r.body["message_id"].as_str().expect("id").to_owned();
    let m = app.get(&format!("{}/{id}", msgs())).await;
    assert_eq!((m.body["delivery_status"].as_str(), &m.body["scheduled_at"]), (Some("accepted"), &json!(at)));
    // Its submission is due at its time, not now.
    assert!(due(app, Timestamp::now()).await.is_empty());

    // Python's isoformat with a colon-less offset is read; a past time sends now.
    let python = at.to_rfc3339().replace('Z', "+0000");
    assert_eq!(app.post(&msgs(), body(python)).await.body["status"], "scheduled");
    let now = app.post(&msgs(), body("2020-01-01T00:00:00+00:00".into())).await;
    assert_eq!(now.body["status"], "accepted", "{}", now.body);
    assert!(now.body.get("scheduled_at").is_none());
    // The checks: no offset, too far, a self-send.
    assert_eq!(
        app.post(&msgs(), body("2030-01-01T00:00:00".into())).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let far = Timestamp::now().plus_secs(91 * 86_400).to_rfc3339();
    assert_eq!(app.post(&msgs(), body(far)).await.code(), "invalid_request");
    let own = json!({"to": [BOT], "subject": "s", "text": "t", "send_at": at.to_rfc3339()});
    assert_eq!(app.post(&msgs(), own).await.code(), "invalid_request");
    // Not yet sent: nothing to answer.
    let r = app.post(&format!("{}/{id}/reply", msgs()), json!({"text": "re"})).await;
    assert_eq!(r.code(), "message_not_yet_delivered");

    // Cancel by the trash; a restore before its time re-arms it.
    assert_eq!(
        app.delete(&format!("{}/{id}?confirm=DELETE", msgs())).await.body,
        json!({"deleted": true, "id": id})
    );
    // The submitter, having read the message before it was trashed, cannot take it now.
    let take = Transition {
        message_id: id.clone(),
        from: vec![MessageStatus::Accepted],
        set: MessageUpdate { status: Some(MessageStatus::Sending), ..Default::default() },
        unless_trashed: true,
        at: Timestamp::now(),
        ..Transition::default()
    };
    assert!(!app.store.transition(take).await.expect("transition"), "a trashed message is not sent");
    let r = app.post(&format!("{}/{id}/restore", msgs()), Value::Null).await;
    assert_eq!(
        (r.status, r.body["delivery_status"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{}",
        r.body
    );
    assert!(due(app, Timestamp::now()).await.iter().all(|d| d != &id), "re-armed for its time, not now");
    assert!(due(app, at.plus_secs(1)).await.contains(&id));
    // A worker that claimed the job and found the message trashed cannot drop it once a
    // restore re-armed it: the restore took the job back from its lease.
    let claimed =
        app.store.claim_jobs(JobKind::Submit, "w", at.plus_secs(100), 60, 100).await.expect("claim");
    let job = claimed.iter().find(|j| j.ref_id == id).expect("the job, claimed again after its lease");
    assert_eq!(app.delete(&format!("{}/{id}", msgs())).await.status, StatusCode::OK);
    assert_eq!(app.post(&format!("{}/{id}/restore", msgs()), Value::Null).await.status, StatusCode::OK);
    assert!(!app.store.drop_job_of_trashed(job.id, "w", &id).await.expect("drop"), "restored meanwhile");
    assert!(due(app, at.plus_secs(1)).await.contains(&id), "still due, no longer leased");

    // Trashed past its time, a restore brings it back failed, the send cancelled.
    let soon = Timestamp::now().plus_secs(1);
    let r = app.post(&msgs(), body(soon.to_rfc3339())).await;
    let late = r.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(app.delete(&format!("{}/{late}", msgs())).await.status, StatusCode::OK);
    until("the schedule to pass", Duration::from_secs(10), || async {
        (Timestamp::now() > soon).then_some(())
    })
    .await;
    let r = app.post(&format!("{}/{late}/restore", msgs()), Value::Null).await;
    assert_eq!(r.body["delivery_status"], "failed", "{}", r.body);
    assert_eq!(ledger(app, &late).await.last().map(String::as_str), Some("submission.cancelled"));
}

/// Through Postfix: the scheduled message reaches the internet at its time, not before; the
/// one trashed before its time never does.
#[tokio::test]
async fn postfix_gets_a_scheduled_message_at_its_time() {
    let Some((mut w, mut internet)) = world_with(&[], Vec::new(), &[]).await else {
        return;
    };
    let _server = w.serve();
    let path = format!("/v1/agents/{BOT}/messages");
    let at = |secs: i64| Timestamp::now().plus_secs(secs);
    let (cancelled_at, sent_at) = (at(2), at(3));
    let mail = |subject: &str, t: Timestamp| json!({"to": ["human@example.org"], "subject": subject, "text": "t", "send_at": t.to_rfc3339()});
    let cancelled = send(&w, &path, mail("cancelled", cancelled_at)).await;
    let (status, _) = w.call(Method::DELETE, &format!("{path}/{cancelled}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let id = send(&w, &path, mail("scheduled", sent_at)).await;
    let d = next(&mut internet, "the scheduled message").await;
    let arrived = Timestamp::now();
    assert!(arrived >= sent_at, "arrived {arrived:?}, scheduled for {sent_at:?}");
    assert!(d.data.contains("Subject: scheduled"), "only the scheduled one: {}", d.data);
    let m = wait_status(&w, BOT, &id, "sent").await;
    assert_eq!(m["scheduled_at"], json!(sent_at), "kept after sending");
    // The ledger names Postfix's queue id, as the maillog does.
    let lifecycle = w.get(&format!("{path}/{id}/lifecycle")).await;
    let submitted = lifecycle["items"].as_array().expect("items").last().cloned().expect("a row");
    assert_eq!(submitted["reason_code"], "submission.upstream_accepted", "{lifecycle}");
    let qid = submitted["correlation_ids"]["postfix_queue_id"].as_str().expect("queue id").to_owned();
    assert!(w.postfix.read_log().contains(&format!("{qid}: ")), "{qid} in the maillog");
    if let Ok(d) = internet.try_recv() {
        panic!("the trashed message left anyway:\n{}", d.data);
    }
    let m = w.get(&format!("{path}/{cancelled}")).await;
    assert_eq!(m["delivery_status"], "accepted", "trashed, never submitted: {m}");
}
