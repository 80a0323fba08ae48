//! The messages and conversations API over HTTP, on SQLite and PostgreSQL, with messages
//! filed the way the LMTP server files them.

use crate::common;

use base64::Engine;
use common::{TestApp, enc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    inbox_and_message_view,
    labels_trash_and_restore,
    attachments_and_download_links,
    conversations_and_scope,
    list_filters_are_checked_like_e2a,
    download_links_check_in_e2a_order,
    a_trashed_agent_is_not_found
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
    for (q, loc) in [("direction=sideways", "query.direction"), ("read_status=maybe", "query.read_status")] {
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
    // The schema refuses unknown fields (422); the label rules are the handler's (400).
    let r = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"add_label": ["x"]}))).await;
    assert_eq!(r.locations(), vec!["body.add_label"]);
    let e2a = |m: &str| (400, "invalid_request".to_owned(), m.to_owned());
    let many: Vec<String> = (0..51).map(|i| format!("l{i}")).collect();
    for (bad, want) in [
        (
            json!({"add_labels": ["bad label"]}),
            e2a("label \"bad label\" has invalid character; allowed: a-z 0-9 : - _"),
        ),
        (
            json!({"add_labels": ["e2a:system"]}),
            e2a("labels starting with \"e2a:\" are reserved for system use"),
        ),
        (json!({"remove_labels": [""]}), e2a("label must not be empty")),
        (json!({"add_labels": ["x".repeat(65)]}), e2a("label too long (max 64 chars)")),
        (json!({"add_labels": many}), e2a("add_labels exceeds per-request cap of 50")),
    ] {
        let r = app.call(Method::PATCH, &path, Some(&app.key), Some(bad.clone())).await;
        assert_eq!(r.error(), want, "{bad}");
    }
    // Labels are trimmed and lowercased, as e2a stores them; an empty change is a read.
    let r = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"add_labels": [" Urgent "]}))).await;
    assert_eq!(r.body["labels"], json!(["vip:gold", "done", "urgent"]));
    let r = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({}))).await;
    assert_eq!((r.status, &r.body["labels"]), (StatusCode::OK, &json!(["vip:gold", "done", "urgent"])));
    let hundred: Vec<String> = (0..50).map(|i| format!("x{i}")).collect();
    app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"add_labels": hundred}))).await;
    let more: Vec<String> = (0..50).map(|i| format!("y{i}")).collect();
    let r = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"add_labels": more}))).await;
    assert_eq!(r.error(), e2a("label limit exceeded — a message may carry at most 100 labels"));
    let r = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"remove_labels": ["urgent"]}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cleared: Vec<String> = (0..50).map(|i| format!("x{i}")).collect();
    app.call(Method::PATCH, &path, Some(&app.key), Some(json!({"remove_labels": cleared}))).await;

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

    let inline = app.get(&format!("{path}?inline=true")).await;
    let data = base64::engine::general_purpose::STANDARD
        .decode(inline.body["data"].as_str().expect("data"))
        .expect("b64");
    assert_eq!(data, expected);
    let missing = app.get(&format!("{}/{id}/attachments/5", inbox("bot@agents.test"))).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "attachment_not_found"));
    for bad in ["-1", "x"] {
        let r = app.get(&format!("{}/{id}/attachments/{bad}", inbox("bot@agents.test"))).await;
        assert_eq!(
            (r.status, r.locations()),
            (StatusCode::UNPROCESSABLE_ENTITY, vec!["path.index".to_owned()])
        );
    }
}

async fn conversations_and_scope(app: &TestApp) {
    setup(app).await;
    app.post("/v1/agents", json!({"email": "peer@agents.test"})).await;
    // A thread: our own agent's mail (signed as agent mail for this account) carries its
    // conversation id; the reply joins it through References.
    use postagent_core::auth::headers::EntityType;
    use postagent_core::mail::inbound::{self, Delivered};
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

/// 400 `invalid_filter` for the handler's filter checks, with e2a's messages; 422 for the
/// schema's (enums, limit).
async fn list_filters_are_checked_like_e2a(app: &TestApp) {
    setup(app).await;
    let filter = |m: &str| (400, "invalid_filter".to_owned(), m.to_owned());
    let many: Vec<String> = (0..51).map(|i| format!("l{i}")).collect();
    let long = "x".repeat(201);
    for (q, want) in [
        ("since=yesterday".to_owned(), filter("since must be RFC3339 (e.g. 2026-05-25T00:00:00Z)")),
        ("until=2026-13-01".to_owned(), filter("until must be RFC3339 (e.g. 2026-05-25T00:00:00Z)")),
        (
            "since=2026-05-25T00:00:00Z&until=2026-05-24T00:00:00Z".to_owned(),
            filter("since must be earlier than until"),
        ),
        (format!("labels={}", many.join(",")), filter("labels filter exceeds cap of 50")),
        (
            "labels=a%20b".to_owned(),
            filter("labels filter: label \"a b\" has invalid character; allowed: a-z 0-9 : - _"),
        ),
        (format!("from={long}"), filter("from filter too long (max 200 chars)")),
        (format!("subject_contains={long}"), filter("subject_contains filter too long (max 200 chars)")),
        (format!("conversation_id={long}"), filter("conversation_id too long (max 200 chars)")),
        ("conversation_id=a%0Db".to_owned(), filter("conversation_id must not contain CR or LF")),
        (
            "direction=outbound&read_status=unread".to_owned(),
            filter(
                "status filter only applies to inbound messages — pass status=all when direction=outbound",
            ),
        ),
    ] {
        let r = app.get(&format!("{}?{q}", inbox("bot@agents.test"))).await;
        assert_eq!(r.error(), want, "{q}");
    }
    let ok = app
        .get(&format!(
            "{}?direction=outbound&read_status=all&labels=e2a:flagged,Work",
            inbox("bot@agents.test")
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "system labels may be filtered on: {}", ok.body);
    for path in [
        format!("/v1/agents/{}/conversations?since=nope", enc("bot@agents.test")),
        "/v1/events?until=nope".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.error().1, "invalid_filter", "{path}");
    }
}

/// The download link: index form (400), token presence (401), token (403), then lookups
/// (404); the attachment's own type, but never one a browser would render.
async fn download_links_check_in_e2a_order(app: &TestApp) {
    setup(app).await;
    let html = "--b\r\nContent-Type: text/html; name=page.html\r\nContent-Disposition: attachment; filename=page.html\r\n\r\n<script>alert(1)</script>\r\n--b--\r\n";
    let raw = String::from_utf8(mail("files", "")).expect("utf-8").replace("--b--\r\n", html);
    let id = app.deliver("bot@agents.test", raw.as_bytes(), true).await;
    let url_of = |i: u32| format!("{}/{id}/attachments/{i}", inbox("bot@agents.test"));
    let url = app.get(&url_of(0)).await.body["download_url"].as_str().expect("url").to_owned();
    let got = app.http.get(&url).send().await.expect("download");
    assert_eq!(got.status(), StatusCode::OK);
    let header = |r: &reqwest::Response, h: &str| r.headers()[h].to_str().expect("ascii").to_owned();
    assert_eq!(header(&got, "content-type"), "application/pdf", "the attachment's own type");
    assert_eq!(header(&got, "x-content-type-options"), "nosniff");
    assert_eq!(header(&got, "content-disposition"), "attachment; filename=\"in voice.pdf\"");
    let page = app.get(&url_of(1)).await.body["download_url"].as_str().expect("url").to_owned();
    let got = app.http.get(&page).send().await.expect("download");
    assert_eq!(header(&got, "content-type"), "application/octet-stream", "HTML is never served as HTML");
    assert!(header(&got, "content-security-policy").contains("sandbox"));

    let (base, token) = url.split_once("?token=").expect("token");
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
            body["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    let cases = [
        (
            base.replace("/attachments/0/", "/attachments/-1/") + "?token=" + token,
            400,
            "invalid_request",
            "invalid attachment index",
        ),
        (
            base.replace("/attachments/0/", "/attachments/x/"),
            400,
            "invalid_request",
            "invalid attachment index",
        ),
        (base.to_owned(), 401, "unauthorized", "token query parameter required"),
        (format!("{base}?token="), 401, "unauthorized", "token query parameter required"),
        (format!("{url}x"), 403, "forbidden", "invalid or expired download token"),
        (
            url.replace("/attachments/0/", "/attachments/1/"),
            403,
            "forbidden",
            "invalid or expired download token",
        ),
        (
            url.replace(&enc("bot@agents.test"), &enc("other@agents.test")),
            404,
            "not_found",
            "agent not found",
        ),
    ];
    for (u, status, code, message) in cases {
        let r = app.http.get(&u).send().await.expect("send");
        if status == 401 {
            assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"e2a\"", "{u}");
        }
        assert_eq!(error(r).await, (status, code.to_owned(), message.to_owned()), "{u}");
    }
}

/// A trashed agent is seen only in the trash list and by restore: every per-agent route
/// answers 404 as for an agent that never existed.
async fn a_trashed_agent_is_not_found(app: &TestApp) {
    setup(app).await;
    let id = app.deliver("bot@agents.test", &mail("files", ""), true).await;
    let url = app.get(&format!("{}/{id}/attachments/0", inbox("bot@agents.test"))).await.body["download_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let agent = format!("/v1/agents/{}", enc("bot@agents.test"));
    assert_eq!(app.delete(&format!("{agent}?confirm=DELETE")).await.status, StatusCode::OK);
    let msg = format!("{agent}/messages/{id}");
    for (method, path, body) in [
        (Method::GET, agent.clone(), None),
        (Method::PATCH, agent.clone(), Some(json!({"name": "x"}))),
        (Method::PATCH, agent.clone(), Some(json!({}))),
        (Method::GET, format!("{agent}/messages"), None),
        (Method::GET, msg.clone(), None),
        (Method::PATCH, msg.clone(), Some(json!({"add_labels": ["x"]}))),
        (Method::GET, format!("{msg}/attachments/0"), None),
        (Method::POST, format!("{msg}/reply"), Some(json!({"text": "hi"}))),
        (
            Method::POST,
            format!("{agent}/messages"),
            Some(json!({"to": ["a@example.org"], "subject": "s", "text": "t"})),
        ),
        (Method::GET, format!("{agent}/conversations"), None),
        (Method::GET, format!("{agent}/protection"), None),
        (Method::GET, format!("{agent}/ws"), None),
    ] {
        let r = app.call(method.clone(), &path, Some(&app.key), body).await;
        assert_eq!(r.error(), (404, "not_found".to_owned(), "agent not found".to_owned()), "{method} {path}");
    }
    let r = app.http.get(&url).send().await.expect("download");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "its attachment links die with it");
    let trash = app.get("/v1/agents?deleted=true").await;
    assert_eq!(trash.body["items"][0]["email"], "bot@agents.test");
    let back = app.post(&format!("{agent}/restore"), Value::Null).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(app.get(&msg).await.status, StatusCode::OK, "restored with its mail");
}
