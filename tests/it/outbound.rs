//! Sending over the API (send, reply, forward, self-send, idempotency, limits, header
//! injection) on SQLite and PostgreSQL. No submission worker runs here: accepted mail stays
//! queued, which is what these tests look at. tests/it/outbound_e2e.rs sends through Postfix.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::{TestApp, enc};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    accepted_send_matches_the_contract,
    self_send_is_delivered_locally,
    header_injection_is_refused_and_nothing_is_stored,
    limits_answer_with_the_contract_bodies,
    idempotent_sends,
    replies_thread_and_reply_all,
    forward_carries_the_attachments,
    outbound_gate_flags_and_blocks,
    bounces_only_count_for_the_message_recipients,
    derived_fields_are_made_header_safe,
    queued_mail_wakes_the_submitter_through_the_bus,
);

pub const BOT: &str = "bot@agents.test";

pub fn messages(agent: &str) -> String {
    format!("/v1/agents/{}/messages", enc(agent))
}

pub async fn setup(app: &TestApp) {
    for email in [BOT, "peer@agents.test"] {
        let r = app.post("/v1/agents", json!({"email": email, "name": "Bot"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

pub fn raw_of(view: &Value) -> String {
    let b64 = view["raw_message"].as_str().unwrap_or_else(|| panic!("no raw_message: {view}"));
    String::from_utf8_lossy(&B64.decode(b64).expect("base64")).into_owned()
}

/// Outbound messages of the agent, newest first.
pub async fn outbound(app: &TestApp, agent: &str) -> Vec<Value> {
    let r = app.get(&format!("{}?direction=outbound", messages(agent))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

/// The event types recorded for a message, in order.
pub async fn event_types(app: &TestApp, message_id: &str) -> Vec<String> {
    let r = app.get(&format!("/v1/events?message_id={message_id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn inbound_mail(message_id: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bot@agents.test, carol@example.org\r\nCc: dave@example.org\r\n\
         Subject: Question\r\nMessage-ID: <{message_id}>\r\n{extra}\r\nWhat do you think?\r\n"
    )
    .into_bytes()
}

async fn accepted_send_matches_the_contract(app: &TestApp) {
    setup(app).await;
    let r = app
        .post(
            &messages(BOT),
            json!({"to": ["Ann Example <Ann@Example.org>"], "subject": "Hello", "text": "Hi Ann"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let obj = r.body.as_object().expect("object");
    assert_eq!(obj.len(), 3, "exactly status, message_id, method: {}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["method"], "smtp");
    let id = r.body["message_id"].as_str().expect("id");
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");

    let m = app.get(&format!("{}/{id}", messages(BOT))).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    assert_eq!(m.body["direction"], "outbound");
    assert_eq!(m.body["read_status"], "");
    assert_eq!(m.body["delivery_status"], "accepted");
    assert_eq!(m.body["to"], json!(["ann@example.org"]));
    let conv = m.body["conversation_id"].as_str().expect("conversation");
    assert!(conv.starts_with("conv_"), "a new send mints a conversation: {conv}");
    let raw = raw_of(&m.body);
    assert!(raw.contains("From: \"Bot\" <bot@agents.test>"), "{raw}");
    assert!(raw.contains("To: \"Ann Example\" <ann@example.org>"), "{raw}");
    assert!(raw.contains(&format!("Message-ID: <{id}@agents.test>")), "{raw}");
    assert!(raw.contains(&format!("X-E2A-Conversation-Id: {conv}")), "{raw}");
    assert!(raw.contains(&format!("X-E2A-Message-Id: {id}")), "{raw}");
    assert_eq!(outbound(app, BOT).await.len(), 1);
    // Queued, not sent: no email.sent before Postfix said 250.
    assert!(event_types(app, id).await.is_empty());
}

async fn self_send_is_delivered_locally(app: &TestApp) {
    setup(app).await;
    let r = app
        .post(&messages(BOT), json!({"to": [BOT], "subject": "Note to self", "text": "remember", "conversation_id": "conv-own"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "sent");
    assert_eq!(r.body["method"], "loopback");
    let id = r.body["message_id"].as_str().expect("id").to_owned();
    let inbox = app.get(&messages(BOT)).await;
    let items = inbox.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "the inbound twin is in the inbox: {}", inbox.body);
    let twin = &items[0];
    assert_eq!(twin["subject"], "Note to self");
    assert_eq!(twin["conversation_id"], "conv-own");
    assert_eq!(twin["read_status"], "unread");
    let full = app.get(&format!("{}/{}", messages(BOT), twin["id"].as_str().expect("id"))).await;
    assert_eq!(full.body["authentication"], Value::Null, "no milter saw it");
    assert_eq!(full.body["verified_domain"], Value::Null);
    assert_eq!(
        full.body["envelope_from"],
        Value::Null,
        "providerless delivery has no envelope: {}",
        full.body
    );
    assert!(full.body.as_object().is_some_and(|o| o.contains_key("envelope_from")), "present, as null");
    assert_eq!(event_types(app, &id).await, vec!["email.sent"]);
    let twin_id = twin["id"].as_str().expect("id");
    assert_eq!(event_types(app, twin_id).await, vec!["email.received"]);
    let sent = outbound(app, BOT).await;
    assert_eq!(sent[0]["delivery_status"], "sent");
}

async fn header_injection_is_refused_and_nothing_is_stored(app: &TestApp) {
    setup(app).await;
    let base = json!({"to": ["ann@example.org"], "subject": "Hello", "text": "hi"});
    let attach = |filename: &str, ct: &str| json!([{"filename": filename, "content_type": ct, "data": B64.encode("x")}]);
    // Each is e2a's handler check (400), worded as e2a words it where it has one.
    let invalid = |m: &str| (400, "invalid_request".to_owned(), m.to_owned());
    let recipient = |field: &str| {
        (
            400,
            "invalid_recipient".to_owned(),
            format!("{field}: must not contain line breaks or control characters"),
        )
    };
    let attachment = (
        400,
        "invalid_attachment".to_owned(),
        "attachments[0]: filename and content_type must not contain line breaks or control characters"
            .to_owned(),
    );
    let cases: Vec<(&str, Value, (u16, String, String))> = vec![
        (
            "subject",
            json!("Hello\r\nBcc: victim@evil.test"),
            invalid("subject must not contain CR or LF characters"),
        ),
        (
            "subject",
            json!("Hello\nBcc: victim@evil.test"),
            invalid("subject must not contain CR or LF characters"),
        ),
        ("subject", json!("Hello\u{1b}[2J"), invalid("subject must not contain control characters")),
        ("to", json!(["ann@example.org\r\nBcc: victim@evil.test"]), recipient("body.to[0]")),
        ("cc", json!(["Ann\n <ann@example.org>"]), recipient("body.cc[0]")),
        ("bcc", json!(["x@example.org\rX-Evil: 1"]), recipient("body.bcc[0]")),
        (
            "reply_to",
            json!("r@example.org\r\nX-Evil: 1"),
            invalid("reply_to is not a valid email address: it holds a line break or control character"),
        ),
        ("conversation_id", json!("conv\r\nX-Evil: 1"), invalid("conversation_id must not contain CR or LF")),
        ("attachments", attach("a.txt\r\nX-Evil: 1", "text/plain"), attachment.clone()),
        ("attachments", attach("a.txt", "text/plain\r\nX-Evil: 1"), attachment),
    ];
    for (field, value, want) in cases {
        let mut body = base.clone();
        body[field] = value;
        let r = app.post(&messages(BOT), body).await;
        assert_eq!(r.error(), want, "{field}: {}", r.body);
    }
    assert!(outbound(app, BOT).await.is_empty(), "nothing half-stored");
}

async fn limits_answer_with_the_contract_bodies(app: &TestApp) {
    setup(app).await;
    let to: Vec<String> = (0..30).map(|i| format!("r{i}@example.org")).collect();
    let cc: Vec<String> = (0..21).map(|i| format!("c{i}@example.org")).collect();
    let r = app.post(&messages(BOT), json!({"to": to, "cc": cc, "subject": "s", "text": "t"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "too_many_recipients");
    assert_eq!(r.body["error"]["details"], json!({"max_recipients": 50, "provided": 51}));

    let r = app.post(&messages(BOT), json!({"to": ["not an address"], "subject": "s", "text": "t"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_recipient"), "{}", r.body);

    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"filename": format!("{i}.txt"), "content_type": "text/plain", "data": "eA=="}))
        .collect();
    let r = app
        .post(
            &messages(BOT),
            json!({"to": ["a@example.org"], "subject": "s", "text": "t", "attachments": eleven}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{}", r.body);

    let bad = json!([{"filename": "a.bin", "content_type": "application/octet-stream", "data": "%%%"}]);
    let r = app
        .post(
            &messages(BOT),
            json!({"to": ["a@example.org"], "subject": "s", "text": "t", "attachments": bad}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_attachment"), "{}", r.body);

    let big = B64.encode(vec![7u8; 10 * 1024 * 1024 + 1]);
    let huge = json!([{"filename": "big.bin", "content_type": "application/octet-stream", "data": big}]);
    let r = app
        .post(
            &messages(BOT),
            json!({"to": ["a@example.org"], "subject": "s", "text": "t", "attachments": huge}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"), "{}", r.body);
    assert_eq!(r.body["error"]["details"]["scope"], "attachment");
    assert_eq!(r.body["error"]["details"]["filename"], "big.bin");
    assert_eq!(r.body["error"]["details"]["max_bytes"], 10 * 1024 * 1024);

    // Subject and text: not in the schema (templates may stand in), required by the handler.
    let required = (400, "invalid_request".to_owned(), "subject and text are required".to_owned());
    for body in [
        json!({"to": ["a@example.org"], "text": "t"}),
        json!({"to": ["a@example.org"], "subject": "s"}),
        json!({"to": ["a@example.org"], "subject": "", "text": "t"}),
        json!({"to": ["a@example.org"], "subject": "s", "text": "  "}),
    ] {
        assert_eq!(app.post(&messages(BOT), body.clone()).await.error(), required, "{body}");
    }
    let r = app.post(&messages(BOT), json!({"to": [], "cc": [], "subject": "s", "text": "t"})).await;
    assert_eq!(
        r.error(),
        (400, "invalid_request".to_owned(), "at least one recipient in to or cc is required".to_owned())
    );
    let r = app.post(&messages(BOT), json!({"subject": "s", "text": "t"})).await;
    assert_eq!((r.status, r.locations()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["body.to".to_owned()]));
    let r = app
        .post(&messages(BOT), json!({"to": ["a@example.org"], "subject": "s".repeat(2001), "text": "t"}))
        .await;
    assert_eq!(r.locations(), vec!["body.subject"], "the schema's maxLength first: {}", r.body);
    let r =
        app.post(&messages(BOT), json!({"to": ["a@example.org"], "subject": "s", "html": "<p>t</p>"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "an HTML-only send: {}", r.body);
    let r = app
        .post(&messages(BOT), json!({"to": [], "cc": ["c@example.org"], "subject": "s", "text": "t"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "a Cc-only send: {}", r.body);
    let r = app
        .post(
            &messages(BOT),
            json!({"to": ["a@example.org"], "subject": "s", "text": "t", "from": "x@y.test"}),
        )
        .await;
    assert_eq!(r.locations(), vec!["body.from"], "strict body: {}", r.body);
    let r = app.post(&messages(BOT), json!({"to": ["a@example.org"], "subject": "s", "text": "t", "reply_to": ["a@x.test", "b@x.test"]})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "reply_to as a list (SDK 5.6+): {}", r.body);
    assert_eq!(outbound(app, BOT).await.len(), 3, "only the valid sends were stored");
}

async fn send_keyed(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value, bool) {
    let res = app
        .http
        .post(format!("{}{}", app.base, messages(BOT)))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request");
    let replayed = res.headers().get("idempotent-replayed").is_some();
    (res.status(), res.json().await.expect("json"), replayed)
}

async fn idempotent_sends(app: &TestApp) {
    setup(app).await;
    let body = json!({"to": ["ann@example.org"], "subject": "Once", "text": "only once"});
    let (s1, b1, r1) = send_keyed(app, "key-1", &body).await;
    assert_eq!((s1, r1), (StatusCode::ACCEPTED, false), "{b1}");
    let (s2, b2, r2) = send_keyed(app, "key-1", &body).await;
    assert_eq!((s2, r2), (StatusCode::ACCEPTED, true), "{b2}");
    assert_eq!(b1, b2, "the same response is replayed");
    assert_eq!(outbound(app, BOT).await.len(), 1, "one message for two tries");
    let other = json!({"to": ["ann@example.org"], "subject": "Other", "text": "different"});
    let (s3, b3, _) = send_keyed(app, "key-1", &other).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    assert_eq!(b3["error"]["code"], "idempotency_key_reuse");
    let (s4, _, _) = send_keyed(app, "key-2", &body).await;
    assert_eq!(s4, StatusCode::ACCEPTED);
    assert_eq!(outbound(app, BOT).await.len(), 2, "a new key is a new send");

    // The same request still running elsewhere (its key taken, not finished): 409, retryable.
    use postagent_core::store::IdempotencyStore;
    let running = json!({"to": ["ann@example.org"], "subject": "Slow", "text": "in flight"});
    let raw = serde_json::to_vec(&running).expect("json");
    let fingerprint =
        postagent_core::sign::sha256_hex(&[b"send:bot@agents.test\n".as_slice(), &raw].concat());
    let now = postagent_core::time::Timestamp::now();
    let begun = app
        .store
        .idempotency_begin(&app.account_id().await, "key-3", &fingerprint, now, now.plus_secs(-120))
        .await;
    assert_eq!(begun.expect("begin"), postagent_core::store::IdempotencyBegin::Started);
    let (s5, b5, _) = send_keyed(app, "key-3", &running).await;
    assert_eq!(s5, StatusCode::CONFLICT, "{b5}");
    assert_eq!(b5["error"]["code"], "idempotency_in_flight");
    assert_eq!(outbound(app, BOT).await.len(), 2, "nothing sent while the first is in flight");
}

async fn replies_thread_and_reply_all(app: &TestApp) {
    setup(app).await;
    let first = app.deliver(BOT, &inbound_mail("root@example.org", ""), true).await;
    let r = app.post(&format!("{}/{first}/reply", messages(BOT)), json!({"text": "Thanks!"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let reply_id = r.body["message_id"].as_str().expect("id").to_owned();
    let reply = app.get(&format!("{}/{reply_id}", messages(BOT))).await.body;
    assert_eq!(reply["to"], json!(["alice@example.org"]));
    assert_eq!(reply["subject"], "Re: Question");
    let raw = raw_of(&reply);
    assert!(raw.contains("In-Reply-To: <root@example.org>"), "{raw}");
    assert!(raw.contains("References: <root@example.org>"), "{raw}");
    let conv = reply["conversation_id"].as_str().expect("conversation").to_owned();
    assert!(conv.starts_with("conv_"));

    // Alice answers the reply: it threads into the reply's conversation by References.
    let answer = format!(
        "In-Reply-To: <{reply_id}@agents.test>\r\nReferences: <root@example.org> <{reply_id}@agents.test>\r\n"
    );
    let second = app.deliver(BOT, &inbound_mail("answer@example.org", &answer), true).await;
    let got = app.get(&format!("{}/{second}", messages(BOT))).await.body;
    assert_eq!(got["conversation_id"], conv.as_str());

    // Replying to that one keeps the thread and the whole References chain.
    let r = app
        .post(&format!("{}/{second}/reply", messages(BOT)), json!({"text": "To all", "reply_all": true}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let all =
        app.get(&format!("{}/{}", messages(BOT), r.body["message_id"].as_str().expect("id"))).await.body;
    assert_eq!(all["to"], json!(["alice@example.org"]));
    assert_eq!(all["cc"], json!(["carol@example.org", "dave@example.org"]), "everyone but the agent itself");
    assert_eq!(all["conversation_id"], conv.as_str());
    let unfolded = raw_of(&all).replace("\r\n ", " ");
    assert!(
        unfolded.contains(&format!(
            "References: <root@example.org> <{reply_id}@agents.test> <answer@example.org>"
        )),
        "{unfolded}"
    );

    // A reply to a message not yet sent is refused.
    let queued =
        app.post(&messages(BOT), json!({"to": ["x@example.org"], "subject": "s", "text": "t"})).await;
    let queued = queued.body["message_id"].as_str().expect("id").to_owned();
    let r = app.post(&format!("{}/{queued}/reply", messages(BOT)), json!({"text": "again"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "message_not_yet_delivered"), "{}", r.body);
    let r = app
        .post(&format!("{}/msg_00000000000000000000000000000000/reply", messages(BOT)), json!({"text": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // `text` is in the schema (422 when absent); empty is the handler's 400.
    let r = app.post(&format!("{}/{first}/reply", messages(BOT)), json!({})).await;
    assert_eq!(r.locations(), vec!["body.text"]);
    let r = app.post(&format!("{}/{first}/reply", messages(BOT)), json!({"text": ""})).await;
    assert_eq!(r.error(), (400, "invalid_request".to_owned(), "text is required".to_owned()));
}

async fn forward_carries_the_attachments(app: &TestApp) {
    setup(app).await;
    let with_pdf = "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: Invoice\r\n\
        Message-ID: <inv@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/pdf\r\n\
        Content-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        JVBERi0xLjQK\r\n--b--\r\n";
    let id = app.deliver(BOT, with_pdf.as_bytes(), true).await;
    let extra =
        json!([{"filename": "notes.txt", "content_type": "text/plain", "data": B64.encode("my notes")}]);
    let r = app
        .post(
            &format!("{}/{id}/forward", messages(BOT)),
            json!({"to": ["accounting@example.org"], "text": "FYI", "attachments": extra}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let fwd =
        app.get(&format!("{}/{}", messages(BOT), r.body["message_id"].as_str().expect("id"))).await.body;
    assert_eq!(fwd["subject"], "Fwd: Invoice");
    assert_eq!(fwd["to"], json!(["accounting@example.org"]));
    let names: Vec<&str> = fwd["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .filter_map(|a| a["filename"].as_str())
        .collect();
    assert_eq!(names, vec!["invoice.pdf", "notes.txt"], "originals first, then the new ones");
    let text = fwd["parsed"]["text"].as_str().expect("text");
    assert!(
        text.starts_with("FYI") && text.contains("Forwarded message") && text.contains("See attached."),
        "{text}"
    );
    let r = app.post(&format!("{}/{id}/forward", messages(BOT)), json!({"text": "no to"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.locations(), vec!["body.to"]);
    let r = app
        .post(&format!("{}/{id}/forward", messages(BOT)), json!({"to": ["x@example.org"], "text": " "}))
        .await;
    assert_eq!(r.error(), (400, "invalid_request".to_owned(), "text is required".to_owned()));

    // More attachments than a send may carry: refused from the stored rows, before the
    // original is parsed; nothing is queued.
    let mut many = String::from(
        "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: Many\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
    );
    for i in 0..11 {
        many.push_str(&format!(
            "--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\r\nx\r\n"
        ));
    }
    many.push_str("--b--\r\n");
    let id = app.deliver(BOT, many.as_bytes(), true).await;
    let r = app
        .post(&format!("{}/{id}/forward", messages(BOT)), json!({"to": ["x@example.org"], "text": "fyi"}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_request"), "{}", r.body);
}

async fn outbound_gate_flags_and_blocks(app: &TestApp) {
    setup(app).await;
    let gate = |policy: &str, list: &[&str], action: &str| {
        json!({
            "inbound": {"gate": {}, "scan": {}},
            "outbound": {"gate": {"policy": policy, "allowlist": list, "action": action}, "scan": {}},
            "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
        })
    };
    let put = |body: Value| async move {
        let r = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/agents/{}/protection", enc(BOT)),
                Some(&app.key),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    };
    put(gate("allowlist", &["ann@example.org"], "block")).await;
    let r = app.post(&messages(BOT), json!({"to": ["ann@example.org"], "subject": "ok", "text": "t"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "listed: {}", r.body);
    let r = app
        .post(
            &messages(BOT),
            json!({"to": ["ann@example.org"], "cc": ["eve@example.net"], "subject": "no", "text": "t"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "blocked_by_policy"), "{}", r.body);
    assert_eq!(outbound(app, BOT).await.len(), 1, "a blocked send stores nothing");
    let blocked = app.get("/v1/events").await.body;
    let ev = blocked["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["type"] == "email.blocked")
        .cloned()
        .expect("email.blocked");
    assert!(ev["data"]["message_id"].as_str().is_some_and(|id| id.starts_with("msgblk_")), "{ev}");
    assert_eq!(
        (&ev["data"]["reason_source"], &ev["data"]["policy"]),
        (&json!("recipient_gate"), &json!("allowlist")),
        "{ev}"
    );
    assert!(ev["data"]["reason"].as_str().is_some_and(|r| r.contains("eve@example.net")), "{ev}");

    put(gate("domain", &[], "flag")).await;
    let r = app
        .post(&messages(BOT), json!({"to": ["peer@agents.test"], "subject": "own domain", "text": "t"}))
        .await;
    let own = r.body["message_id"].as_str().expect("id").to_owned();
    assert!(event_types(app, &own).await.is_empty(), "the agent's own domain passes the domain policy");
    let r =
        app.post(&messages(BOT), json!({"to": ["ann@example.org"], "subject": "flag me", "text": "t"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "a flag still sends: {}", r.body);
    let id = r.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(event_types(app, &id).await, vec!["email.flagged"]);
    let flagged = app.get(&format!("/v1/events?message_id={id}")).await.body;
    assert_eq!(flagged["items"][0]["data"]["reason_source"], "recipient_gate", "{flagged}");
    let m = app.get(&format!("{}/{id}", messages(BOT))).await.body;
    assert_eq!(m["flagged"], true);
    assert_eq!(m["delivery_status"], "accepted");
}

async fn bounces_only_count_for_the_message_recipients(app: &TestApp) {
    use postagent_core::mail::outbound::bounce::{self, BounceOutcome, BouncePolicy};
    use postagent_core::time::Timestamp;
    setup(app).await;
    let r = app
        .post(&messages(BOT), json!({"to": ["a@example.org", "b@example.org"], "subject": "s", "text": "t"}))
        .await;
    let id = r.body["message_id"].as_str().expect("id").to_owned();
    app.mark_sent(&id).await;
    let dsn = |rcpt: &str| {
        format!(
            "From: MAILER-DAEMON@x.test\r\nTo: bounce@agents.test\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
             --B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.test\r\n\r\n\
             Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n"
        )
    };
    // Recipient a@ forging a bounce for somebody who was never a recipient changes nothing.
    let forged = bounce::apply(
        app.store.as_ref(),
        &id,
        dsn("victim@example.net").as_bytes(),
        BouncePolicy::default(),
        Timestamp::now(),
    )
    .await;
    assert_eq!(forged.expect("apply"), BounceOutcome::NoFailure { delayed: 0 });
    assert_eq!(app.get(&format!("{}/{id}", messages(BOT))).await.body["delivery_status"], "sent");
    let real = bounce::apply(
        app.store.as_ref(),
        &id,
        dsn("b@example.org").as_bytes(),
        BouncePolicy::default(),
        Timestamp::now(),
    )
    .await;
    assert_eq!(real.expect("apply"), BounceOutcome::Bounced { recipients: vec!["b@example.org".into()] });
    assert_eq!(app.get(&format!("{}/{id}", messages(BOT))).await.body["delivery_status"], "bounced");
}

async fn derived_fields_are_made_header_safe(app: &TestApp) {
    setup(app).await;
    let mail = "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: Invoice\t#123\r\n\
        Message-ID: <tab@example.org>\r\n\r\nhi\r\n";
    let id = app.deliver(BOT, mail.as_bytes(), true).await;
    let r = app.post(&format!("{}/{id}/reply", messages(BOT)), json!({"text": "ok"})).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "a tab in the parent's subject is not the agent's fault: {}",
        r.body
    );
    let reply =
        app.get(&format!("{}/{}", messages(BOT), r.body["message_id"].as_str().expect("id"))).await.body;
    assert_eq!(reply["subject"], "Re: Invoice #123");
    let r = app
        .post(&format!("{}/{id}/forward", messages(BOT)), json!({"to": ["x@example.org"], "text": "fyi"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

/// The submitter sleeps on the bus: an accepted send announces its job there, so the mail
/// leaves at once instead of at the next poll.
async fn queued_mail_wakes_the_submitter_through_the_bus(app: &TestApp) {
    use postagent_core::bus::BusMessage;
    use postagent_core::store::EventStore;
    use postagent_core::vocab::JobKind;
    setup(app).await;
    let mut bus = app.store.bus().subscribe();
    let r =
        app.post(&messages(BOT), json!({"to": ["ann@example.org"], "subject": "Hi", "text": "Hello"})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let announced = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let m = bus.recv().await.expect("bus open");
            if matches!(m.as_ref(), BusMessage::Jobs { kind: JobKind::Submit }) {
                return;
            }
        }
    })
    .await;
    assert!(announced.is_ok(), "no Jobs {{ kind: Submit }} on the bus after an accepted send");
}
