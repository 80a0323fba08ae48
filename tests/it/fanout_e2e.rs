//! Fan-out end to end, as an operator runs it: mail sent through a real private Postfix,
//! the real `postagent serve`, and the agent's two ways of hearing of it — a signed webhook
//! POST that the published verifiers accept (e2a's `construct_event`, the
//! `standardwebhooks` package), and `postagent listen` over the WebSocket stream. Plus the
//! worker killed in the middle of a delivery.

use crate::common;

use common::bin::{BIN, Server};
use common::mail::{MailWorld, Options};
use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message};
use postagent_lab::receiver::{Answer, Hit, Receiver, until};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const AGENT: &str = "bot@agents.test";
const WAIT: Duration = Duration::from_secs(30);

async fn world() -> Option<(MailWorld, Server)> {
    let options = Options {
        extra_args: vec![
            "--webhook-mode",
            "development",
            "--webhook-timeout",
            "2s",
            "--webhook-retry-schedule",
            "1s,1s,1s",
        ],
        ..Options::default()
    };
    let mut world = MailWorld::start(options).await?;
    let server = world.serve();
    Some((world, server))
}

async fn api(server: &Server, key: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .request(method, format!("http://{}{path}", server.addr))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

/// An `email.received` subscription to the receiver's `/inbox`; returns the WebhookView with
/// its signing secret.
async fn subscribe(server: &Server, key: &str, rx: &Receiver) -> Value {
    let body = json!({"url": rx.url("/inbox"), "events": ["email.received"]});
    api(server, key, reqwest::Method::POST, "/v1/webhooks", body).await
}

async fn send(world: &MailWorld, subject: &str) -> String {
    let id = postagent_lab::mail_lab::unique_token().expect("token");
    let message = sample_message(AGENT, subject, &id, "Hello from Postfix.\r\n");
    let queue_id = world.send(&format!("alice@{SENDER_DOMAIN}"), &[AGENT], &message).await;
    world.wait_sent(&queue_id, AGENT).await;
    queue_id
}

/// Runs tests/sdk/verify_webhooks.py in a venv with the e2a SDK and standardwebhooks.
async fn verify_with_python(hits: &[(Hit, Vec<String>)]) {
    let Some(venv) =
        tokio::task::spawn_blocking(|| postagent_lab::clients::venv("webhooks-5.3.0")).await.expect("join")
    else {
        return;
    };
    let input = json!({"hits": hits.iter().map(|(h, secrets)| json!({
        "body": h.body, "headers": h.headers, "secrets": secrets,
    })).collect::<Vec<_>>()});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/verify_webhooks.py");
    let mut child = tokio::process::Command::new(venv.join("bin/python"))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().expect("stdin").write_all(input.to_string().as_bytes()).await.expect("write");
    let out = child.wait_with_output().await.expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == format!("VERIFIED {}", hits.len()),
        "verifiers refused a delivery: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_through_postfix_reaches_a_webhook_the_published_verifiers_accept() {
    let Some((world, server)) = world().await else { return };
    let rx = Receiver::start().await.expect("receiver");
    let created = subscribe(&server, &world.key, &rx).await;
    let (hook, first_secret) = (
        created["id"].as_str().expect("id").to_owned(),
        created["signing_secret"].as_str().expect("s").to_owned(),
    );
    let queue_id = send(&world, "signed fan-out").await;
    let hits = rx.wait_hits(1, WAIT).await;
    let env = hits[0].json();
    assert_eq!(env["data"]["subject"], "signed fan-out");
    assert_eq!(env["data"]["verified_domain"], SENDER_DOMAIN, "DMARC passed at the milter");
    // The worker's log line leads with the Postfix queue id and names the message and event.
    let msg = env["data"]["message_id"].as_str().expect("message id");
    let line = server.wait_for(&format!("{queue_id}: webhook msg={msg}"));
    assert!(line.contains(env["id"].as_str().expect("id")) && line.contains("delivered"), "{line}");
    assert!(server.log().contains(&format!("{queue_id}: stored msg={msg}")));
    // Rotate: the next delivery carries both signatures, each verifies on its own.
    let rotated = api(
        &server,
        &world.key,
        reqwest::Method::POST,
        &format!("/v1/webhooks/{hook}/rotate-secret"),
        json!({}),
    )
    .await;
    let new_secret = rotated["signing_secret"].as_str().expect("secret").to_owned();
    send(&world, "after rotation").await;
    let hits = rx.wait_hits(2, WAIT).await;
    verify_with_python(&[
        (hits[0].clone(), vec![first_secret.clone()]),
        (hits[1].clone(), vec![new_secret, first_secret]),
    ])
    .await;
}

/// `postagent listen` as a child process, its stdout as lines.
struct Listener {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

fn listen(server: &Server, key: &str, extra: &[&str]) -> Listener {
    let mut child = tokio::process::Command::new(BIN)
        .args(["listen", "--agent", AGENT, "--url", &format!("http://{}", server.addr)])
        .args(extra)
        .env("E2A_API_KEY", key)
        .env_remove("E2A_URL")
        .env_remove("E2A_API_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("postagent listen");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    Listener { _child: child, lines }
}

impl Listener {
    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("open")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_public_url_follows_its_inbox_with_listen() {
    let Some((world, server)) = world().await else { return };
    // Mail that arrived before listen started is drained first.
    send(&world, "while offline").await;
    let mut summary = listen(&server, &world.key, &[]);
    let line = summary.line().await;
    assert!(line.contains("email.received") && line.contains("\"while offline\""), "{line}");
    assert!(line.contains(&format!("verified={SENDER_DOMAIN}")), "{line}");
    send(&world, "live through Postfix").await;
    let line = summary.line().await;
    assert!(
        line.contains("\"live through Postfix\"") && line.contains(&format!("from=alice@{SENDER_DOMAIN}")),
        "{line}"
    );
    drop(summary);
    // --envelope --json prints the event envelope itself (the summary left the mail unread,
    // so it is drained again); --forward POSTs the full message to a local URL.
    let mut envelopes = listen(&server, &world.key, &["--envelope", "--json"]);
    let first: Value = serde_json::from_str(&envelopes.line().await).expect("json line");
    assert_eq!(first["type"], "email.received");
    assert_eq!(first["schema_version"], "1");
    drop(envelopes);
    let rx = Receiver::start().await.expect("receiver");
    let _forward = listen(&server, &world.key, &["--forward", &rx.url("/local"), "--forward-token", "tok"]);
    let hits = rx.wait_hits(2, WAIT).await;
    let subjects: Vec<String> =
        hits.iter().map(|h| h.json()["subject"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(subjects, ["while offline", "live through Postfix"]);
    assert_eq!(
        hits[0].json()["authentication"]["dmarc"]["status"],
        "pass",
        "the full message: {}",
        hits[0].body
    );
    assert_eq!(hits[0].header("x-e2a-event-type"), "email.received");
    assert_eq!(hits[0].header("authorization"), "Bearer tok");
    // A bad key is a clear error, not a retry loop.
    let out = tokio::process::Command::new(BIN)
        .args(["listen", "--agent", AGENT, "--url", &format!("http://{}", server.addr)])
        .env("E2A_API_KEY", "e2a_acct_0000000000000000000000000000000000000000000000000000000000000000")
        .output()
        .await
        .expect("listen");
    assert_eq!(out.status.code(), Some(4), "the auth exit code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    let Some((mut world, server)) = world().await else { return };
    let rx = Receiver::start().await.expect("receiver");
    // The first POST is never answered: the worker is killed while it waits.
    rx.script(vec![Answer::Hang]);
    let created = subscribe(&server, &world.key, &rx).await;
    let hook = created["id"].as_str().expect("id").to_owned();
    send(&world, "interrupted").await;
    let first = rx.wait_hits(1, WAIT).await;
    let mut server = server;
    server.signal("-KILL");
    server.wait_exit();
    // Another process takes over once the dead worker's lease (2 x 2 s + 5 s) runs out.
    let server = world.serve();
    let hits = rx.wait_hits(2, WAIT).await;
    assert_eq!(hits[1].header("webhook-id"), first[0].header("webhook-id"), "the same event again");
    assert_eq!(hits[1].body, first[0].body);
    let key = world.key.clone();
    let delivered = until("the delivery to be recorded", WAIT, || async {
        let d =
            api(&server, &key, reqwest::Method::GET, &format!("/v1/webhooks/{hook}/deliveries"), Value::Null)
                .await;
        (d["items"][0]["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!(delivered["items"].as_array().map(Vec::len), Some(1), "one delivery, not two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_delivery_in_flight_finish() {
    let Some((mut world, server)) = world().await else { return };
    let rx = Receiver::start().await.expect("receiver");
    rx.script(vec![Answer::Slow(Duration::from_millis(1500), 200)]);
    let created = subscribe(&server, &world.key, &rx).await;
    let hook = created["id"].as_str().expect("id").to_owned();
    send(&world, "in flight at shutdown").await;
    rx.wait_hits(1, WAIT).await;
    let mut server = server;
    server.signal("-TERM");
    let status = server.wait_exit();
    assert!(status.success(), "graceful stop: {status}");
    assert!(server.log().contains("finishing deliveries in flight"), "{}", server.log());
    // The POST was answered before the process left, and recorded: no second try.
    let server = world.serve();
    let d = api(
        &server,
        &world.key,
        reqwest::Method::GET,
        &format!("/v1/webhooks/{hook}/deliveries"),
        Value::Null,
    )
    .await;
    assert_eq!(d["items"][0]["status"], "delivered", "{d}");
    assert_eq!(d["items"][0]["attempts"], 1);
    assert_eq!(rx.hits().len(), 1);
}
