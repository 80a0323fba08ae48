//! postagent's MCP server driven by the official MCP SDKs: Python (`mcp` from PyPI, pinned in
//! tests/clients.txt, through `tests/mcp/driver.py`) and TypeScript (`@modelcontextprotocol/sdk`,
//! locked in tests/npm, through `tests/npm/client.mjs`): the handshake, the tools each scope
//! sees, reading, replying, a held send approved by the account, and error results, as a
//! host built on the SDK sees them.

use crate::common;

use common::{Db, TestApp};
use serde_json::{Value, json};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const BOT: &str = "bot@agents.test";

/// One SDK client session, spoken to line by line.
pub struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// What `initialize` answered: `{"protocol", "server"}`.
    pub hello: Value,
}

impl Driver {
    /// A session over Streamable HTTP to `url` with `key`; `None` when the venv cannot be made
    /// outside CI.
    pub async fn http(url: &str, key: &str) -> Option<Driver> {
        let venv = postagent_lab::clients::venv("mcp")?;
        let mut cmd = Self::command(&venv);
        cmd.env("MCP_TRANSPORT", "http").env("MCP_URL", url).env("MCP_KEY", key);
        Some(Self::start(cmd).await)
    }

    /// A session over stdio with `argv` (the `postagent mcp` command line), `env` added.
    pub async fn stdio(argv: &[String], env: &[(&str, String)]) -> Option<Driver> {
        let venv = postagent_lab::clients::venv("mcp")?;
        let mut cmd = Self::command(&venv);
        cmd.env("MCP_TRANSPORT", "stdio").env("MCP_COMMAND", serde_json::to_string(argv).expect("argv"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Some(Self::start(cmd).await)
    }

    /// A session over Streamable HTTP with the TypeScript SDK (`tests/npm/client.mjs`).
    pub async fn typescript(url: &str, key: &str) -> Option<Driver> {
        let modules = postagent_lab::clients::npm_modules()?;
        let script = modules.parent().expect("tests/npm").join("client.mjs");
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(script)
            .env("MCP_URL", url)
            .env("MCP_KEY", key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        Some(Self::start(cmd).await)
    }

    fn command(venv: &Path) -> tokio::process::Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/driver.py");
        let mut cmd = tokio::process::Command::new(venv.join("bin/python"));
        cmd.arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }

    async fn start(mut cmd: tokio::process::Command) -> Driver {
        let mut child = cmd.spawn().expect("python");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let hello = Self::read(&mut lines).await;
        Driver { child, stdin, lines, hello }
    }

    async fn read(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the SDK answers within a minute")
            .expect("read")
            .expect("the SDK client exited early (its error is above)");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    async fn ask(&mut self, cmd: Value) -> Value {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await.expect("write");
        self.stdin.flush().await.expect("flush");
        Self::read(&mut self.lines).await
    }

    pub async fn tools(&mut self) -> Vec<Value> {
        self.ask(json!({"op": "list_tools"})).await["tools"].as_array().expect("tools").clone()
    }

    /// `tools/call`; the CallToolResult as JSON.
    pub async fn call(&mut self, name: &str, args: Value) -> Value {
        self.ask(json!({"op": "call", "name": name, "args": args})).await
    }

    /// The JSON a successful tool returned.
    pub async fn ok(&mut self, name: &str, args: Value) -> Value {
        let r = self.call(name, args).await;
        assert_ne!(r["isError"], true, "{name} failed: {r}");
        serde_json::from_str(r["content"][0]["text"].as_str().expect("text")).expect("json")
    }

    pub async fn close(mut self) {
        let _ = self.stdin.write_all(b"\n").await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
    }
}

fn inbound(i: usize) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: {BOT}\r\nSubject: question {i}\r\nMessage-ID: <q{i}@example.org>\r\n\
         Content-Type: text/plain\r\n\r\nHello bot, question {i}.\r\n"
    )
    .into_bytes()
}

/// The flows a host runs, on one backend, through `session` for the account and `agent` for
/// the agent key.
pub async fn flows(app: &TestApp, account: &mut Driver, agent: &mut Driver) {
    assert_eq!(account.hello["server"], "postagent");
    assert_eq!(account.tools().await.len(), 60);
    let agent_tools = agent.tools().await;
    assert_eq!(agent_tools.len(), 16);
    let send = agent_tools.iter().find(|t| t["name"] == "send_message").expect("send_message");
    assert_eq!(send["annotations"]["destructiveHint"], false);
    assert_eq!(send["inputSchema"]["additionalProperties"], false);

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.deliver(BOT, &inbound(i), true).await);
    }
    // Pagination over the inbox, as a host follows next_cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"limit": 2});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = agent.ok("list_messages", args).await;
        seen.extend(page["messages"].as_array().expect("messages").iter().map(|m| m["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let m = agent.ok("get_message", json!({"message_id": ids[0]})).await;
    assert_eq!(m["verified_domain"], "example.org");
    let reply = agent.ok("reply_to_message", json!({"message_id": ids[0], "text": "An answer."})).await;
    assert_eq!(reply["status"], "accepted");

    // A held send, approved by the account.
    account
        .ok(
            "update_protection",
            json!({"email": BOT, "outbound_gate_policy": "allowlist", "outbound_gate_action": "review"}),
        )
        .await;
    let held =
        agent.ok("send_message", json!({"to": ["x@elsewhere.test"], "subject": "Hi", "text": "Hello"})).await;
    assert_eq!(held["status"], "pending_review");
    let approved = account.ok("approve_review", json!({"message_id": held["message_id"]})).await;
    assert_eq!(approved["status"], "accepted", "{approved}");

    // Errors as results: unknown tool, invalid arguments, unknown field, missing confirm,
    // another account's message.
    let unknown = agent.call("no_such_tool", json!({})).await;
    assert_eq!(unknown["isError"], true);
    let invalid = agent.call("list_messages", json!({"limit": 500})).await;
    assert_eq!(invalid["isError"], true);
    assert!(
        invalid["content"][0]["text"].as_str().expect("text").contains("Input validation error"),
        "{invalid}"
    );
    let field = agent.call("get_message", json!({"message_id": ids[1], "colour": "red"})).await;
    assert!(field["content"][0]["text"].as_str().expect("text").contains("unrecognized_keys"), "{field}");
    let confirm = agent.call("delete_message", json!({"message_id": ids[1]})).await;
    assert_eq!(confirm["isError"], true);
    let intruder = app.other_account().await;
    let mut stranger = Driver::http(&format!("{}/mcp", app.base), &intruder).await.expect("venv");
    let foreign = stranger.call("get_message", json!({"message_id": ids[1], "email": BOT})).await;
    assert_eq!(foreign["structuredContent"]["code"], "not_found", "{foreign}");
    stranger.close().await;
}

#[derive(Clone, Copy)]
enum Sdk {
    Python,
    TypeScript,
}

async fn connect(sdk: Sdk, url: &str, key: &str) -> Option<Driver> {
    match sdk {
        Sdk::Python => Driver::http(url, key).await,
        Sdk::TypeScript => Driver::typescript(url, key).await,
    }
}

async fn sdk_flows(db: Db, sdk: Sdk) {
    let Some(app) = common::spawn_app(db).await else { return };
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.body);
    let agent_key = app.agent_key(BOT).await;
    let url = format!("{}/mcp", app.base);
    let Some(mut account) = connect(sdk, &url, &app.key).await else { return };
    let mut agent = connect(sdk, &url, &agent_key).await.expect("client");
    flows(&app, &mut account, &mut agent).await;
    account.close().await;
    agent.close().await;
}

#[tokio::test]
async fn python_sdk_over_http_sqlite() {
    sdk_flows(Db::Sqlite, Sdk::Python).await;
}

#[tokio::test]
async fn typescript_sdk_over_http_sqlite() {
    sdk_flows(Db::Sqlite, Sdk::TypeScript).await;
}

#[tokio::test]
async fn python_sdk_over_http_postgres() {
    sdk_flows(Db::Postgres, Sdk::Python).await;
}

/// `postagent mcp` (stdio) through the SDK's stdio client: the same flows, forwarded to the
/// running API.
#[tokio::test]
async fn python_sdk_over_stdio() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else { return };
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.body);
    let agent_key = app.agent_key(BOT).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let argv = |_: &str| {
        vec![
            common::bin::BIN.to_owned(),
            "--data-dir".to_owned(),
            dir.path().display().to_string(),
            "mcp".to_owned(),
            "--url".to_owned(),
            app.base.clone(),
        ]
    };
    let Some(mut account) = Driver::stdio(&argv("account"), &[("E2A_API_KEY", app.key.clone())]).await else {
        return;
    };
    let mut agent = Driver::stdio(&argv("agent"), &[("E2A_API_KEY", agent_key)]).await.expect("venv");
    flows(&app, &mut account, &mut agent).await;
    account.close().await;
    agent.close().await;
}

/// A LangChain agent (langchain-mcp-adapters, LangGraph's ReAct loop, a scripted chat model)
/// lists the inbox and replies through postagent's tools.
#[tokio::test]
async fn langchain_agent_lists_then_replies() {
    let Some(app) = common::spawn_app(Db::Sqlite).await else { return };
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.body);
    let agent_key = app.agent_key(BOT).await;
    let id = app.deliver(BOT, &inbound(7), true).await;
    let Some(venv) = postagent_lab::clients::venv("langchain") else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/langchain_agent.py");
    let out = tokio::process::Command::new(venv.join("bin/python"))
        .arg(script)
        .env("MCP_URL", format!("{}/mcp", app.base))
        .env("MCP_KEY", &agent_key)
        .env("MESSAGE_ID", &id)
        .output()
        .await
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let run: Value = serde_json::from_str(stdout.lines().last().expect("a line")).expect("json");
    assert_eq!(run["tools"].as_array().expect("tools").len(), 16, "{run}");
    assert_eq!(run["calls"][0]["tool"], "list_messages");
    assert!(
        run["calls"][0]["output"].as_str().expect("text").contains(&id),
        "the inbox lists the message: {run}"
    );
    assert_eq!(run["calls"][1]["tool"], "reply_to_message");
    let reply: Value = serde_json::from_str(run["calls"][1]["output"].as_str().expect("text")).expect("json");
    assert_eq!(reply["status"], "accepted", "{run}");
    assert_eq!(run["final"], "I replied to your newest mail.");
    let sent = app
        .get(&format!("/v1/agents/{}/messages?direction=outbound&read_status=all", common::enc(BOT)))
        .await;
    assert_eq!(sent.body["items"][0]["subject"], "Re: question 7", "{}", sent.body);
}

/// With a real private Postfix in front: a DKIM-signed message arrives through Postfix and the
/// milter, the Python SDK reads it (verified) and replies, and the reply leaves through Postfix
/// to the lab's internet, threaded.
#[tokio::test]
async fn python_sdk_reads_and_replies_through_postfix() {
    use common::mail::{MailWorld, Options, WAIT};
    use postagent_lab::lmtp_sink::smtp_sink;
    use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message};
    let (internet, mut rx) = smtp_sink(&[]).await;
    let options = Options { agents: vec![BOT], internet: Some(internet), ..Options::default() };
    let Some(mut w) = MailWorld::start(options).await else { return };
    let _server = w.serve();
    // Answers go to the human's own address, on the lab's internet.
    let message = sample_message(BOT, "Invoice 42", "inv42", "Please confirm.\r\n").replacen(
        "\r\nSubject:",
        "\r\nReply-To: alice@example.org\r\nSubject:",
        1,
    );
    let signed = w.zone.sign(&message).expect("sign");
    let qid = w.send(&format!("alice@{SENDER_DOMAIN}"), &[BOT], &signed).await;
    w.wait_sent(&qid, BOT).await;
    let Some(mut agent) = Driver::http(&format!("{}/mcp", w.api()), &w.key).await else { return };
    let inbox = agent.ok("list_messages", json!({"email": BOT})).await;
    let id = inbox["messages"][0]["id"].as_str().expect("the delivered message").to_owned();
    let m = agent.ok("get_message", json!({"email": BOT, "message_id": id})).await;
    assert_eq!(m["verified_domain"], SENDER_DOMAIN, "{m}");
    assert_eq!(m["authentication"]["dkim"][0]["status"], "pass", "{m}");
    let reply =
        agent.ok("reply_to_message", json!({"email": BOT, "message_id": id, "text": "Confirmed."})).await;
    assert_eq!(reply["status"], "accepted");
    let Ok(Some(out)) = tokio::time::timeout(WAIT, rx.recv()).await else {
        let id = reply["message_id"].as_str().unwrap_or("");
        let sent = w.get(&format!("/v1/agents/{BOT}/messages/{id}")).await;
        panic!("the reply never reached the internet: {sent}\n{}", _server.log());
    };
    assert!(out.data.contains(&format!("In-Reply-To: <inv42@{SENDER_DOMAIN}>")), "{}", out.data);
    assert!(out.data.contains("Subject: Re: Invoice 42"), "{}", out.data);
    assert!(out.rcpts.iter().any(|r| r.contains("alice@example.org")), "{:?}", out.rcpts);
    agent.close().await;
}
