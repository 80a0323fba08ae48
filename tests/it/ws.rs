//! The agent WebSocket stream with a real WebSocket client: auth before the upgrade, the
//! drain of unread mail, live pushes, one socket per agent, pings, shutdown; and with two
//! replicas on one PostgreSQL database, pushes and webhook deliveries across them.

use crate::common;

use common::{Db, TestApp, enc, spawn_app, spawn_app_with, test_webhooks};
use futures_util::StreamExt;
use postagent_lab::receiver::Receiver;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

const AGENT: &str = "bot@agents.test";
const WAIT: Duration = Duration::from_secs(15);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@example.org\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.org>\r\n\r\nHi\r\n",
        postagent_core::ids::mint("m", 8)
    )
    .into_bytes()
}

async fn connect(app: &TestApp, agent: &str, key: &str) -> Result<Socket, tungstenite::Error> {
    let url = format!("{}/v1/agents/{}/ws", app.base.replace("http://", "ws://"), enc(agent));
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse().expect("header"));
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

/// The next text frame as JSON (pings are answered by the client library while reading).
async fn next_event(ws: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json frame"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// The close frame the server sends next, skipping other frames.
async fn close_code(ws: &mut Socket) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("error before the close frame: {e}"),
        }
    }
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": AGENT})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn refusals_are_json_before_the_upgrade(app: &TestApp) {
    setup(app).await;
    let path = format!("/v1/agents/{}/ws", enc(AGENT));
    let anonymous = app.call(Method::GET, &path, None, None).await;
    assert_eq!((anonymous.status, anonymous.code()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer realm=\"e2a\"");
    let token_param = app.call(Method::GET, &format!("{path}?token={}", app.key), None, None).await;
    assert_eq!(token_param.status, StatusCode::UNAUTHORIZED, "no ?token= auth");
    let intruder = app.other_account().await;
    let hidden = app.call(Method::GET, &path, Some(&intruder), None).await;
    assert_eq!((hidden.status, hidden.code()), (StatusCode::NOT_FOUND, "not_found"));
    let unknown = app
        .call(Method::GET, &format!("/v1/agents/{}/ws", enc("ghost@agents.test")), Some(&app.key), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.post("/v1/agents", json!({"email": "other@agents.test"})).await;
    let other_key = app.agent_key("other@agents.test").await;
    let forbidden = app.call(Method::GET, &path, Some(&other_key), None).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let plain = app.call(Method::GET, &path, Some(&app.key), None).await;
    assert_eq!(plain.status, StatusCode::UPGRADE_REQUIRED, "authorized, but not a WebSocket handshake");
    // And through a real WebSocket client, the handshake fails with those statuses.
    match connect(app, AGENT, "e2a_acct_0000000000000000000000000000000000000000000000000000000000000000")
        .await
    {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected a 401 handshake, got {other:?}"),
    }
    match connect(app, AGENT, &other_key).await {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected a 403 handshake, got {other:?}"),
    }
    // The agent's own key works.
    let own = app.agent_key(AGENT).await;
    assert!(connect(app, AGENT, &own).await.is_ok());
}

async fn drain_then_live(app: &TestApp) {
    setup(app).await;
    let first = app.deliver(AGENT, &mail("first"), true).await;
    let read = app.deliver(AGENT, &mail("already read"), true).await;
    let third = app.deliver(AGENT, &mail("third"), false).await;
    let got = app.get(&format!("/v1/agents/{}/messages/{read}", enc(AGENT))).await;
    assert_eq!(got.status, StatusCode::OK, "reading marks it read");
    let mut ws = connect(app, AGENT, &app.key).await.expect("connect");
    let a = next_event(&mut ws).await;
    let b = next_event(&mut ws).await;
    assert_eq!(
        (a["data"]["message_id"].as_str(), b["data"]["message_id"].as_str()),
        (Some(first.as_str()), Some(third.as_str())),
        "unread only, oldest first"
    );
    for e in [&a, &b] {
        assert_eq!(e["type"], "email.received");
        assert_eq!(e["schema_version"], "1");
        let stored = app.get(&format!("/v1/events/{}", e["id"].as_str().expect("id"))).await;
        assert_eq!(stored.body["data"], e["data"], "the frame is the stored envelope");
    }
    let live = app.deliver(AGENT, &mail("live one"), true).await;
    let c = next_event(&mut ws).await;
    assert_eq!(c["data"]["message_id"], live.as_str());
    assert_eq!(c["data"]["subject"], "live one");
    // A reconnect drains whatever is still unread again (dedupe by id).
    drop(ws);
    let mut again = connect(app, AGENT, &app.key).await.expect("reconnect");
    let ids: HashSet<String> =
        [next_event(&mut again).await, next_event(&mut again).await, next_event(&mut again).await]
            .iter()
            .map(|e| e["data"]["message_id"].as_str().expect("id").to_owned())
            .collect();
    assert_eq!(ids, HashSet::from([first, third, live]));
}

async fn a_newer_socket_replaces_the_older(app: &TestApp) {
    setup(app).await;
    let mut old = connect(app, AGENT, &app.key).await.expect("connect");
    let mut new = connect(app, AGENT, &app.key).await.expect("connect again");
    assert_eq!(close_code(&mut old).await, (4000, "replaced".into()));
    let id = app.deliver(AGENT, &mail("to the new one"), true).await;
    assert_eq!(next_event(&mut new).await["data"]["message_id"], id.as_str());
}

on_both_backends!(refusals_are_json_before_the_upgrade, drain_then_live, a_newer_socket_replaces_the_older);

#[tokio::test]
async fn pings_keep_the_socket_alive_and_shutdown_says_so() {
    let mut settings = test_webhooks();
    settings.ws_ping_interval = Duration::from_millis(300);
    let app = spawn_app_with(Db::Sqlite, settings, None).await.expect("app");
    setup(&app).await;
    let mut ws = connect(&app, AGENT, &app.key).await.expect("connect");
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("frame").expect("open").expect("frame") {
            Message::Ping(_) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    // The client answered each ping (tungstenite does), so the socket is still open.
    let id = app.deliver(AGENT, &mail("still here"), true).await;
    assert_eq!(next_event(&mut ws).await["data"]["message_id"], id.as_str());
    assert_eq!(app.hub.open_sockets(), 1);
    drop(app);
    assert_eq!(close_code(&mut ws).await, (1001, "shutting_down".into()));
}

/// Two replicas on one PostgreSQL database, each with its own pool, bus, hub and worker.
async fn replicas() -> Option<(TestApp, TestApp)> {
    let one = spawn_app(Db::Postgres).await?;
    let url = one.store.url().to_owned();
    let two = spawn_app_with(Db::Postgres, test_webhooks(), Some(url)).await.expect("second replica");
    Some((one, two))
}

#[tokio::test]
async fn a_socket_on_one_replica_gets_mail_stored_by_another() {
    let Some((one, two)) = replicas().await else { return };
    setup(&one).await;
    let mut ws = connect(&two, AGENT, &two.key).await.expect("connect to replica 2");
    let first = one.deliver(AGENT, &mail("across replicas"), true).await;
    let e = next_event(&mut ws).await;
    assert_eq!(e["data"]["message_id"], first.as_str());
    // And a newer socket on replica 1 replaces the one on replica 2.
    let mut newer = connect(&one, AGENT, &one.key).await.expect("connect to replica 1");
    assert_eq!(close_code(&mut ws).await, (4000, "replaced".into()));
    assert_eq!(next_event(&mut newer).await["data"]["message_id"], first.as_str(), "drained: still unread");
    let id = two.deliver(AGENT, &mail("back again"), true).await;
    assert_eq!(next_event(&mut newer).await["data"]["message_id"], id.as_str());
}

#[tokio::test]
async fn two_workers_deliver_each_event_once_per_subscription() {
    let Some((one, two)) = replicas().await else { return };
    setup(&one).await;
    let rx = Receiver::start().await.expect("receiver");
    for path in ["/a", "/b"] {
        let r = one.post("/v1/webhooks", json!({"url": rx.url(path), "events": ["email.received"]})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        let app = if i % 2 == 0 { &one } else { &two };
        ids.push(app.deliver(AGENT, &mail(&format!("n{i}")), true).await);
    }
    rx.wait_hits(40, WAIT).await;
    // Once no delivery is pending, no duplicate can still be on its way.
    let hooks = one.get("/v1/webhooks").await;
    for h in hooks.body["items"].as_array().expect("items") {
        let id = h["id"].as_str().expect("id");
        postagent_lab::receiver::until("every delivery settled", WAIT, || async {
            let pending = one.get(&format!("/v1/webhooks/{id}/deliveries?status=pending")).await;
            pending.body["items"].as_array().is_some_and(Vec::is_empty).then_some(())
        })
        .await;
    }
    let mut seen = HashSet::new();
    for h in rx.hits() {
        assert!(
            seen.insert((h.path.clone(), h.header("webhook-id").to_owned())),
            "sent twice: {} {}",
            h.path,
            h.header("webhook-id")
        );
    }
    assert_eq!(seen.len(), 40, "each of 20 events to each of 2 webhooks, exactly once");
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_ping_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut settings = test_webhooks();
    settings.ws_ping_interval = Duration::from_millis(200);
    let app = spawn_app_with(Db::Sqlite, settings, None).await.expect("app");
    setup(&app).await;
    // A raw handshake, after which the client reads nothing and so never answers a ping.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let request = format!(
        "GET /v1/agents/{}/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        enc(AGENT),
        app.key
    );
    tcp.write_all(request.as_bytes()).await.expect("handshake");
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(received.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&received));
    // The close frame: opcode 0x88, then the code 1001 and the reason.
    let close = [&[0x88u8, 2 + 12, 0x03, 0xe9][..], b"ping_timeout"].concat();
    assert!(received.windows(close.len()).any(|w| w == close.as_slice()), "no 1001 ping_timeout close frame");
    assert!(started.elapsed() >= postagent_api::ws::PONG_DEADLINE, "closed only after the pong deadline");
}
