//! Rate limits (contract §2.6) on SQLite and PostgreSQL, and one budget shared by two replicas
//! on one PostgreSQL database.

use crate::common;

use common::{Db, TestApp, enc, spawn_app_configured, test_webhooks};
use reqwest::StatusCode;
use serde_json::json;

const BOT: &str = "bot@agents.test";
const LIMITS: [(&str, &str); 3] =
    [("send_rate_limit", "3"), ("poll_rate_limit", "4"), ("agent_creation_rate_limit", "2")];

/// Windows are fixed (the minute, the hour): a test starts with at least 20 s of its window
/// left, so it never straddles two and sees one budget.
async fn fresh_window() {
    let left = || {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        60 - now % 60
    };
    postagent_lab::receiver::until(
        "a rate window with 20 s left",
        std::time::Duration::from_secs(30),
        || async { (left() >= 20).then_some(()) },
    )
    .await;
}

async fn app(db: Db, url: Option<String>) -> Option<TestApp> {
    spawn_app_configured(db, test_webhooks(), url, &LIMITS).await
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn send(app: &TestApp) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/agents/{}/messages", app.base, enc(BOT)))
        .bearer_auth(&app.key)
        .json(&json!({"to": ["ann@example.org"], "subject": "Hi", "text": "Hello"}))
        .send()
        .await
        .expect("send")
}

async fn budgets_answer_429_with_exact_headers(db: Db) {
    let Some(app) = app(db, None).await else { return };
    fresh_window().await;
    let created = app.post("/v1/agents", json!({"email": BOT})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    for remaining in ["2", "1", "0"] {
        let r = send(&app).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some(remaining));
        let reset: u64 = header(&r, "ratelimit-reset").expect("reset").parse().expect("seconds");
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let r = send(&app).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = header(&r, "retry-after").expect("Retry-After");
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("0"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["details"]["retry_after_seconds"].to_string(), retry, "{body}");
    // Polls have their own budget, per account.
    let list = format!("/v1/agents/{}/messages", enc(BOT));
    for _ in 0..4 {
        assert_eq!(app.get(&list).await.status, StatusCode::OK);
    }
    let polled = app.get(&list).await;
    assert_eq!((polled.status, polled.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    // Agent creation: two an hour here (one used above).
    assert_eq!(app.post("/v1/agents", json!({"email": "two@agents.test"})).await.status, StatusCode::CREATED);
    let third = app.post("/v1/agents", json!({"email": "three@agents.test"})).await;
    assert_eq!(third.code(), "rate_limited");
    // Another account's budget is its own.
    let other = app.other_account().await;
    let theirs = app.call(reqwest::Method::GET, "/v1/webhooks", Some(&other), None).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
}

#[tokio::test]
async fn budgets_on_sqlite() {
    budgets_answer_429_with_exact_headers(Db::Sqlite).await;
}

#[tokio::test]
async fn budgets_on_postgres() {
    budgets_answer_429_with_exact_headers(Db::Postgres).await;
}

/// Two replicas (each a whole API with its worker) on one PostgreSQL: the fourth send across
/// both is refused.
#[tokio::test]
async fn two_replicas_share_one_budget() {
    let Some(first) = app(Db::Postgres, None).await else { return };
    let created = first.post("/v1/agents", json!({"email": BOT})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let second = app(Db::Postgres, Some(first.store.url().to_owned())).await.expect("second replica");
    fresh_window().await;
    assert_eq!(send(&first).await.status(), StatusCode::ACCEPTED);
    assert_eq!(send(&second).await.status(), StatusCode::ACCEPTED);
    assert_eq!(send(&first).await.status(), StatusCode::ACCEPTED);
    let fourth = send(&second).await;
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS, "one budget across both replicas");
}

/// A daily recipient quota is a 402, not a 429: three recipients a day here.
async fn quota_answers_402(db: Db) {
    let Some(app) = spawn_app_configured(db, test_webhooks(), None, &[("daily_recipient_quota", "3")]).await
    else {
        return;
    };
    assert_eq!(app.post("/v1/agents", json!({"email": BOT})).await.status, StatusCode::CREATED);
    let path = format!("/v1/agents/{}/messages", enc(BOT));
    let two = app
        .post(&path, json!({"to": ["a@example.org"], "cc": ["b@example.org"], "subject": "s", "text": "t"}))
        .await;
    assert_eq!(two.status, StatusCode::ACCEPTED, "{}", two.body);
    // The agent test's one recipient counts too.
    let test = app.post(&format!("/v1/agents/{}/test", enc(BOT)), json!({})).await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{}", test.body);
    let again = app.post(&format!("/v1/agents/{}/test", enc(BOT)), json!({})).await;
    assert_eq!(again.status, StatusCode::PAYMENT_REQUIRED, "{}", again.body);
    let over = app.post(&path, json!({"to": ["d@example.org"], "subject": "s", "text": "t"})).await;
    assert_eq!((over.status, over.code()), (StatusCode::PAYMENT_REQUIRED, "limit_exceeded"), "{}", over.body);
    assert_eq!(over.body["error"]["details"]["limit"], 3);
    assert!(
        over.body["error"]["details"]["resets_in_seconds"]
            .as_i64()
            .is_some_and(|s| (1..=86_400).contains(&s))
    );
}

#[tokio::test]
async fn quota_on_sqlite() {
    quota_answers_402(Db::Sqlite).await;
}

#[tokio::test]
async fn quota_on_postgres() {
    quota_answers_402(Db::Postgres).await;
}
