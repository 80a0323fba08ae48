//! Templates on SQLite and PostgreSQL: the resource and its rules, validate, the starter
//! catalog, and sending by id or alias, rendered before the gate so a held draft shows the
//! final text.

use crate::common;

use common::{TestApp, enc};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_backends!(templates_are_stored_checked_and_listed, sends_render_templates_before_any_hold);

const BOT: &str = "bot@agents.test";

async fn templates_are_stored_checked_and_listed(app: &TestApp) {
    let r = app
        .post(
            "/v1/templates",
            json!({"name": "Order", "alias": "order", "subject": "Order {{id}}", "text": "Hi {{name}}",
                "html": "<p>{{name}}</p>"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("tmpl_") && r.body["created_at"] == r.body["updated_at"], "{}", r.body);
    assert!(r.body.get("from_starter_alias").is_none(), "{}", r.body);

    // The rules: alias taken, bad syntax (with the part), missing parts, bad alias.
    let again =
        app.post("/v1/templates", json!({"name": "x", "alias": "order", "subject": "s", "text": "t"})).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "alias_taken"));
    let bad = app.post("/v1/templates", json!({"name": "x", "subject": "Hi {{name", "text": "t"})).await;
    assert_eq!(bad.code(), "invalid_template", "{}", bad.body);
    assert_eq!(bad.body["error"]["details"]["part"], "subject");
    let bad =
        app.post("/v1/templates", json!({"name": "x", "subject": "s", "text": "{{#each}}x{{/each}}"})).await;
    assert_eq!(bad.body["error"]["details"]["part"], "text", "{}", bad.body);
    assert_eq!(app.post("/v1/templates", json!({})).await.code(), "invalid_request");
    let r =
        app.post("/v1/templates", json!({"name": "x", "alias": "9bad", "subject": "s", "text": "t"})).await;
    assert_eq!(r.code(), "invalid_request");
    let r = app.post("/v1/templates", json!({"name": "x", "subject": "s", "text": "t", "body": "old"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");

    // Update: the merged result is checked; clearing the alias and the HTML.
    let one = format!("/v1/templates/{id}");
    let r = app.call(Method::PATCH, &one, Some(&app.key), Some(json!({"text": ""}))).await;
    assert_eq!(r.code(), "invalid_request");
    let r = app
        .call(Method::PATCH, &one, Some(&app.key), Some(json!({"alias": "", "html": "", "name": "N"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.get("alias").is_none() && r.body.get("html").is_none(), "{}", r.body);
    assert_eq!(r.body["name"], "N");
    assert_eq!(app.get(&one).await.body["name"], "N");

    // From a starter: copied verbatim, named after it, with its provenance.
    let s = app.post("/v1/templates", json!({"from_starter": "welcome"})).await;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.body);
    assert_eq!(
        (s.body["alias"].as_str(), s.body["from_starter_version"].as_str()),
        (Some("welcome"), Some("1.0.0"))
    );
    assert_eq!(s.body["subject"], "Welcome to {{company_name}}");
    let r = app.post("/v1/templates", json!({"from_starter": "nope"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "starter_template_not_found"));
    let r = app.post("/v1/templates", json!({"from_starter": "welcome", "subject": "x"})).await;
    assert_eq!(r.code(), "invalid_request");

    // Listing: newest first, metadata only, paged.
    let page = app.get("/v1/templates?limit=1").await;
    assert_eq!(page.body["items"][0]["id"], s.body["id"]);
    assert!(page.body["items"][0].get("text").is_none(), "{}", page.body);
    let next = page.body["next_cursor"].as_str().expect("more");
    let rest = app.get(&format!("/v1/templates?limit=1&cursor={}", enc(next))).await;
    assert_eq!(rest.body["items"][0]["id"], id.as_str());

    // Validate: 200 whatever the source, the preview only when valid.
    let v = app
        .post(
            "/v1/templates/validate",
            json!({"subject": "Hi {{name}}", "text": "Welcome {{name}} to {{company}} {{user.tier}}",
                "html": "<b>{{name}}</b>", "test_data": {"name": "A&B", "company": "Acme"}}),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.body["valid"], true);
    assert_eq!(v.body["rendered"]["text"], "Welcome A&B to Acme ");
    assert_eq!(v.body["rendered"]["html"], "<b>A&amp;B</b>");
    assert_eq!(v.body["suggested_data"]["user"]["tier"], "user.tier_value");
    let v = app.post("/v1/templates/validate", json!({"subject": "Hi {{name"})).await;
    assert_eq!(
        (v.body["valid"].as_bool(), v.body["errors"][0]["part"].as_str()),
        (Some(false), Some("subject"))
    );
    assert!(v.body.get("rendered").is_none(), "{}", v.body);
    let v = app.post("/v1/templates/validate", json!({})).await;
    assert_eq!(v.body["errors"], json!([]));
    assert!(v.body.get("suggested_data").is_none());

    // Starters.
    let list = app.get("/v1/starter-templates").await;
    let aliases: Vec<&str> =
        list.body["items"].as_array().expect("items").iter().filter_map(|s| s["alias"].as_str()).collect();
    assert_eq!(aliases.len(), 7);
    assert!(aliases.windows(2).all(|w| w[0] < w[1]), "by alias: {aliases:?}");
    let one = app.get("/v1/starter-templates/verify-code").await;
    assert!(one.body["html"].as_str().is_some_and(|h| h.contains("{{code}}")), "{}", one.body);
    assert_eq!(app.get("/v1/starter-templates/none").await.code(), "starter_template_not_found");

    // Delete needs its confirmation; another account sees nothing.
    let other = app.other_account().await;
    let r = app.call(Method::GET, &format!("/v1/templates/{id}"), Some(&other), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("/v1/templates/{id}")).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.delete(&format!("/v1/templates/{id}?confirm=DELETE")).await;
    assert_eq!(r.body, json!({"deleted": true, "id": id}));
    assert_eq!(app.delete(&format!("/v1/templates/{id}?confirm=DELETE")).await.status, StatusCode::NOT_FOUND);
    // An agent key manages none of it.
    let r = app.post("/v1/agents", json!({"email": BOT})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let key = app.agent_key(BOT).await;
    assert_eq!(app.call(Method::GET, "/v1/templates", Some(&key), None).await.status, StatusCode::FORBIDDEN);
}

async fn sends_render_templates_before_any_hold(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": BOT})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let t = app
        .post(
            "/v1/templates",
            json!({"name": "t", "alias": "hello", "subject": "Hello {{name}}",
                "text": "Hi {{name}}, your plan is {{plan.tier}}.", "html": "<p>Hi {{name}}: {{{markup}}}</p>"}),
        )
        .await;
    let id = t.body["id"].as_str().expect("id").to_owned();
    let msgs = format!("/v1/agents/{}/messages", enc(BOT));
    let data = json!({"name": "A&B", "plan": {"tier": "pro"}, "markup": "<i>hi</i>"});
    let sent =
        app.post(&msgs, json!({"to": ["x@example.com"], "template_id": id, "template_data": data})).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let m = app.get(&format!("{msgs}/{}", sent.body["message_id"].as_str().expect("id"))).await;
    assert_eq!(m.body["subject"], "Hello A&B");
    let raw = String::from_utf8(common::mail::raw_of(&m.body)).expect("utf-8");
    assert!(raw.contains("Hi A&B, your plan is pro."), "{raw}");
    assert!(raw.contains("<p>Hi A&amp;B: <i>hi</i></p>"), "{raw}");

    // By alias, held for review: the reviewer reads the rendered text.
    let protection = json!({
        "inbound": {"gate": {"policy": "open"}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
    });
    let path = format!("/v1/agents/{}/protection", enc(BOT));
    assert_eq!(app.call(Method::PUT, &path, Some(&app.key), Some(protection)).await.status, StatusCode::OK);
    let held = app
        .post(
            &msgs,
            json!({"to": ["y@example.com"], "template_alias": "hello", "template_data": {"name": "Zoe"}}),
        )
        .await;
    assert_eq!(held.body["status"], "pending_review", "{}", held.body);
    let review = app.get(&format!("/v1/reviews/{}", held.body["message_id"].as_str().expect("id"))).await;
    assert_eq!(review.body["subject"], "Hello Zoe", "{}", review.body);
    let view = app.get(&format!("{msgs}/{}", held.body["message_id"].as_str().expect("id"))).await;
    assert!(
        view.body["body"].to_string().contains("your plan is ."),
        "missing values render empty: {}",
        view.body
    );

    // The errors, each before anything is stored.
    let bare = app
        .post(
            "/v1/templates",
            json!({"name": "b", "alias": "bare", "subject": "{{title}}", "text": "{{body}}"}),
        )
        .await;
    assert_eq!(bare.status, StatusCode::CREATED, "{}", bare.body);
    for (body, code) in [
        (json!({"to": ["x@example.com"], "template_id": "tmpl_none"}), "template_not_found"),
        (json!({"to": ["x@example.com"], "template_id": id, "template_alias": "hello"}), "invalid_request"),
        (json!({"to": ["x@example.com"], "template_id": id, "subject": "s"}), "invalid_request"),
        (
            json!({"to": ["x@example.com"], "subject": "s", "text": "t", "template_data": {"a": 1}}),
            "invalid_request",
        ),
        (
            json!({"to": ["x@example.com"], "template_alias": "bare", "template_data": {"title": "", "body": "b"}}),
            "template_rendered_empty",
        ),
    ] {
        let r = app.post(&msgs, body.clone()).await;
        assert_eq!(r.code(), code, "{body}: {}", r.body);
    }
    let empty = app
        .post(
            &msgs,
            json!({"to": ["x@example.com"], "template_alias": "bare", "template_data": {"title": "t"}}),
        )
        .await;
    assert_eq!(
        empty.body["error"]["details"],
        json!({"part": "text", "variables": ["body"]}),
        "{}",
        empty.body
    );
    // Data smuggling a line break into the subject is the send's own header check.
    let r = app
        .post(&msgs, json!({"to": ["x@example.com"], "template_alias": "hello", "template_data": {"name": "a\r\nBcc: z@e.com"}}))
        .await;
    assert_eq!(r.code(), "invalid_request", "{}", r.body);
}
