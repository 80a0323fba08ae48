//! `/mcp` over real HTTP, spoken by hand (the SDK clients are in their own tests): transport
//! rules, scopes, tools reading delivered mail and sending, and every error form of
//! `../shared/e2a/mcp.md` §5.

use crate::common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    transport_rules_and_the_bearer_challenge,
    tools_per_scope_match_the_published_list,
    tools_read_and_answer_delivered_mail,
    errors_are_results_in_e2a_form,
    protection_overlay_and_destructive_guards,
    resources_read_the_inbox_and_notify_subscribers,
);

const BOT: &str = "bot@agents.test";

/// One POST to `/mcp`: status, headers and the JSON-RPC messages of the SSE body.
async fn post(
    app: &TestApp,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<Value>) {
    let mut req = app
        .http
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.expect("request");
    let (status, headers) = (res.status(), res.headers().clone());
    let text = res.text().await.expect("body");
    let messages =
        if headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) {
            text.split("\n\n")
                .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
                .map(|d| serde_json::from_str(d).expect("json frame"))
                .collect()
        } else if text.is_empty() {
            Vec::new()
        } else {
            vec![serde_json::from_str(&text).expect("json")]
        };
    (status, headers, messages)
}

/// `tools/call` → the result object.
async fn call(app: &TestApp, key: &str, name: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let (status, _, msgs) = post(app, Some(key), &body).await;
    assert_eq!(status, StatusCode::OK, "{msgs:?}");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["id"], 7);
    msgs[0]["result"].clone()
}

/// The JSON a successful tool returned.
fn ok(result: &Value) -> Value {
    assert!(result.get("isError").is_none(), "tool failed: {result}");
    assert!(result.get("structuredContent").is_none());
    serde_json::from_str(result["content"][0]["text"].as_str().expect("text")).expect("json text")
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn transport_rules_and_the_bearer_challenge(app: &TestApp) {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, headers, msgs) = post(app, None, &init).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).expect("challenge");
    assert!(challenge.starts_with("Bearer realm=\"postagent\", resource_metadata=\""), "{challenge}");
    assert!(challenge.ends_with("/.well-known/oauth-protected-resource\""), "{challenge}");
    assert_eq!(msgs[0]["error"]["code"], -32001);
    let (status, headers, _) = post(app, Some("e2a_acct_not_a_key_at_all_0000000000"), &init).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers["www-authenticate"].to_str().expect("ascii").ends_with(", error=\"invalid_token\""));

    let (status, headers, msgs) = post(app, Some(&app.key), &init).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().expect("ascii");
    assert!(session.starts_with("mcps_"), "a session for resource notifications: {session}");
    assert!(headers["x-request-id"].to_str().expect("ascii").starts_with("mcpreq_"));
    let result = &msgs[0]["result"];
    assert_eq!(result["protocolVersion"], "2025-06-18");
    assert_eq!(
        result["capabilities"],
        json!({"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": false}})
    );
    assert_eq!(result["serverInfo"]["name"], "postagent");
    let old = json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "1999-01-01"}});
    assert_eq!(post(app, Some(&app.key), &old).await.2[0]["result"]["protocolVersion"], "2025-11-25");

    // Notifications only: 202 and nothing else.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, msgs) = post(app, Some(&app.key), &note).await;
    assert_eq!((status, msgs.len()), (StatusCode::ACCEPTED, 0));
    // A batch answers each request in order; unknown methods are JSON-RPC errors.
    let batch = json!([{"jsonrpc": "2.0", "id": "a", "method": "ping"}, note,
        {"jsonrpc": "2.0", "id": "b", "method": "prompts/list"}]);
    let (_, _, msgs) = post(app, Some(&app.key), &batch).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!((&msgs[0]["id"], &msgs[0]["result"]), (&json!("a"), &json!({})));
    assert_eq!(msgs[1]["error"]["code"], -32601);

    let http = &app.http;
    let url = format!("{}/mcp", app.base);
    let get = http.get(&url).bearer_auth(&app.key).send().await.expect("get");
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.json::<Value>().await.expect("json")["error"]["code"], -32000);
    let plain =
        http.post(&url).bearer_auth(&app.key).header("accept", "application/json").json(&init).send().await;
    assert_eq!(plain.expect("post").status(), StatusCode::NOT_ACCEPTABLE);
    let text = http
        .post(&url)
        .bearer_auth(&app.key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let garbage = http
        .post(&url)
        .bearer_auth(&app.key)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let versioned = http
        .post(&url)
        .bearer_auth(&app.key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2001-01-01")
        .json(&list)
        .send()
        .await
        .expect("post");
    assert_eq!(versioned.status(), StatusCode::BAD_REQUEST);

    let meta: Value = http
        .get(format!("{}/.well-known/oauth-protected-resource", app.base))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(meta["resource"], app.base.as_str());
    assert_eq!(meta["scopes_supported"], json!(["agent", "account"]));
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));
}

async fn tools_per_scope_match_the_published_list(app: &TestApp) {
    setup(app).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let account =
        post(app, Some(&app.key), &list).await.2[0]["result"]["tools"].as_array().expect("tools").clone();
    assert_eq!(account.len(), 60);
    let agent_key = app.agent_key(BOT).await;
    let agent =
        post(app, Some(&agent_key), &list).await.2[0]["result"]["tools"].as_array().expect("tools").clone();
    let names: Vec<&str> = agent.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "send_message",
            "reply_to_message",
            "forward_message",
            "update_message_labels",
            "list_conversations",
            "get_conversation",
            "list_messages",
            "restore_message",
            "delete_message",
            "get_message",
            "get_message_lifecycle",
            "get_attachment",
            "get_agent",
            "whoami",
            "send_email",
            "get_attachment_data"
        ]
    );
    let delete = account.iter().find(|t| t["name"] == "delete_message").expect("delete_message");
    assert_eq!(delete["title"], "Delete a message (move to trash)");
    assert_eq!(delete["annotations"], json!({"destructiveHint": true, "idempotentHint": true}));
    assert_eq!(delete["execution"], json!({"taskSupport": "forbidden"}));
    let schema = &delete["inputSchema"];
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["message_id", "confirm"]));
    assert_eq!(schema["properties"]["confirm"], json!({"type": "boolean", "const": true}));
    let whoami = account.iter().find(|t| t["name"] == "whoami").expect("whoami");
    assert_eq!(whoami["inputSchema"]["properties"], json!({}));
    assert!(whoami["inputSchema"].get("required").is_none());
    // Every tool's operation is served: no description warns of not_implemented.
    for t in &account {
        assert!(!t["description"].as_str().expect("text").contains("not_implemented"), "{t}");
    }
    // An admin tool is not there for an agent key: the same result as an unknown name.
    let hidden = call(app, &agent_key, "list_agents", json!({})).await;
    assert_eq!(
        hidden,
        json!({"content": [{"type": "text", "text": "MCP error -32602: Tool list_agents not found"}], "isError": true})
    );
    let me = ok(&call(app, &agent_key, "whoami", json!({})).await);
    assert_eq!((me["scope"].as_str(), me["agent_email"].as_str()), (Some("agent"), Some(BOT)));
}

fn inbound(message_id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: {BOT}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Content-Type: text/plain\r\n\r\nHello bot, {subject}.\r\n"
    )
    .into_bytes()
}

async fn tools_read_and_answer_delivered_mail(app: &TestApp) {
    setup(app).await;
    let agent_key = app.agent_key(BOT).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.deliver(BOT, &inbound(&format!("m{i}@example.org"), &format!("question {i}")), true).await,
        );
    }
    // The agent key's own agent is the default address; pages carry on with next_cursor.
    let first = ok(&call(app, &agent_key, "list_messages", json!({"limit": 2})).await);
    assert_eq!(first["messages"].as_array().expect("messages").len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = ok(&call(app, &agent_key, "list_messages", json!({"limit": 2, "cursor": cursor})).await);
    assert_eq!(second["messages"].as_array().expect("messages").len(), 1);
    assert!(second.get("next_cursor").is_none(), "omitted on the last page: {second}");

    let m = ok(&call(app, &agent_key, "get_message", json!({"message_id": ids[0]})).await);
    assert_eq!(m["id"], ids[0].as_str());
    let lifecycle = ok(&call(app, &agent_key, "get_message_lifecycle", json!({"message_id": ids[0]})).await);
    assert_eq!(lifecycle["transitions"][0]["reason_code"], "acceptance.inbound_smtp", "{lifecycle}");
    assert_eq!(m["verified_domain"], "example.org");
    assert_eq!(m["authentication"]["dmarc"]["status"], "pass");
    assert!(m["text"].as_str().expect("text").contains("question 0"), "{m}");
    assert!(
        m.get("received_at").is_some() && m.get("created_at").is_none() && m.get("raw_message").is_none()
    );
    assert_eq!(m["attachments"], json!([]));

    let reply = ok(&call(
        app,
        &agent_key,
        "reply_to_message",
        json!({"message_id": ids[0], "text": "Here is my answer.", "idempotency_key": "mcp-reply-1"}),
    )
    .await);
    assert_eq!(reply["status"], "accepted", "{reply}");
    let again = ok(&call(
        app,
        &agent_key,
        "reply_to_message",
        json!({"message_id": ids[0], "text": "Here is my answer.", "idempotency_key": "mcp-reply-1"}),
    )
    .await);
    assert_eq!(again["message_id"], reply["message_id"], "the idempotency key reaches the API");
    let sent =
        ok(&call(app, &agent_key, "list_messages", json!({"direction": "outbound", "read_status": "all"}))
            .await);
    let out = &sent["messages"][0];
    assert_eq!(out["subject"], "Re: question 0");
    let view = app
        .get(&format!("/v1/agents/{}/messages/{}", common::enc(BOT), out["id"].as_str().expect("id")))
        .await;
    let raw = crate::outbound::raw_of(&view.body);
    assert!(raw.contains("In-Reply-To: <m0@example.org>"), "threaded: {raw}");

    // Another account's message is the REST not_found, in e2a's error form.
    let intruder = app.other_account().await;
    let r = call(app, &intruder, "get_message", json!({"message_id": ids[1], "email": BOT})).await;
    assert_eq!(r["isError"], true);
    assert_eq!(r["structuredContent"]["code"], "not_found");
    assert_eq!(r["structuredContent"]["status"], 404);
    assert_eq!(r["structuredContent"]["retryable"], false);
    assert!(r["content"][0]["text"].as_str().expect("text").starts_with("e2a error [not_found]: "), "{r}");
}

async fn errors_are_results_in_e2a_form(app: &TestApp) {
    setup(app).await;
    let unknown = call(app, &app.key, "no_such_tool", json!({})).await;
    assert_eq!(unknown["content"][0]["text"], "MCP error -32602: Tool no_such_tool not found");
    let bad = call(app, &app.key, "list_messages", json!({"email": BOT, "limit": 0, "colour": "red"})).await;
    let text = bad["content"][0]["text"].as_str().expect("text");
    assert!(
        text.starts_with(
            "MCP error -32602: Input validation error: Invalid arguments for tool list_messages: "
        ),
        "{text}"
    );
    assert!(
        text.contains("unrecognized_keys") && text.contains("colour") && text.contains("too_small"),
        "{text}"
    );
    assert!(bad.get("structuredContent").is_none());
    assert_eq!(bad["isError"], true);
    // An account key has no default agent: a layer error before any API call.
    let no_agent = call(app, &app.key, "list_messages", json!({})).await;
    assert_eq!(no_agent["structuredContent"], json!({"code": "invalid_request", "retryable": false}));
    assert!(no_agent["content"][0]["text"].as_str().expect("text").starts_with("e2a error: "));
    // Templates through the tools: the REST handlers, with the REST errors.
    let made =
        ok(&call(app, &app.key, "create_template", json!({"name": "n", "subject": "Hi {{x}}", "text": "t"}))
            .await);
    assert!(made["id"].as_str().is_some_and(|id| id.starts_with("tmpl_")), "{made}");
    let listed = ok(&call(app, &app.key, "list_templates", json!({})).await);
    assert_eq!(listed["templates"][0]["id"], made["id"]);
    let starter = ok(&call(app, &app.key, "get_starter_template", json!({"alias": "welcome"})).await);
    assert_eq!(starter["alias"], "welcome");
    let bad =
        call(app, &app.key, "create_template", json!({"name": "n", "subject": "{{x", "text": "t"})).await;
    let e = &bad["structuredContent"];
    assert_eq!(
        (e["code"].as_str(), e["retryable"].as_bool(), e["status"].as_i64()),
        (Some("invalid_template"), Some(false), Some(400)),
        "{bad}"
    );
    assert_eq!(e["details"]["part"], "subject", "{bad}");
    // A missing `arguments` is a validation result; `arguments: null` a JSON-RPC error.
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "whoami"}});
    let msgs = post(app, Some(&app.key), &body).await.2;
    assert!(msgs[0]["result"]["content"][0]["text"].as_str().expect("text").contains("received undefined"));
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "whoami", "arguments": null}});
    assert_eq!(post(app, Some(&app.key), &body).await.2[0]["error"]["code"], -32603);
}

async fn protection_overlay_and_destructive_guards(app: &TestApp) {
    setup(app).await;
    let before = ok(&call(app, &app.key, "get_protection", json!({"email": BOT})).await);
    let after = ok(&call(
        app,
        &app.key,
        "update_protection",
        json!({"email": BOT, "outbound_gate_policy": "allowlist", "outbound_gate_allowlist": ["example.org"],
            "outbound_gate_action": "review"}),
    )
    .await);
    assert_eq!(after["outbound"]["gate"]["policy"], "allowlist");
    assert_eq!(after["outbound"]["gate"]["action"], "review");
    assert_eq!(after["inbound"], before["inbound"], "leaves not supplied keep their values");
    // The review gate holds a send for a human; approving it with the account key sends it.
    let held = ok(&call(
        app,
        &app.key,
        "send_message",
        json!({"email": BOT, "to": ["stranger@elsewhere.test"], "subject": "Hi", "text": "Hello"}),
    )
    .await);
    assert_eq!(held["status"], "pending_review", "{held}");
    let id = held["message_id"].as_str().expect("id");
    let reviews = ok(&call(app, &app.key, "list_reviews", json!({})).await);
    assert_eq!(reviews["reviews"][0]["id"], id, "{reviews}");
    let review = ok(&call(app, &app.key, "get_review", json!({"message_id": id})).await);
    assert!(review.get("hold_reason").is_some(), "{review}");
    let approved = ok(&call(app, &app.key, "approve_review", json!({"message_id": id})).await);
    assert_eq!(approved["status"], "accepted", "{approved}");

    let missing = call(app, &app.key, "delete_agent", json!({"email": BOT})).await;
    assert!(missing["content"][0]["text"].as_str().expect("text").contains("confirm"), "{missing}");
    let refused = call(app, &app.key, "delete_agent", json!({"email": BOT, "confirm": false})).await;
    assert!(refused["content"][0]["text"].as_str().expect("text").contains("invalid_value"), "{refused}");
    let deleted = ok(&call(app, &app.key, "delete_agent", json!({"email": BOT, "confirm": true})).await);
    assert_eq!(deleted["deleted"], true);
    let restored = ok(&call(app, &app.key, "restore_agent", json!({"email": BOT})).await);
    assert_eq!(restored["email"], BOT);
    // MCP mints agent keys only.
    let key =
        ok(&call(app, &app.key, "create_api_key", json!({"agent_email": BOT, "name": "from mcp"})).await);
    assert_eq!(key["scope"], "agent", "{key}");
}

/// One request on a session, as `post` with the `Mcp-Session-Id` header.
async fn post_in(app: &TestApp, key: &str, session: &str, body: &Value) -> Vec<Value> {
    let res = app
        .http
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request");
    let text = res.text().await.expect("body");
    text.split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).expect("json frame"))
        .collect()
}

async fn resources_read_the_inbox_and_notify_subscribers(app: &TestApp) {
    use futures_util::StreamExt;
    setup(app).await;
    let key = app.agent_key(BOT).await;
    let id = app.deliver(BOT, &inbound("r1@example.org", "first"), true).await;
    let rpc = |id: i64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let list = post(app, Some(&key), &rpc(1, "resources/list", json!({}))).await.2;
    let uris: Vec<&str> = list[0]["result"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    let inbox = format!("postagent://agents/{BOT}/inbox");
    assert_eq!(uris, [inbox.as_str(), &format!("postagent://agents/{BOT}/conversations")]);
    let read = post(app, Some(&key), &rpc(2, "resources/read", json!({"uri": inbox}))).await.2;
    let text = read[0]["result"]["contents"][0]["text"].as_str().expect("text");
    let items: Value = serde_json::from_str(text).expect("json");
    assert_eq!(items["items"][0]["id"], id.as_str());
    assert_eq!(items["items"][0]["read_status"], "unread", "reading a resource never marks mail read");
    // Another account cannot read it, and an unknown URI is not found.
    let intruder = app.other_account().await;
    let foreign = post(app, Some(&intruder), &rpc(3, "resources/read", json!({"uri": inbox}))).await.2;
    assert_eq!(foreign[0]["error"]["code"], -32002, "{foreign:?}");
    let odd = post(app, Some(&key), &rpc(4, "resources/read", json!({"uri": "file:///etc/passwd"}))).await.2;
    assert_eq!(odd[0]["error"]["code"], -32002);
    // Subscribing needs the session initialize answered.
    let loose = post(app, Some(&key), &rpc(5, "resources/subscribe", json!({"uri": inbox}))).await.2;
    assert_eq!(loose[0]["error"]["code"], -32600);
    let init = rpc(
        6,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    let (_, headers, _) = post(app, Some(&key), &init).await;
    let session = headers["mcp-session-id"].to_str().expect("ascii").to_owned();
    // Another key cannot use the session: its GET is the stateless 405.
    let stolen = app
        .http
        .get(format!("{}/mcp", app.base))
        .bearer_auth(&intruder)
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(stolen.status(), StatusCode::METHOD_NOT_ALLOWED);
    let stream = app
        .http
        .get(format!("{}/mcp", app.base))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let sub = post_in(app, &key, &session, &rpc(7, "resources/subscribe", json!({"uri": inbox}))).await;
    assert_eq!(sub[0]["result"], json!({}), "{sub:?}");
    app.deliver(BOT, &inbound("r2@example.org", "second"), true).await;
    let mut body = stream.bytes_stream();
    let note = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut seen = String::new();
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if let Some(data) = seen.lines().find_map(|l| l.strip_prefix("data: ")) {
                return serde_json::from_str::<Value>(data).expect("json");
            }
        }
        panic!("the stream ended: {seen}");
    })
    .await
    .expect("a notification within 10 s");
    assert_eq!(note["method"], "notifications/resources/updated");
    assert_eq!(note["params"]["uri"], inbox.as_str());
    let ended = app
        .http
        .delete(format!("{}/mcp", app.base))
        .bearer_auth(&key)
        .header("mcp-session-id", &session)
        .send()
        .await
        .expect("delete");
    assert_eq!(ended.status(), StatusCode::OK);
}
