//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, locked in tests/npm)
//! in server mode against `/mcp`. The suite's client sends no credentials, so it reaches the
//! server through a loopback proxy that adds the account key, as a host configured with one
//! would.

use crate::common;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use common::Db;

/// Forwards every request to `target`, adding `Authorization: Bearer <key>`.
async fn forward(State((target, key)): State<(String, String)>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.expect("body");
    let url = format!("{target}{}", parts.uri.path_and_query().map_or("", |p| p.as_str()));
    let mut out = reqwest::Client::new().request(parts.method.clone(), url).body(bytes.to_vec());
    for (name, value) in &parts.headers {
        if name != "authorization" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let res = out.bearer_auth(key).send().await.expect("forward");
    let mut builder = Response::builder().status(res.status());
    for (name, value) in res.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            builder = builder.header(name, value);
        }
    }
    builder.body(Body::from(res.bytes().await.expect("answer"))).expect("response")
}

/// Scenarios that test what a server with postagent's tools does not have (the suite's own
/// fixture tools, prompts, resources, logging, completion, sampling, elicitation, server
/// streams), each with its reason; every other scenario must pass.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    ("logging-set-level", "no logging capability: postagent's logs are the operator's, in mail.log"),
    (
        "completion-complete",
        "no completions capability: no prompt or resource-template arguments to complete",
    ),
    ("tools-call-image", "calls the suite's fixture tool test_image_content"),
    ("tools-call-audio", "calls the suite's fixture tool test_audio_content"),
    ("tools-call-embedded-resource", "calls the suite's fixture tool test_embedded_resource"),
    ("tools-call-mixed-content", "calls the suite's fixture tool test_multiple_content_types"),
    ("tools-call-with-logging", "calls the suite's fixture tool test_tool_with_logging"),
    ("tools-call-with-progress", "calls the suite's fixture tool test_tool_with_progress"),
    (
        "tools-call-sampling",
        "calls the suite's fixture tool test_sampling: postagent never asks the host's model",
    ),
    (
        "tools-call-elicitation",
        "calls the suite's fixture tool test_elicitation: postagent never asks the user",
    ),
    (
        "json-schema-2020-12",
        "looks for the suite's fixture tool json_schema_2020_12_tool (postagent's schemas are draft-07, as e2a's)",
    ),
    ("elicitation-sep1034-defaults", "calls a fixture elicitation tool"),
    ("elicitation-sep1330-enums", "calls a fixture elicitation tool"),
    ("server-sse-polling", "a stateless server: answers on the POST stream, offers no GET stream to resume"),
    ("resources-read-text", "reads the fixture resource test://static-text"),
    ("resources-read-binary", "reads the fixture resource test://static-binary"),
    ("resources-templates-read", "reads the fixture template test://template/{id}/data"),
    ("resources-subscribe", "subscribes to a fixture resource over a session"),
    ("resources-unsubscribe", "unsubscribes from a fixture resource over a session"),
    ("prompts-list", "no prompts capability"),
    ("prompts-get-simple", "no prompts capability"),
    ("prompts-get-with-args", "no prompts capability"),
    ("prompts-get-embedded-resource", "no prompts capability"),
    ("prompts-get-with-image", "no prompts capability"),
];

#[tokio::test]
async fn conformance_suite_in_server_mode() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else { return };
    let Some(modules) = postagent_lab::clients::npm_modules() else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy = listener.local_addr().expect("addr");
    let router = axum::Router::new().fallback(forward).with_state((app.base.clone(), app.key.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let list = std::process::Command::new("node")
        .arg(modules.join("@modelcontextprotocol/conformance/dist/index.js"))
        .args(["list", "--server"])
        .output()
        .expect("conformance list");
    let scenarios: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ").map(str::to_owned))
        .collect();
    assert!(scenarios.len() > 10, "{}", String::from_utf8_lossy(&list.stderr));
    let mut report = Vec::new();
    for scenario in &scenarios {
        let out = tokio::process::Command::new("node")
            .arg(modules.join("@modelcontextprotocol/conformance/dist/index.js"))
            .args(["server", "--url", &format!("http://{proxy}/mcp"), "--scenario", scenario])
            .output()
            .await
            .expect("conformance");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        report.push((scenario.clone(), out.status.success(), text));
    }
    for (scenario, passed, text) in &report {
        eprintln!("=== {scenario}: {}\n{text}", if *passed { "PASS" } else { "FAIL" });
    }
    let passed: Vec<&str> = report.iter().filter(|(_, p, _)| *p).map(|(s, _, _)| s.as_str()).collect();
    eprintln!("conformance: {} of {} scenarios passed: {passed:?}", passed.len(), report.len());
    // A scenario marked not applicable that starts passing is news: the list must shrink.
    let now_passing: Vec<&str> =
        passed.iter().copied().filter(|s| NOT_APPLICABLE.iter().any(|(n, _)| n == s)).collect();
    assert!(now_passing.is_empty(), "now passing, take them off NOT_APPLICABLE: {now_passing:?}");
    let failed: Vec<&str> = report
        .iter()
        .filter(|(s, passed, _)| !passed && !NOT_APPLICABLE.iter().any(|(n, _)| n == s))
        .map(|(s, _, _)| s.as_str())
        .collect();
    assert!(failed.is_empty(), "conformance scenarios failed: {failed:?}");
}
