//! The contract gate: postagent's OpenAPI document (generated from its route table, served at
//! `/v1/openapi.json`) against e2a's published spec (`tests/contract/e2a-openapi.yaml`), for
//! every operation: path, method, operationId, success statuses and schemas, the explicit
//! error statuses, request fields (names, required, enums), query parameters and their enums,
//! and the required fields of every success response. Any difference fails unless
//! [`INTENTIONAL`] lists it with its reason, and every listed difference must still exist, so
//! the list cannot go stale. `docs/compat.md` must show each operation's status.

use crate::common;

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Differences we mean, each with the reason (docs/compat.md repeats them).
const INTENTIONAL: &[(&str, &str)] = &[
    ("createAgent: error 402 not answered", "no plans or quotas on a self-hosted server"),
    ("createAgent: error 429 not answered", "no registration rate limit"),
    ("registerDomain: error 402 not answered", "no plans or quotas"),
    ("sendMessage: error 402 not answered", "no plans or quotas"),
    ("testAgent: error 402 not answered", "no plans or quotas"),
    ("testAgent: error 429 not answered", "the send budget applies, as to sendMessage"),
    (
        "testAgent: success {200: Some(\"SendResultView\"), 202: Some(\"SendResultView\")} there, {202: Some(\"SendResultView\")} here",
        "the test always goes through Postfix: accepted, never a loopback 200",
    ),
    ("sendMessage: error 429 not answered", "no send rate limit; Postfix's own limits apply"),
    ("replyToMessage: error 402 not answered", "no plans or quotas"),
    ("replyToMessage: error 429 not answered", "no send rate limit; Postfix's own limits apply"),
    ("forwardMessage: error 402 not answered", "no plans or quotas"),
    ("forwardMessage: error 429 not answered", "no send rate limit; Postfix's own limits apply"),
    ("approveReview: error 429 not answered", "no send rate limit"),
    (
        "DomainView: response field capabilities is an addition",
        "SDK 5.4+ requires it; the 5.3.0 spec lacks it",
    ),
    (
        "DomainView: response fields sending_error, sending_last_checked_at not sent",
        "no separate sending identity: Postfix sends",
    ),
    (
        "MessageView: response fields protection, webhook_error, webhook_status not sent",
        "no content scanner; webhook state lives in the delivery log",
    ),
    (
        "MessageSummaryView: response fields webhook_error, webhook_status not sent",
        "webhook state lives in the delivery log",
    ),
    ("ReviewView: response field approval_expires_at is an addition", "postagent shows when a hold expires"),
    ("WebhookDeliveryView: response field event_id is an addition", "links a delivery to its event"),
    (
        "DeleteUserDataResult: response field conversations_deleted is an addition",
        "a count per table deleted",
    ),
    ("DeleteUserDataResult: response field events_deleted is an addition", "a count per table deleted"),
    ("DeleteUserDataResult: response field jobs_deleted is an addition", "a count per table deleted"),
    ("DeleteUserDataResult: response field suppressions_deleted is an addition", "a count per table deleted"),
    ("DeleteUserDataResult: response field webhooks_deleted is an addition", "a count per table deleted"),
    (
        "DeleteUserDataResult: response fields oauth_access_tokens_deleted, oauth_auth_codes_deleted, oauth_refresh_tokens_deleted not sent",
        "no OAuth: API keys only",
    ),
    (
        "UserExport: response fields oauth_connections, usage_events not sent",
        "no OAuth and no usage metering",
    ),
    (
        "SendEmailRequest: fields {\"attachments\", \"bcc\", \"cc\", \"conversation_id\", \"html\", \"reply_to\", \"subject\", \"template_alias\", \"template_data\", \"template_id\", \"text\", \"to\", \"unsubscribe\"} there, {\"attachments\", \"bcc\", \"cc\", \"conversation_id\", \"html\", \"reply_to\", \"send_at\", \"subject\", \"template_alias\", \"template_data\", \"template_id\", \"text\", \"to\", \"unsubscribe\"} here",
        "send_at (scheduled send, SDK 5.5+) is newer than the 5.3.0 spec",
    ),
    (
        "ReplyRequest: fields {\"attachments\", \"bcc\", \"cc\", \"conversation_id\", \"html\", \"reply_all\", \"reply_to\", \"text\", \"unsubscribe\"} there, {\"attachments\", \"bcc\", \"cc\", \"conversation_id\", \"html\", \"reply_all\", \"reply_to\", \"send_at\", \"text\", \"unsubscribe\"} here",
        "send_at (scheduled send, SDK 5.5+)",
    ),
    (
        "ForwardRequest: fields {\"attachments\", \"bcc\", \"cc\", \"conversation_id\", \"html\", \"reply_to\", \"text\", \"to\", \"unsubscribe\"} there, {\"attachments\", \"bcc\", \"cc\", \"conversation_id\", \"html\", \"reply_to\", \"send_at\", \"text\", \"to\", \"unsubscribe\"} here",
        "send_at (scheduled send, SDK 5.5+)",
    ),
    ("SendResultView: response field scheduled_at is an addition", "scheduled send, SDK 5.5+"),
    ("MessageView: response field scheduled_at is an addition", "scheduled send, SDK 5.5+"),
    ("MessageSummaryView: response field scheduled_at is an addition", "scheduled send, SDK 5.5+"),
    ("ReviewView: response field scheduled_at is an addition", "a held schedule, SDK 5.5+"),
];

/// Operations answered 501 `not_implemented`, with the reason.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn theirs() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/e2a-openapi.yaml");
    let text = std::fs::read_to_string(path).expect("read e2a's spec");
    serde_yaml::from_str(&text).expect("parse e2a's spec")
}

fn ours() -> Value {
    let ops: Vec<_> = postagent_api::routes::table::table().into_iter().map(|(op, _)| op).collect();
    postagent_api::openapi::document(&ops)
}

fn schema_name(v: &Value) -> Option<String> {
    v.pointer("/content/application~1json/schema/$ref")
        .and_then(Value::as_str)
        .map(|r| r.rsplit('/').next().unwrap_or("").to_owned())
}

fn names(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn enums(schema: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if p.get("enum").is_some() {
                out.insert(k.clone(), names(p.get("enum")));
            }
        }
    }
    out
}

/// Everything one document says about one operation.
struct OpFacts {
    id: String,
    implemented: bool,
    success: BTreeMap<u16, Option<String>>,
    errors: BTreeSet<u16>,
    body: Option<String>,
    query: BTreeMap<String, BTreeSet<String>>,
}

fn facts(op: &Value) -> OpFacts {
    let mut success = BTreeMap::new();
    let mut errors = BTreeSet::new();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let Ok(code) = code.parse::<u16>() else { continue };
        if code < 300 {
            success.insert(code, schema_name(r));
        } else {
            errors.insert(code);
        }
    }
    let mut query = BTreeMap::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] == "query" {
            query.insert(p["name"].as_str().unwrap_or("").to_owned(), names(p.pointer("/schema/enum")));
        }
    }
    OpFacts {
        id: op["operationId"].as_str().unwrap_or("").to_owned(),
        implemented: op.get("x-postagent-implemented") != Some(&Value::Bool(false)),
        success,
        errors,
        body: op.get("requestBody").and_then(schema_name),
        query,
    }
}

fn operations(doc: &Value) -> BTreeMap<(String, String), OpFacts> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.insert((m.to_owned(), path.clone()), facts(op));
            }
        }
    }
    out
}

fn schemas(doc: &Value) -> &Map<String, Value> {
    doc.pointer("/components/schemas").and_then(Value::as_object).expect("components.schemas")
}

/// Compares one component schema (request or response) and, for pages, their items.
fn compare_schema(
    name: &str,
    request: bool,
    t: &Map<String, Value>,
    o: &Map<String, Value>,
    diffs: &mut BTreeSet<String>,
) {
    let (Some(ts), Some(os)) = (t.get(name), o.get(name)) else {
        diffs.insert(format!("{name}: schema missing here"));
        return;
    };
    let (treq, oreq) = (names(ts.get("required")), names(os.get("required")));
    let (tprops, oprops) = (keys(ts.get("properties")), keys(os.get("properties")));
    if request {
        if treq != oreq {
            diffs.insert(format!("{name}: required {treq:?} there, {oreq:?} here"));
        }
        if tprops != oprops {
            diffs.insert(format!("{name}: fields {tprops:?} there, {oprops:?} here"));
        }
    } else {
        for f in treq.difference(&oreq) {
            if oprops.contains(f) {
                diffs.insert(format!("{name}: response field {f} is optional here"));
            } else {
                diffs.insert(format!("{name}: required response field {f} missing here"));
            }
        }
        for f in oreq.difference(&treq) {
            diffs.insert(format!("{name}: response field {f} is required here only"));
        }
        let unsent: Vec<&String> = tprops.difference(&oprops).collect();
        if !unsent.is_empty() {
            let list: Vec<&str> = unsent.iter().map(|s| s.as_str()).collect();
            let (noun, verb) = if list.len() == 1 { ("field", "") } else { ("fields", "") };
            diffs.insert(format!("{name}: response {noun} {} not sent{verb}", list.join(", ")));
        }
        for f in oprops.difference(&tprops) {
            diffs.insert(format!("{name}: response field {f} is an addition"));
        }
    }
    if enums(ts) != enums(os) {
        diffs.insert(format!("{name}: enums {:?} there, {:?} here", enums(ts), enums(os)));
    }
    let item = |s: &Value| {
        s.pointer("/properties/items/items/$ref")
            .and_then(Value::as_str)
            .map(|r| r.rsplit('/').next().unwrap_or("").to_owned())
    };
    if let (Some(ti), Some(oi)) = (item(ts), item(os)) {
        if ti == oi {
            compare_schema(&ti, false, t, o, diffs);
        } else {
            diffs.insert(format!("{name}: items are {ti} there, {oi} here"));
        }
    }
}

fn differences() -> BTreeSet<String> {
    let (t, o) = (theirs(), ours());
    let (tops, oops) = (operations(&t), operations(&o));
    let (tschemas, oschemas) = (schemas(&t), schemas(&o));
    let mut diffs = BTreeSet::new();
    for ((method, path), th) in &tops {
        let Some(us) = oops.get(&(method.clone(), path.clone())) else {
            diffs.insert(format!("{}: {method} {path} missing here", th.id));
            continue;
        };
        if us.id != th.id {
            diffs.insert(format!("{}: operationId {} here", th.id, us.id));
        }
        if !us.implemented {
            diffs.insert(format!("{}: not implemented", th.id));
            continue;
        }
        if us.success != th.success {
            diffs.insert(format!("{}: success {:?} there, {:?} here", th.id, th.success, us.success));
        }
        for e in th.errors.difference(&us.errors) {
            diffs.insert(format!("{}: error {e} not answered", th.id));
        }
        if us.body != th.body {
            diffs.insert(format!("{}: body {:?} there, {:?} here", th.id, th.body, us.body));
        } else if let Some(b) = &th.body {
            compare_schema(b, true, tschemas, oschemas, &mut diffs);
        }
        if us.query != th.query {
            diffs.insert(format!("{}: query {:?} there, {:?} here", th.id, th.query, us.query));
        }
        for schema in th.success.values().flatten() {
            compare_schema(schema, false, tschemas, oschemas, &mut diffs);
        }
    }
    for ((method, path), us) in &oops {
        if !tops.contains_key(&(method.clone(), path.clone())) {
            diffs.insert(format!("{}: {method} {path} is not e2a's", us.id));
        }
    }
    diffs
}

#[test]
fn the_generated_document_matches_e2a_except_where_intended() {
    let diffs = differences();
    let allowed: BTreeSet<String> = INTENTIONAL
        .iter()
        .map(|(d, _)| (*d).to_owned())
        .chain(NOT_IMPLEMENTED.iter().map(|(id, _)| format!("{id}: not implemented")))
        .collect();
    let unexpected: Vec<&String> = diffs.difference(&allowed).collect();
    let stale: Vec<&String> = allowed.difference(&diffs).collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "differences from e2a's spec that are not listed as intentional:\n  {}\n\nlisted differences that no longer exist:\n  {}",
        unexpected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
        stale.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn compat_doc_lists_every_operation_with_its_status() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/compat.md"))
        .expect("docs/compat.md");
    for (_, op) in operations(&ours()) {
        let want = if op.implemented { "supported" } else { "not implemented" };
        let row = doc
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{}`", op.id)))
            .unwrap_or_else(|| panic!("docs/compat.md has no row for {}", op.id));
        assert!(row.contains(want), "docs/compat.md: {} should say {want:?}: {row}", op.id);
    }
    for (d, _) in INTENTIONAL {
        let op = d.split(':').next().unwrap_or(d);
        assert!(doc.contains(op), "docs/compat.md does not explain {d:?}");
    }
}

/// Checks `value` against our document's schema `name`: every required field present, enum
/// values within their enum, page items against the item schema.
fn conforms(doc: &Value, name: &str, value: &Value) {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    for f in names(schema.get("required")) {
        assert!(value.get(&f).is_some(), "{name}.{f} is required but missing: {value}");
    }
    for (f, allowed) in enums(schema) {
        if let Some(v) = value.get(&f).and_then(Value::as_str) {
            assert!(allowed.contains(v), "{name}.{f} = {v:?} is outside {allowed:?}");
        }
    }
    if let Some(item) = schema.pointer("/properties/items/items/$ref").and_then(Value::as_str) {
        let item = item.rsplit('/').next().unwrap_or("");
        for v in value["items"].as_array().expect("items") {
            conforms(doc, item, v);
        }
    }
}

/// The server's answers have the shape its document declares.
#[tokio::test]
async fn responses_conform_to_the_document() {
    use serde_json::json;
    let app = common::spawn_app(common::Db::Sqlite).await.expect("app");
    let doc = ours();
    let check = |name: &'static str, r: common::Reply| {
        assert!(r.status.is_success(), "{name}: {} {}", r.status, r.body);
        conforms(&doc, name, &r.body);
        r.body
    };
    check("DeploymentInfoView", app.get("/v1/info").await);
    check("AccountView", app.get("/v1/account").await);
    check("AgentView", app.post("/v1/agents", json!({"email": "bot@agents.test"})).await);
    check("PageAgentView", app.get("/v1/agents").await);
    check("DomainView", app.post("/v1/domains", json!({"domain": "conform.example"})).await);
    check("PageDomainView", app.get("/v1/domains").await);
    check("VerifyDomainView", app.post("/v1/domains/conform.example/verify", Value::Null).await);
    check("CreateAPIKeyResponse", app.post("/v1/account/api-keys", json!({"name": "k"})).await);
    check("PageAPIKeyView", app.get("/v1/account/api-keys").await);
    let raw = b"From: alice@example.org\r\nTo: bot@agents.test\r\nSubject: hi\r\nMessage-ID: <c1@example.org>\r\n\r\nbody\r\n";
    let inbound = app.deliver("bot@agents.test", raw, true).await;
    let msgs = "/v1/agents/bot%40agents.test/messages";
    check("PageMessageSummaryView", app.get(msgs).await);
    check("MessageView", app.get(&format!("{msgs}/{inbound}")).await);
    let sent =
        check("SendResultView", app.post(&format!("{msgs}/{inbound}/reply"), json!({"text": "ok"})).await);
    let out = sent["message_id"].as_str().expect("id");
    check("MessageView", app.get(&format!("{msgs}/{out}")).await);
    check("PageMessageSummaryView", app.get(&format!("{msgs}?direction=all")).await);
    let conv = check("MessageView", app.get(&format!("{msgs}/{out}")).await)["conversation_id"]
        .as_str()
        .expect("conv")
        .to_owned();
    check("PageConversationSummaryView", app.get("/v1/agents/bot%40agents.test/conversations").await);
    check(
        "ConversationDetailView",
        app.get(&format!("/v1/agents/bot%40agents.test/conversations/{conv}")).await,
    );
    check(
        "UpdateMessageResultView",
        app.call(
            reqwest::Method::PATCH,
            &format!("{msgs}/{inbound}"),
            Some(&app.key),
            Some(json!({"add_labels": ["x"]})),
        )
        .await,
    );
    check("ProtectionConfigView", app.get("/v1/agents/bot%40agents.test/protection").await);
    check("PageReviewView", app.get("/v1/reviews").await);
    check("PageEventView", app.get("/v1/events").await);
    check("PageWebhookView", app.get("/v1/webhooks").await);
}

#[tokio::test]
async fn the_document_is_served_and_nothing_answers_501() {
    let app = common::spawn_app(common::Db::Sqlite).await.expect("app");
    let served = app.call(reqwest::Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(served.status, reqwest::StatusCode::OK);
    assert_eq!(served.body, ours(), "the served document is the generated one");
    assert!(NOT_IMPLEMENTED.is_empty(), "every operation of the snapshot is served");
    // The newer SDKs' paths outside the snapshot (contacts 5.5+, metrics 5.7+) are served too,
    // behind a key like everything else.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/templates"),
        (reqwest::Method::GET, "/v1/contacts"),
        (reqwest::Method::GET, "/v1/agents/bot%40agents.test/contacts"),
        (reqwest::Method::GET, "/v1/metrics"),
    ] {
        let r = app.call(method.clone(), path, Some(&app.key), None).await;
        assert_ne!(r.status, reqwest::StatusCode::NOT_IMPLEMENTED, "{method} {path}: {}", r.body);
        let anonymous = app.call(method.clone(), path, None, None).await;
        assert_eq!(
            anonymous.status,
            reqwest::StatusCode::UNAUTHORIZED,
            "{method} {path} asks for a key first"
        );
    }
}
