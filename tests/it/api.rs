//! The `/v1` API over HTTP, every endpoint of the foundation, on SQLite and on PostgreSQL
//! (domains in `domains.rs`).

use crate::common;

use common::{SHARED_DOMAIN, TestApp, enc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    health_info_and_request_ids,
    authentication_failures,
    account_view,
    api_keys_lifecycle,
    api_key_idempotency,
    agents_lifecycle,
    agent_creation_rules,
    agent_scoped_keys_stay_in_their_lane,
    other_accounts_resources_are_404,
    pagination_and_cursor_tampering,
    strict_request_bodies,
    unknown_routes_and_methods,
    deletes_need_confirmation,
    expired_and_orphaned_keys_stop_working,
    default_page_size_is_100,
    empty_bodies_and_scope_before_body,
    a_reviewer_address_cannot_become_an_agent,
);

/// An agent's key reads its mail; the address review notices go to must not be an agent's.
async fn a_reviewer_address_cannot_become_an_agent(app: &TestApp) {
    app.verified_domain("people.example").await;
    let account = app.account_id().await;
    use postagent_core::store::AccountStore as _;
    app.store.set_reviewer_email(&account, Some("boss@people.example")).await.expect("reviewer");
    let r = app.post("/v1/agents", json!({"email": "boss@people.example"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "agent_address_reserved"), "{}", r.body);
    // Nor another account's reviewer (its own address by default): that agent's key would
    // read the other account's approve links.
    app.other_account().await;
    app.verified_domain("example.net").await;
    let r = app.post("/v1/agents", json!({"email": "intruder@example.net"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "agent_address_reserved"), "{}", r.body);
    let ok = app.post("/v1/agents", json!({"email": "helper@people.example"})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // Nor the envelope sender of our outbound mail, whose bounce+… addresses carry DSNs back.
    for taken in ["bounce@people.example", "Bounce+x@people.example"] {
        let r = app.post("/v1/agents", json!({"email": taken})).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "agent_address_reserved"),
            "{taken}: {}",
            r.body
        );
    }
}

/// The response to a keyed API-key creation is kept for replay, but never in clear.
#[tokio::test]
async fn replayable_keys_are_sealed_at_rest() {
    let app = common::spawn_app(common::Db::Sqlite).await.expect("app");
    let send = || {
        app.http
            .post(format!("{}/v1/account/api-keys", app.base))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "seal-check")
            .json(&json!({"name": "sealed"}))
            .send()
    };
    let first: Value = send().await.expect("send").json().await.expect("json");
    let replay: Value = send().await.expect("send").json().await.expect("json");
    let key = first["key"].as_str().expect("key").to_owned();
    assert_eq!(replay["key"].as_str(), Some(key.as_str()), "the replay still shows the key");
    let dir = app.store_dir();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dir") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
    }
    assert!(bytes.len() > 4096, "the database files were read");
    let hex_part = &key["e2a_acct_".len()..];
    assert!(
        !bytes.windows(hex_part.len()).any(|w| w == hex_part.as_bytes()),
        "the plaintext key is in the database files"
    );
}

async fn health_info_and_request_ids(app: &TestApp) {
    let h = app.call(Method::GET, "/api/health", None, None).await;
    assert_eq!((h.status, &h.body), (StatusCode::OK, &json!({"status": "ok"})));
    let minted = h.headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id");
    assert!(minted.starts_with("req_") && minted.len() == 28, "{minted}");
    assert_eq!(h.headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));

    let info = app.call(Method::GET, "/v1/info", None, None).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body["version"], "1.0.0");
    assert_eq!(info.body["shared_domain"], SHARED_DOMAIN);
    assert_eq!(info.body["slug_registration_enabled"], true);
    assert_eq!(info.body["public_url"], app.base.as_str());

    let echoed = app
        .http
        .get(format!("{}/v1/info", app.base))
        .header("X-Request-Id", "trace-me-123")
        .send()
        .await
        .expect("request");
    assert_eq!(echoed.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-123"));
}

async fn authentication_failures(app: &TestApp) {
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong scheme", Some(format!("Basic {}", app.key))),
        ("not a key", Some("Bearer hello".into())),
        ("unknown key", Some(format!("Bearer e2a_acct_{}", "0".repeat(64)))),
    ];
    for (what, header) in cases {
        let mut req = app.http.get(format!("{}/v1/account", app.base));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let res = req.send().await.expect("request");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"e2a\""),
            "{what}"
        );
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    }
    // The scheme name is case-insensitive.
    let ok = app
        .http
        .get(format!("{}/v1/account", app.base))
        .header("Authorization", format!("bearer {}", app.key));
    assert_eq!(ok.send().await.expect("request").status(), StatusCode::OK);
}

async fn account_view(app: &TestApp) {
    let acct = app.get("/v1/account").await;
    assert_eq!(acct.status, StatusCode::OK, "{}", acct.body);
    assert_eq!(acct.body["user"]["email"], app.account_email.as_str());
    assert!(acct.body["user"]["id"].as_str().is_some_and(|id| id.starts_with("usr_")));
    assert_eq!(acct.body["scope"], "account");
    assert!(acct.body.get("agent_email").is_none());
    assert_eq!(acct.body["upgrade_url"], "");
    for k in ["max_agents", "max_domains", "max_messages_month", "max_storage_bytes"] {
        assert!(acct.body["limits"][k].as_i64().is_some_and(|n| n > 0), "{k}");
    }
    assert_eq!(
        acct.body["usage"],
        json!({"agents": 0, "domains": 0, "messages_month": 0, "storage_bytes": 0})
    );

    app.post("/v1/agents", json!({"email": "counted@agents.test"})).await;
    let acct = app.get("/v1/account").await;
    assert_eq!(acct.body["usage"]["agents"], 1);
}

async fn api_keys_lifecycle(app: &TestApp) {
    let created = app.post("/v1/account/api-keys", json!({"name": "ci"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created.body["key"].as_str().expect("key");
    assert!(key.starts_with("e2a_acct_") && key.len() == 73);
    assert_eq!(created.body["key_prefix"], &key[..16]);
    assert_eq!(created.body["scope"], "account");
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("apk_"));

    // The new key works, and the listing never shows plaintext.
    let with_new = app.call(Method::GET, "/v1/account", Some(key), None).await;
    assert_eq!(with_new.status, StatusCode::OK);
    let list = app.get("/v1/account/api-keys").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["next_cursor"], Value::Null);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "bootstrap key + ci");
    assert!(items.iter().all(|k| k.get("key").is_none()));
    assert!(items.iter().any(|k| k["id"] == id.as_str() && k["name"] == "ci"));

    let expired = app.post("/v1/account/api-keys", json!({"expires_at": "2001-01-01T00:00:00Z"})).await;
    assert_eq!((expired.status, expired.code()), (StatusCode::BAD_REQUEST, "invalid_expires_at"));
    let future = app.post("/v1/account/api-keys", json!({"expires_at": "2099-01-01T00:00:00+00:00"})).await;
    assert_eq!(future.status, StatusCode::CREATED);
    assert_eq!(future.body["expires_at"], "2099-01-01T00:00:00Z");
    let bad_scope = app.post("/v1/account/api-keys", json!({"scope": "root"})).await;
    assert_eq!(
        (bad_scope.status, bad_scope.locations()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["body.scope".to_owned()])
    );
    let no_agent = app.post("/v1/account/api-keys", json!({"scope": "agent"})).await;
    assert_eq!(
        (no_agent.status, no_agent.locations()),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["body.agent_email".to_owned()])
    );
    let ghost =
        app.post("/v1/account/api-keys", json!({"scope": "agent", "agent_email": "ghost@agents.test"})).await;
    assert_eq!(ghost.locations(), vec!["body.agent_email"]);

    let unconfirmed = app.delete(&format!("/v1/account/api-keys/{id}")).await;
    assert_eq!(
        (unconfirmed.status, unconfirmed.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    assert_eq!(unconfirmed.locations(), vec!["query.confirm"]);
    let deleted = app.delete(&format!("/v1/account/api-keys/{id}?confirm=DELETE")).await;
    assert_eq!((deleted.status, &deleted.body), (StatusCode::OK, &json!({"deleted": true, "id": id})));
    let revoked = app.call(Method::GET, "/v1/account", Some(key), None).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED, "a revoked key stops working at once");
    let again = app.delete(&format!("/v1/account/api-keys/{id}?confirm=DELETE")).await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "not_found"));
}

async fn api_key_idempotency(app: &TestApp) {
    let send = |key: &'static str, body: Value| {
        app.http
            .post(format!("{}/v1/account/api-keys", app.base))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("idem-1", json!({"name": "once"})).await.expect("send");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    let replay = send("idem-1", json!({"name": "once"})).await.expect("send");
    assert_eq!(replay.status(), StatusCode::CREATED);
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(first, replay, "the replay is the first response, key included");
    let keys = app.get("/v1/account/api-keys").await;
    assert_eq!(keys.body["items"].as_array().map(Vec::len), Some(2), "only one key was minted");

    let reuse = send("idem-1", json!({"name": "different"})).await.expect("send");
    assert_eq!(reuse.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reuse: Value = reuse.json().await.expect("json");
    assert_eq!(reuse["error"]["code"], "idempotency_key_reuse");

    // Errors are not remembered: the same key may be retried after a failure.
    let failed = send("idem-2", json!({"expires_at": "2001-01-01T00:00:00Z"})).await.expect("send");
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    let retried = send("idem-2", json!({"name": "fixed"})).await.expect("send");
    assert_eq!(retried.status(), StatusCode::CREATED);

    // Tolerated (ignored) on a PATCH or DELETE, as the SDK sends it there.
    app.post("/v1/agents", json!({"email": "idem@agents.test"})).await;
    let patch = app
        .http
        .patch(format!("{}/v1/agents/{}", app.base, enc("idem@agents.test")))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", "3072c5a6de4046cabf06a9684fe4f6ea")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(patch.status(), StatusCode::OK);
}

async fn agents_lifecycle(app: &TestApp) {
    app.verified_domain("corp.example").await;
    let created =
        app.post("/v1/agents", json!({"email": "Support+EU@Corp.Example", "name": "Support"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let a = &created.body;
    assert_eq!(a["email"], "support+eu@corp.example");
    assert_eq!(
        (a["domain"].as_str(), a["registered_domain"].as_str()),
        (Some("corp.example"), Some("corp.example"))
    );
    assert_eq!((a["name"].as_str(), a["domain_verified"].as_bool()), (Some("Support"), Some(true)));
    assert!(a["created_at"].is_string());
    for absent in ["id", "user_id", "public", "agent_mode", "webhook_url", "deleted_at"] {
        assert!(a.get(absent).is_none(), "{absent} must not appear");
    }
    let path = format!("/v1/agents/{}", enc("support+eu@corp.example"));
    assert_eq!(app.get(&path).await.body["email"], "support+eu@corp.example");

    let patched = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"name": "Support EU"}))).await;
    assert_eq!((patched.status, patched.body["name"].as_str()), (StatusCode::OK, Some("Support EU")));

    let dup = app.post("/v1/agents", json!({"email": "support+eu@corp.example"})).await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "agent_taken"));

    let trashed = app.delete(&format!("{path}?confirm=DELETE")).await;
    assert_eq!(
        trashed.body,
        json!({"deleted": true, "email": "support+eu@corp.example", "messages_deleted": 0})
    );
    assert_eq!(app.get("/v1/agents").await.body["items"], json!([]));
    let trash = app.get("/v1/agents?deleted=true").await;
    assert_eq!(trash.body["items"][0]["email"], "support+eu@corp.example");
    assert!(trash.body["items"][0]["deleted_at"].is_string());
    let in_trash = app.post("/v1/agents", json!({"email": "support+eu@corp.example"})).await;
    assert_eq!((in_trash.status, in_trash.code()), (StatusCode::CONFLICT, "address_in_trash"));

    let restored = app.post(&format!("{path}/restore"), Value::Null).await;
    assert_eq!(restored.status, StatusCode::OK);
    assert!(restored.body.get("deleted_at").is_none());
    let twice = app.post(&format!("{path}/restore"), Value::Null).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::CONFLICT, "not_in_trash"));

    let purged = app.delete(&format!("{path}?confirm=DELETE&permanent=true")).await;
    assert_eq!(purged.status, StatusCode::OK);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    let gone = app.delete(&format!("{path}?confirm=DELETE")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let fresh = app.post("/v1/agents", json!({"email": "support+eu@corp.example"})).await;
    assert_eq!(fresh.status, StatusCode::CREATED, "a purged address can be reused");
}

async fn agent_creation_rules(app: &TestApp) {
    let slug = app.post("/v1/agents", json!({"email": "my-bot@agents.test"})).await;
    assert_eq!(slug.status, StatusCode::CREATED, "{}", slug.body);
    assert_eq!((slug.body["domain_verified"].as_bool(), slug.body["name"].as_str()), (Some(true), Some("")));
    for (email, code) in [
        ("admin@agents.test", "invalid_slug"),
        ("a@agents.test", "invalid_slug"),
        ("-bot@agents.test", "invalid_slug"),
        ("my.bot@agents.test", "invalid_slug"),
        ("bot@unregistered.example", "domain_not_registered"),
    ] {
        let r = app.post("/v1/agents", json!({"email": email})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, code), "{email}");
    }
    app.post("/v1/domains", json!({"domain": "pending.example"})).await;
    let r = app.post("/v1/agents", json!({"email": "bot@pending.example"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "domain_not_verified"));
    let r = app.post("/v1/agents", json!({"email": "no-at-sign"})).await;
    assert_eq!((r.status, r.locations()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["body.email".to_owned()]));
    let r = app
        .post("/v1/agents", json!({"email": "bot@agents.test", "name": "x\r\nBcc: evil@example.org"}))
        .await;
    assert_eq!(r.locations(), vec!["body.name"]);
}

async fn agent_scoped_keys_stay_in_their_lane(app: &TestApp) {
    app.post("/v1/agents", json!({"email": "alpha@agents.test"})).await;
    app.post("/v1/agents", json!({"email": "beta@agents.test"})).await;
    let key = app.agent_key("alpha@agents.test").await;
    assert!(key.starts_with("e2a_agt_"));

    let acct = app.call(Method::GET, "/v1/account", Some(&key), None).await;
    assert_eq!(
        (acct.body["scope"].as_str(), acct.body["agent_email"].as_str()),
        (Some("agent"), Some("alpha@agents.test"))
    );
    let own =
        app.call(Method::GET, &format!("/v1/agents/{}", enc("alpha@agents.test")), Some(&key), None).await;
    assert_eq!(own.status, StatusCode::OK);
    let other =
        app.call(Method::GET, &format!("/v1/agents/{}", enc("beta@agents.test")), Some(&key), None).await;
    assert_eq!((other.status, other.code()), (StatusCode::FORBIDDEN, "forbidden"));
    for (method, path) in [
        (Method::GET, "/v1/agents"),
        (Method::GET, "/v1/domains"),
        (Method::GET, "/v1/account/api-keys"),
        (Method::POST, "/v1/account/api-keys"),
        (Method::DELETE, "/v1/agents/alpha%40agents.test?confirm=DELETE"),
        (Method::PATCH, "/v1/agents/alpha%40agents.test"),
    ] {
        let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
        let r = app.call(method.clone(), path, Some(&key), body).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path}");
    }
    let listed = app.get("/v1/account/api-keys").await;
    let agent_row =
        listed.body["items"].as_array().and_then(|a| a.iter().find(|k| k["scope"] == "agent").cloned());
    assert_eq!(agent_row.map(|k| k["agent_email"].clone()), Some(json!("alpha@agents.test")));
}

async fn other_accounts_resources_are_404(app: &TestApp) {
    app.verified_domain("mine.example").await;
    app.post("/v1/agents", json!({"email": "bot@mine.example"})).await;
    let created = app.post("/v1/account/api-keys", json!({"name": "mine"})).await;
    let key_id = created.body["id"].as_str().expect("id").to_owned();
    let intruder = app.other_account().await;
    let checks: Vec<(Method, String)> = vec![
        (Method::GET, "/v1/domains/mine.example".into()),
        (Method::POST, "/v1/domains/mine.example/verify".into()),
        (Method::DELETE, "/v1/domains/mine.example?confirm=DELETE".into()),
        (Method::GET, format!("/v1/agents/{}", enc("bot@mine.example"))),
        (Method::PATCH, format!("/v1/agents/{}", enc("bot@mine.example"))),
        (Method::DELETE, format!("/v1/agents/{}?confirm=DELETE&permanent=true", enc("bot@mine.example"))),
        (Method::POST, format!("/v1/agents/{}/restore", enc("bot@mine.example"))),
        (Method::DELETE, format!("/v1/account/api-keys/{key_id}?confirm=DELETE")),
    ];
    for (method, path) in checks {
        let body = (method == Method::PATCH).then(|| json!({"name": "pwned"}));
        let r = app.call(method.clone(), &path, Some(&intruder), body).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{method} {path}");
    }
    let taken =
        app.call(Method::POST, "/v1/domains", Some(&intruder), Some(json!({"domain": "mine.example"}))).await;
    assert_eq!((taken.status, taken.code()), (StatusCode::CONFLICT, "domain_taken"));
    let agent = app
        .call(Method::POST, "/v1/agents", Some(&intruder), Some(json!({"email": "bot@mine.example"})))
        .await;
    assert_eq!((agent.status, agent.code()), (StatusCode::BAD_REQUEST, "domain_not_registered"));
    let theirs = app.call(Method::GET, "/v1/agents", Some(&intruder), None).await;
    assert_eq!(theirs.body["items"], json!([]));
    assert_eq!(
        app.get(&format!("/v1/agents/{}", enc("bot@mine.example"))).await.body["name"],
        "",
        "unchanged"
    );
}

async fn pagination_and_cursor_tampering(app: &TestApp) {
    let mut expected = Vec::new();
    for i in 0..7 {
        let email = format!("bot-{i}@agents.test");
        app.post("/v1/agents", json!({"email": email})).await;
        expected.push(email);
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut first_cursor = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/agents?limit=3&cursor={}", enc(c)),
            None => "/v1/agents?limit=3".into(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for a in page.body["items"].as_array().expect("items") {
            seen.push(a["email"].as_str().expect("email").to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => {
                first_cursor.get_or_insert_with(|| c.to_owned());
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen, expected, "newest first, every agent once");

    let good = first_cursor.expect("more than one page");
    let mut tampered = good.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for bad in [tampered.as_str(), "garbage", "e30.AAAA"] {
        let r = app.get(&format!("/v1/agents?cursor={}", enc(bad))).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_cursor"), "{bad}");
    }
    let other_list = app.get(&format!("/v1/agents?deleted=true&cursor={}", enc(&good))).await;
    assert_eq!(other_list.code(), "invalid_cursor", "a cursor is pinned to its filters");
    let other_resource = app.get(&format!("/v1/domains?cursor={}", enc(&good))).await;
    assert_eq!(other_resource.code(), "invalid_cursor");
    for bad_limit in ["0", "101", "ten"] {
        let r = app.get(&format!("/v1/agents?limit={bad_limit}")).await;
        assert_eq!(
            (r.status, r.locations()),
            (StatusCode::UNPROCESSABLE_ENTITY, vec!["query.limit".to_owned()])
        );
    }
}

async fn strict_request_bodies(app: &TestApp) {
    let unknown = app.post("/v1/agents", json!({"email": "x@agents.test", "nam": "typo", "extra": 1})).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"));
    let mut locs = unknown.locations();
    locs.sort();
    assert_eq!(locs, vec!["body.extra", "body.nam"]);
    let cases = [
        (json!({"email": "x@agents.test", "name": 5}), "body.name"),
        (json!({"name": "no email"}), "body.email"),
        (json!({"email": "x@agents.test", "name": "n".repeat(201)}), "body.name"),
        (json!({"email": "x@agents.test", "name": "tab\there"}), "body.name"),
        (json!(["email"]), "body"),
    ];
    for (body, location) in cases {
        let r = app.post("/v1/agents", body.clone()).await;
        assert_eq!(
            (r.status, r.locations()),
            (StatusCode::UNPROCESSABLE_ENTITY, vec![location.to_owned()]),
            "{body}"
        );
    }
    let empty = app.post("/v1/agents", Value::Null).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY, "null body");

    let raw = |ct: &'static str, body: &'static str| {
        app.http
            .post(format!("{}/v1/agents", app.base))
            .bearer_auth(&app.key)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let malformed = raw("application/json", "{\"email\": ").await.expect("send");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_request");
    let form = raw("application/x-www-form-urlencoded", "email=x").await.expect("send");
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = app
        .http
        .post(format!("{}/v1/agents", app.base))
        .bearer_auth(&app.key)
        .json(&json!({"email": "x@agents.test", "name": "n".repeat(2 * 1024 * 1024)}))
        .send()
        .await
        .expect("send");
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = huge.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["details"]["scope"], "request_body");
    assert_eq!(app.get("/v1/agents").await.body["items"], json!([]), "nothing was created");
}

async fn unknown_routes_and_methods(app: &TestApp) {
    let missing = app.get("/v1/nope").await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));
    let wrong = app.call(Method::PUT, "/v1/agents", Some(&app.key), Some(json!({}))).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    assert_eq!(wrong.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
}

async fn deletes_need_confirmation(app: &TestApp) {
    app.post("/v1/agents", json!({"email": "keep@agents.test"})).await;
    for q in ["", "?confirm=delete", "?confirm=yes"] {
        let r = app.delete(&format!("/v1/agents/{}{q}", enc("keep@agents.test"))).await;
        assert_eq!(
            (r.status, r.locations()),
            (StatusCode::UNPROCESSABLE_ENTITY, vec!["query.confirm".to_owned()]),
            "{q}"
        );
    }
    let bad =
        app.delete(&format!("/v1/agents/{}?confirm=DELETE&permanent=maybe", enc("keep@agents.test"))).await;
    assert_eq!(bad.locations(), vec!["query.permanent"]);
    assert_eq!(app.get(&format!("/v1/agents/{}", enc("keep@agents.test"))).await.status, StatusCode::OK);
}

async fn expired_and_orphaned_keys_stop_working(app: &TestApp) {
    use postagent_core::apikey::{self, KeyScope};
    use postagent_core::store::{AccountStore, NewApiKey};
    use postagent_core::time::Timestamp;
    let minted = apikey::mint(KeyScope::Account);
    let expired = NewApiKey {
        account_id: app.account_id().await,
        name: "old".into(),
        scope: KeyScope::Account,
        agent_email: None,
        expires_at: Some(Timestamp::now().plus_secs(-1)),
        key_hash: minted.hash.clone(),
        key_prefix: minted.prefix.clone(),
    };
    app.store.create_api_key(expired).await.expect("create");
    let r = app.call(Method::GET, "/v1/account", Some(&minted.plaintext), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));

    app.post("/v1/agents", json!({"email": "temp@agents.test"})).await;
    let key = app.agent_key("temp@agents.test").await;
    let path = format!("/v1/agents/{}", enc("temp@agents.test"));
    assert_eq!(app.call(Method::GET, &path, Some(&key), None).await.status, StatusCode::OK);
    app.delete(&format!("{path}?confirm=DELETE")).await;
    assert_eq!(
        app.call(Method::GET, &path, Some(&key), None).await.status,
        StatusCode::UNAUTHORIZED,
        "agent in trash"
    );
    app.post(&format!("{path}/restore"), Value::Null).await;
    assert_eq!(app.call(Method::GET, &path, Some(&key), None).await.status, StatusCode::OK, "restored");
    app.delete(&format!("{path}?confirm=DELETE&permanent=true")).await;
    app.post("/v1/agents", json!({"email": "temp@agents.test"})).await;
    let r = app.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a purged agent's key does not open its successor");
}

async fn default_page_size_is_100(app: &TestApp) {
    use postagent_core::store::{AgentStore, NewAgent};
    let account = app.account_id().await;
    for i in 0..101 {
        let new = NewAgent {
            account_id: account.clone(),
            email: format!("bulk-{i:03}@agents.test"),
            domain: SHARED_DOMAIN.into(),
            name: String::new(),
            require_verified_domain: false,
        };
        app.store.create_agent(new).await.expect("create");
    }
    let first = app.get("/v1/agents").await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(100));
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    let second = app.get(&format!("/v1/agents?cursor={}", enc(&cursor))).await;
    assert_eq!(second.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(second.body["next_cursor"], Value::Null);
}

async fn empty_bodies_and_scope_before_body(app: &TestApp) {
    app.post("/v1/agents", json!({"email": "body@agents.test"})).await;
    let empty = app
        .http
        .patch(format!("{}/v1/agents/{}", app.base, enc("body@agents.test")))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .header("content-length", "0")
        .send()
        .await
        .expect("send");
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = empty.json().await.expect("json");
    assert_eq!(body["error"]["details"]["fields"][0]["location"], "body");
    // The SDK's empty-bodied POSTs (verify, restore) carry Content-Type and Content-Length: 0.
    let verify = app
        .http
        .post(format!("{}/v1/domains/none.example/verify", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .header("content-length", "0")
        .send()
        .await
        .expect("send");
    assert_eq!(verify.status(), StatusCode::NOT_FOUND, "parsed as a request, not a body error");

    let key = app.agent_key("body@agents.test").await;
    let r = app.call(Method::POST, "/v1/agents", Some(&key), Some(json!({"bogus": true}))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "scope is checked before the body"
    );
}
