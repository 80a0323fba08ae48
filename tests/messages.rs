//! The messages and conversations API over HTTP, on SQLite and PostgreSQL, with messages
//! filed the way the LMTP server files them.

mod common;

use base64::Engine;
use common::{TestApp, enc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    inbox_and_message_view,
    labels_trash_and_restore,
    attachments_and_download_links,
    conversations_and_scope
);

const PDF: &str = "JVBERi0xLjQKJcfs";

fn mail(subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: {subject}\r\nMessage-ID: <{}@example.org>\r\n{extra}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from {subject}\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--a--\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"in voice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{PDF}\r\n--b--\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

fn inbox(agent: &str) -> String {
    format!("/v1/agents/{}/messages", enc(agent))
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": "bot@agents.test"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn inbox_and_message_view(app: &TestApp) {
    setup(app).await;
    let first = app.deliver("bot@agents.test", &mail("first one", ""), true).await;
    let second = app.deliver("bot@agents.test", &mail("second", ""), false).await;

    let list = app.get(&inbox("bot@agents.test")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let items = list.body["items"].as_array().expect("items").clone();
    assert_eq!(
        items.iter().map(|m| m["id"].as_str().unwrap_or("")).collect::<Vec<_>>(),
        vec![second.as_str(), first.as_str()]
    );
    let summary = &items[1];
    for key in [
        "id",
        "direction",
        "header_from",
        "envelope_from",
        "verified_domain",
        "to",
        "delivered_to",
        "subject",
        "read_status",
        "labels",
        "created_at",
    ] {
        assert!(summary.get(key).is_some(), "summary lacks {key}: {summary}");
    }
    assert_eq!(summary["verified_domain"], "example.org");
    assert_eq!(items[0]["verified_domain"], Value::Null, "unsigned mail is never verified");
    assert_eq!(
        (summary["direction"].as_str(), summary["read_status"].as_str()),
        (Some("inbound"), Some("unread"))
    );

    let view = app.get(&format!("{}/{first}", inbox("bot@agents.test"))).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    let v = &view.body;
    assert_eq!(v["authentication"]["dmarc"]["status"], "pass");
    assert_eq!(v["header_from"], "alice@example.org");
    assert_eq!(v["conversation_id"], "", "no thread: empty, not absent");
    assert_eq!(v["parsed"]["text"].as_str().map(str::trim), Some("Hello from first one"));
    assert_eq!(v["parsed"]["truncated"], false);
    assert!(v["parsed"]["html"].as_str().is_some_and(|h| h.contains("<p>Hello</p>")));
    assert_eq!(
        v["attachments"],
        json!([{"index": 0, "size_bytes": 12, "filename": "in voice.pdf", "content_type": "application/pdf"}])
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["raw_message"].as_str().expect("raw"))
        .expect("b64");
    assert!(String::from_utf8_lossy(&raw).contains("X-E2A-Auth-Signature"));
    assert_eq!(v["read_status"], "read", "reading flips it to read");
    let unread = app.get(&inbox("bot@agents.test")).await;
    assert_eq!(unread.body["items"].as_array().map(Vec::len), Some(1), "the default inbox is unread mail");
    let all = app.get(&format!("{}?read_status=all&sort=asc", inbox("bot@agents.test"))).await;
    assert_eq!(all.body["items"][0]["id"], first.as_str(), "ascending");
    let by_subject =
        app.get(&format!("{}?read_status=all&subject_contains=SECOND", inbox("bot@agents.test"))).await;
    assert_eq!(by_subject.body["items"].as_array().map(Vec::len), Some(1));
    let outbound = app.get(&format!("{}?direction=outbound", inbox("bot@agents.test"))).await;
    assert_eq!(outbound.body["items"], json!([]));
    for (q, loc) in [
        ("direction=sideways", "query.direction"),
        ("since=yesterday", "query.since"),
        ("read_status=maybe", "query.read_status"),
    ] {
        let r = app.get(&format!("{}?{q}", inbox("bot@agents.test"))).await;
        assert_eq!(
            (r.status, r.locations()),
            (StatusCode::UNPROCESSABLE_ENTITY, vec![loc.to_owned()]),
            "{q}"
        );
    }
    let paged = app.get(&format!("{}?read_status=all&limit=1", inbox("bot@agents.test"))).await;
    let cursor = paged.body["next_cursor"].as_str().expect("cursor").to_owned();
    let next = app
        .get(&format!("{}?read_status=all&limit=1&cursor={}", inbox("bot@agents.test"), enc(&cursor)))
        .await;
    assert_eq!(next.body["items"][0]["id"], first.as_str());
    let changed = app
        .get(&format!("{}?read_status=unread&limit=1&cursor={}", inbox("bot@agents.test"), enc(&cursor)))
        .await;
    assert_eq!(changed.code(), "invalid_cursor", "filters are pinned in the cursor");
    assert_eq!(
        app.get(&format!("{}/msg_nope", inbox("bot@agents.test"))).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn labels_trash_and_restore(app: &TestApp) {
    setup(app).await;
    let id = app.deliver("bot@agents.test", &mail("labels", ""), true).await;
    let path = format!("{}/{id}", inbox("bot@agents.test"));
    let r = app
        .call(Method::PATCH, &path, Some(&app.key), Some(json!({"add_labels": ["todo", "vip:gold"]})))
        .await;
    assert_eq!(
        (r.status, &r.body),
        (StatusCode::OK, &json!({"message_id": id, "labels": ["todo", "vip:gold"]}))
    );
    let r = app
        .call(
            Method::PATCH,
            &path,
            Some(&app.key),
            Some(json!({"add_labels": ["done"], "remove_labels": ["todo"]})),
        )
        .await;
    assert_eq!(r.body["labels"], json!(["vip:gold", "done"]));
    let filtered =
        app.get(&format!("{}?read_status=all&labels=done,vip:gold", inbox("bot@agents.test"))).await;
    assert_eq!(filtered.body["items"].as_array().map(Vec::len), Some(1));
    for bad in [
        json!({"add_labels": ["Bad Label"]}),
        json!({"add_labels": ["e2a:system"]}),
        json!({"add_label": ["x"]}),
    ] {
        let r = app.call(Method::PATCH, &path, Some(&app.key), Some(bad.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    let not_trashed = app.delete(&format!("{path}?permanent=true&confirm=DELETE")).await;
    assert_eq!((not_trashed.status, not_trashed.code()), (StatusCode::CONFLICT, "not_in_trash"));
    let trashed = app.delete(&path).await;
    assert_eq!((trashed.status, &trashed.body), (StatusCode::OK, &json!({"deleted": true, "id": id})));
    assert_eq!(
        app.get(&format!("{}?read_status=all", inbox("bot@agents.test"))).await.body["items"],
        json!([])
    );
    let trash = app.get(&format!("{}?deleted=true", inbox("bot@agents.test"))).await;
    assert_eq!(trash.body["items"][0]["id"], id.as_str());
    assert!(trash.body["items"][0]["deleted_at"].is_string());
    let restored = app.post(&format!("{path}/restore"), Value::Null).await;
    assert_eq!(restored.status, StatusCode::OK);
    assert!(restored.body.get("deleted_at").is_none());
    assert_eq!(app.post(&format!("{path}/restore"), Value::Null).await.code(), "not_in_trash");
    app.delete(&path).await;
    let unconfirmed = app.delete(&format!("{path}?permanent=true")).await;
    assert_eq!(unconfirmed.locations(), vec!["query.confirm"]);
    let agent_key = app.agent_key("bot@agents.test").await;
    let r = app
        .call(Method::DELETE, &format!("{path}?permanent=true&confirm=DELETE"), Some(&agent_key), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "permanent deletion needs the account");
    assert_eq!(app.delete(&format!("{path}?permanent=true&confirm=DELETE")).await.status, StatusCode::OK);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
}

async fn attachments_and_download_links(app: &TestApp) {
    setup(app).await;
    let id = app.deliver("bot@agents.test", &mail("files", ""), true).await;
    let path = format!("{}/{id}/attachments/0", inbox("bot@agents.test"));
    let meta = app.get(&path).await;
    assert_eq!(meta.status, StatusCode::OK, "{}", meta.body);
    assert_eq!(
        (meta.body["filename"].as_str(), meta.body["size_bytes"].as_i64()),
        (Some("in voice.pdf"), Some(12))
    );
    assert!(meta.body.get("data").is_none(), "bytes only with inline=true");
    assert!(meta.body["expires_at"].is_string());
    let url = meta.body["download_url"].as_str().expect("download_url").to_owned();
    assert!(url.starts_with(&app.base), "{url}");
    let bytes = app.http.get(&url).send().await.expect("download");
    assert_eq!(bytes.status(), StatusCode::OK);
    assert!(bytes.headers()["content-disposition"].to_str().expect("ascii").contains("in voice.pdf"));
    let expected = base64::engine::general_purpose::STANDARD.decode(PDF).expect("b64");
    assert_eq!(bytes.bytes().await.expect("body").to_vec(), expected, "no bearer key needed, exact bytes");
    let tampered = url.replace("/attachments/0/", "/attachments/1/");
    assert_eq!(app.http.get(&tampered).send().await.expect("send").status(), StatusCode::FORBIDDEN);
    let forged = format!("{}x", url);
    assert_eq!(app.http.get(&forged).send().await.expect("send").status(), StatusCode::FORBIDDEN);

    let inline = app.get(&format!("{path}?inline=true")).await;
    let data = base64::engine::general_purpose::STANDARD
        .decode(inline.body["data"].as_str().expect("data"))
        .expect("b64");
    assert_eq!(data, expected);
    let missing = app.get(&format!("{}/{id}/attachments/5", inbox("bot@agents.test"))).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "attachment_not_found"));
}

async fn conversations_and_scope(app: &TestApp) {
    setup(app).await;
    app.post("/v1/agents", json!({"email": "peer@agents.test"})).await;
    // A thread: our own agent's mail (signed as agent mail for this account) carries its
    // conversation id; the reply joins it through References.
    use postagent_core::auth::headers::EntityType;
    use postagent_core::inbound::{self, Delivered};
    use postagent_core::secret::Secret;
    use postagent_core::time::Timestamp;
    let opener = "From: peer@agents.test\r\nTo: bot@agents.test\r\nSubject: Plan\r\nMessage-ID: <plan@agents.test>\r\nX-E2A-Conversation-Id: conv_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nhi\r\n";
    let delegation = format!("agent=peer@agents.test;human={}", app.account_id().await.as_str());
    let signed = common::signed_for(
        "bot@agents.test",
        "peer@agents.test",
        EntityType::Agent,
        &delegation,
        opener.as_bytes(),
    );
    let p = inbound::prepare(
        &Secret::new(vec![42; 32]),
        signed,
        "peer@agents.test",
        &["bot@agents.test".to_owned()],
        Timestamp::now(),
    );
    assert!(p.claims.is_some(), "{:?}", p.unsigned_reason);
    let Delivered::Stored { .. } =
        inbound::store_for(app.store.as_ref(), &p, "bot@agents.test", Timestamp::now()).await.expect("store")
    else {
        panic!("stored")
    };
    app.deliver("bot@agents.test", &mail("Re Plan", "In-Reply-To: <plan@agents.test>\r\n"), true).await;
    app.deliver("bot@agents.test", &mail("unrelated", ""), true).await;

    let list = app.get(&format!("/v1/agents/{}/conversations", enc("bot@agents.test"))).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "conv_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!((items[0]["message_count"].as_i64(), items[0]["has_unread"].as_bool()), (Some(2), Some(true)));
    assert_eq!(items[0]["latest_subject"], "Re Plan");
    let detail = app
        .get(&format!(
            "/v1/agents/{}/conversations/conv_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            enc("bot@agents.test")
        ))
        .await;
    assert_eq!(detail.body["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(detail.body["messages"][0]["subject"], "Plan", "oldest first");
    let participants = detail.body["participants"].as_array().expect("participants");
    assert!(
        participants.contains(&json!("alice@example.org"))
            && participants.contains(&json!("peer@agents.test"))
    );
    let missing = app.get(&format!("/v1/agents/{}/conversations/conv_nope", enc("bot@agents.test"))).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // Scope: an agent key reads its own mail only; another account sees nothing.
    let key = app.agent_key("bot@agents.test").await;
    assert_eq!(
        app.call(Method::GET, &inbox("bot@agents.test"), Some(&key), None).await.status,
        StatusCode::OK
    );
    let other = app.call(Method::GET, &inbox("peer@agents.test"), Some(&key), None).await;
    assert_eq!((other.status, other.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let intruder = app.other_account().await;
    let r = app.call(Method::GET, &inbox("bot@agents.test"), Some(&intruder), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}
