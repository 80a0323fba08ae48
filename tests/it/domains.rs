//! Domains over the `/v1` API on SQLite and PostgreSQL: registration, DNS verification (and
//! its failures), deletion, claims that give way, and the hold a trashed agent keeps.

use crate::common;

use common::{MAIL_HOST, SHARED_DOMAIN, TestApp, enc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    unverified_domain_claims_give_way,
    domains_register_verify_delete,
    domain_verification_survives_dns_failure,
    trashed_agents_still_hold_their_domain,
);

/// An account that proves the TXT record takes over another's unverified claim; a claim left
/// unverified lapses; a verified domain stays with its account.
async fn unverified_domain_claims_give_way(app: &TestApp) {
    let squatter = app.other_account().await;
    let claim = app
        .call(Method::POST, "/v1/domains", Some(&squatter), Some(json!({"domain": "squat.example"})))
        .await;
    assert_eq!(claim.status, StatusCode::CREATED, "{}", claim.body);
    let taken = app.post("/v1/domains", json!({"domain": "squat.example"})).await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "domain_taken"), "{}", taken.body);
    let txt = taken.body["error"]["details"]["takeover_txt"].as_str().expect("takeover token").to_owned();
    // Not proven yet: nothing moves.
    let early = app.post("/v1/domains/squat.example/verify", Value::Null).await;
    assert_eq!(early.status, StatusCode::NOT_FOUND, "{}", early.body);
    app.dns.add_txt("squat.example", &txt);
    app.dns.add_mx("squat.example", 10, MAIL_HOST);
    let v = app.post("/v1/domains/squat.example/verify", Value::Null).await;
    assert_eq!((v.status, v.body["verified"].clone()), (StatusCode::OK, json!(true)), "{}", v.body);
    assert_eq!(app.get("/v1/domains/squat.example").await.body["verified"], true);
    let gone = app.call(Method::GET, "/v1/domains/squat.example", Some(&squatter), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "the squatter's claim is over");
    // A verified domain is not taken over, whatever the other account publishes.
    let back = app
        .call(Method::POST, "/v1/domains", Some(&squatter), Some(json!({"domain": "squat.example"})))
        .await;
    assert_eq!((back.status, back.code()), (StatusCode::CONFLICT, "domain_taken"));
    assert!(back.body["error"]["details"]["takeover_txt"].is_null(), "{}", back.body);
    // A takeover acts on the very claim it read: one deleted and made afresh meanwhile stays.
    use postagent_core::store::DomainStore as _;
    let race =
        app.call(Method::POST, "/v1/domains", Some(&squatter), Some(json!({"domain": "race.example"}))).await;
    assert_eq!(race.status, StatusCode::CREATED, "{}", race.body);
    let read = app.store.find_domain("race.example").await.expect("find").expect("held");
    let del =
        app.call(Method::DELETE, "/v1/domains/race.example?confirm=DELETE", Some(&squatter), None).await;
    assert!(del.status.is_success(), "{}", del.body);
    // The claim made afresh must carry a later time than the one read.
    postagent_lab::receiver::until(
        "the clock to pass the first claim",
        std::time::Duration::from_secs(5),
        || async { (postagent_core::time::Timestamp::now() > read.created_at).then_some(()) },
    )
    .await;
    let again =
        app.call(Method::POST, "/v1/domains", Some(&squatter), Some(json!({"domain": "race.example"}))).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    let new = postagent_core::store::NewDomain {
        account_id: app.account_id().await,
        domain: "race.example".into(),
        verification_token: "e2a-verify=x".into(),
        operator_owned: false,
    };
    let now = postagent_core::time::Timestamp::now();
    assert!(!app.store.take_over_domain(&read, &new, None, now).await.expect("take"), "a fresh claim");
    let fresh = app.store.find_domain("race.example").await.expect("find").expect("held");
    assert!(app.store.take_over_domain(&fresh, &new, None, now).await.expect("take"), "the claim as read");
    // Unverified registrations lapse.
    app.post("/v1/domains", json!({"domain": "idle.example"})).await;
    let swept = postagent_core::janitor::sweep(
        app.store.as_ref(),
        postagent_core::time::Timestamp::now().plus_secs(8 * 86_400),
        postagent_core::janitor::Retention::default(),
    )
    .await
    .expect("sweep");
    assert!(swept >= 1);
    assert_eq!(app.get("/v1/domains/idle.example").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/domains/squat.example").await.status, StatusCode::OK, "verified ones stay");
}

async fn domains_register_verify_delete(app: &TestApp) {
    let reg = app.post("/v1/domains", json!({"domain": "Acme.Example."})).await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    let d = &reg.body;
    assert_eq!(d["domain"], "acme.example");
    assert_eq!(d["verified"], false);
    let token = d["verification_token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("e2a-verify=") && token.len() == 11 + 32);
    assert_eq!(
        d["dns_records"][0],
        json!({"type": "TXT", "name": "acme.example", "value": token, "priority": null, "purpose": "ownership", "status": "pending"})
    );
    assert_eq!(
        d["dns_records"][1],
        json!({"type": "MX", "name": "acme.example", "value": MAIL_HOST, "priority": 10, "purpose": "inbound_mx", "status": "pending"})
    );
    assert_eq!(d["capabilities"], json!({"inbound": "pending", "outbound": "pending"}));
    assert_eq!(d["agent_count"], 0);
    assert!(d["sending_ramp"]["daily_recipient_limit"].is_i64());

    let again = app.post("/v1/domains", json!({"domain": "acme.example"})).await;
    assert_eq!(again.status, StatusCode::CREATED, "claim-or-create");
    assert_eq!(again.body["verification_token"], token.as_str());

    let v = app.post("/v1/domains/acme.example/verify", Value::Null).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!((v.body["verified"].clone(), v.body["mx"].clone()), (json!(false), json!("missing")));

    app.dns.add_txt("acme.example", &format!("unrelated; {token}"));
    app.dns.add_txt("acme.example", "v=spf1 mx -all");
    app.dns.add_mx("acme.example", 20, "elsewhere.example");
    let v = app.post("/v1/domains/acme.example/verify", Value::Null).await;
    assert_eq!(v.body["verified"], false, "an MX pointing elsewhere is not enough: {}", v.body);
    assert_eq!(v.body["mx"], "mismatch");
    app.dns.add_mx("acme.example", 10, &format!("{}.", MAIL_HOST.to_uppercase()));
    let v = app.post("/v1/domains/acme.example/verify", Value::Null).await;
    assert_eq!(v.body["verified"], true, "{}", v.body);
    assert_eq!((v.body["mx"].as_str(), v.body["spf"].as_str()), (Some("found"), Some("found")));
    assert!(v.body["verified_at"].is_string());

    let got = app.get("/v1/domains/ACME.example").await;
    assert_eq!(got.body["verified"], true);
    assert_eq!(got.body["capabilities"]["inbound"], "verified");
    assert_eq!(got.body["dns_records"][0]["status"], "verified");
    assert!(got.body["last_checked_at"].is_string());
    let list = app.get("/v1/domains").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));

    app.post("/v1/agents", json!({"email": "sales@acme.example"})).await;
    let blocked = app.delete("/v1/domains/acme.example?confirm=DELETE").await;
    assert_eq!((blocked.status, blocked.code()), (StatusCode::BAD_REQUEST, "domain_has_agents"));
    app.delete(&format!("/v1/agents/{}?confirm=DELETE&permanent=true", enc("sales@acme.example"))).await;
    let unconfirmed = app.delete("/v1/domains/acme.example").await;
    assert_eq!(unconfirmed.locations(), vec!["query.confirm"]);
    let deleted = app.delete("/v1/domains/acme.example?confirm=DELETE").await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        (deleted.body["deleted"].clone(), deleted.body["domain"].clone()),
        (json!(true), json!("acme.example"))
    );
    assert_eq!(app.get("/v1/domains/acme.example").await.status, StatusCode::NOT_FOUND);

    let bad = app.post("/v1/domains", json!({"domain": "not a domain"})).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_domain"));
    let shared = app.post("/v1/domains", json!({"domain": SHARED_DOMAIN})).await;
    assert_eq!((shared.status, shared.code()), (StatusCode::BAD_REQUEST, "reserved_domain"));
    let missing = app.post("/v1/domains/nowhere.example/verify", Value::Null).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn domain_verification_survives_dns_failure(app: &TestApp) {
    app.verified_domain("steady.example").await;
    app.dns.set_servfail("steady.example", true);
    let v = app.post("/v1/domains/steady.example/verify", Value::Null).await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.body["verified"], true, "a DNS outage does not unverify a domain: {}", v.body);
    assert_eq!(v.body["mx"], "deferred");

    app.post("/v1/domains", json!({"domain": "silent.example"})).await;
    app.dns.set_drop("silent.example", true);
    let v = app.post("/v1/domains/silent.example/verify", Value::Null).await;
    assert_eq!(v.status, StatusCode::OK, "a DNS timeout is an answer, not a hang");
    assert_eq!((v.body["verified"].clone(), v.body["mx"].clone()), (json!(false), json!("deferred")));
}

async fn trashed_agents_still_hold_their_domain(app: &TestApp) {
    app.verified_domain("held.example").await;
    app.post("/v1/agents", json!({"email": "bot@held.example"})).await;
    app.delete(&format!("/v1/agents/{}?confirm=DELETE", enc("bot@held.example"))).await;
    let blocked = app.delete("/v1/domains/held.example?confirm=DELETE").await;
    assert_eq!((blocked.status, blocked.code()), (StatusCode::BAD_REQUEST, "domain_has_agents"));
    assert_eq!(
        app.get("/v1/domains/held.example").await.body["agent_count"],
        0,
        "only live agents are counted"
    );
    app.delete(&format!("/v1/agents/{}?confirm=DELETE&permanent=true", enc("bot@held.example"))).await;
    assert_eq!(app.delete("/v1/domains/held.example?confirm=DELETE").await.status, StatusCode::OK);
}
