//! The agent developer's command line against a real `postagent serve` and a private Postfix,
//! run as a new user would: a clean environment (no client file) pointed at the server by
//! `E2A_URL` and `E2A_API_KEY`. Sends arrive at the "internet" through Postfix, inbound mail
//! is DKIM-signed, held sends are released by `reviews approve`, every error class has its
//! exit code, and `listen` waits for one message or bridges a model into a conversation.

use crate::common;

use common::bin::BIN;
use common::mail::{AGENT_DOMAIN, MailWorld, Options, WAIT};
use postagent_lab::lmtp_sink::{Delivered, smtp_sink};
use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message, unique_token};
use postagent_lab::receiver::{Answer, Receiver, until};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc::UnboundedReceiver;

const BOT: &str = "bot@agents.test";
const PEER: &str = "peer@agents.test";

/// What a finished command left.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// The first stdout line as JSON.
    fn json(&self) -> Value {
        let line = self.stdout.lines().next().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    /// Every stdout line as JSON (a list's NDJSON).
    fn lines(&self) -> Vec<Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

/// A user's shell: nothing in the environment but `PATH`, an empty home, and what is set.
struct Shell {
    home: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Shell {
    fn new(env: &[(&'static str, &str)]) -> Shell {
        Shell {
            home: tempfile::tempdir().expect("home"),
            env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        }
    }

    /// `E2A_URL`, `E2A_API_KEY` and, when given, `E2A_AGENT_EMAIL`.
    fn pointed_at(w: &MailWorld, agent: Option<&str>) -> Shell {
        let mut env = vec![("E2A_URL", w.api()), ("E2A_API_KEY", w.key.as_str())];
        if let Some(a) = agent {
            env.push(("E2A_AGENT_EMAIL", a));
        }
        Shell::new(&env)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .current_dir(self.home.path())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> Ran {
        let out = self.command(args).output().await.expect("run postagent");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed.
    async fn ok(&self, args: &[&str]) -> Ran {
        let r = self.run(args).await;
        assert_eq!(r.code, 0, "postagent {args:?}: {}{}", r.stdout, r.stderr);
        r
    }

    /// A long-running command (`listen`) whose stderr lines are collected.
    fn spawn(&self, args: &[&str]) -> Running {
        let mut child =
            self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let log = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(tokio::sync::Notify::new());
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (sink, tell) = (log.clone(), arrived.clone());
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                sink.lock().expect("log").push(l);
                tell.notify_waiters();
            }
        });
        Running { _child: child, log, arrived }
    }
}

struct Running {
    _child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Told of each new stderr line.
    arrived: Arc<tokio::sync::Notify>,
}

impl Running {
    /// Waits for a stderr line containing `needle`; fails showing the whole log.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Asked for before looking, so a line arriving in between is not missed.
            let next = self.arrived.notified();
            if let Some(l) = self.log.lock().expect("log").iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if tokio::time::timeout_at(deadline, next).await.is_err() {
                panic!("no {needle:?} on stderr:\n{}", self.log());
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

async fn next(rx: &mut UnboundedReceiver<Delivered>, what: &str) -> Delivered {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the internet never received {what}"))
        .expect("sink open")
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let head = data.split("\r\n\r\n").next().unwrap_or("");
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A DKIM-signed message from alice@sender.test to `to`, through Postfix; its Message-ID token.
async fn signed_mail(w: &MailWorld, to: &str, subject: &str, body: &str) -> String {
    let token = unique_token().expect("token");
    let message = w.zone.sign(&sample_message(to, subject, &token, body)).expect("sign");
    let queue_id = w.send(&format!("alice@{SENDER_DOMAIN}"), &[to], &message).await;
    w.wait_sent(&queue_id, to).await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_serve_and_postfix() {
    let (internet, mut rx) = smtp_sink(&[]).await;
    let options = Options {
        agents: vec![BOT, PEER],
        internet: Some(internet),
        // Small enough for one test message to be refused by Postfix (exit 7).
        main_cf: vec![("message_size_limit", "400000".into())],
        extra_args: vec!["--submission-retry-schedule", "1s,1s", "--hold-sweep-interval", "1s"],
        ..Options::default()
    };
    let Some(mut w) = MailWorld::start(options).await else { return };
    let _server = w.serve();
    let sh = Shell::pointed_at(&w, Some(BOT));

    // Who am I, for people and for scripts.
    let me = sh.ok(&["whoami", "--json"]).await.json();
    assert_eq!(me["scope"], "account");
    let shown = sh.ok(&["whoami"]).await.stdout;
    assert!(shown.contains("scope") && shown.contains("account") && shown.contains(BOT), "{shown}");

    // A send with an attachment, waited for: Postfix's queue id, then the mail at the internet.
    std::fs::create_dir(sh.home.path().join("files")).expect("mkdir");
    let csv = sh.home.path().join("files").join("report.csv");
    std::fs::write(&csv, "quarter,total\nQ3,42\n").expect("write");
    let sent = sh
        .ok(&["send", "--to", "alice@example.org", "--subject", "Quarterly report", "--body", "Attached."])
        .await;
    assert!(sent.stdout.starts_with("accepted msg_"), "{}", sent.stdout);
    next(&mut rx, "the first send").await;
    let csv_arg = csv.to_str().expect("utf-8");
    let args = [
        "send",
        "--to",
        "alice@example.org",
        "--subject",
        "With numbers",
        "--body",
        "See the file.",
        "--attach",
        csv_arg,
        "--wait",
        "--json",
    ];
    let result = sh.ok(&args).await.json();
    assert_eq!(result["status"], "sent", "{result}");
    let queue_id = result["provider_message_id"].as_str().expect("the queue id").to_owned();
    let got = next(&mut rx, "the send with an attachment").await;
    assert_eq!(header(&got.data, "Subject"), Some("With numbers"));
    assert!(got.data.contains("report.csv"), "{}", got.data);
    assert!(!queue_id.is_empty());

    // Its attachment, listed and saved byte for byte; a second save does not overwrite.
    let id = result["message_id"].as_str().expect("id").to_owned();
    let files = sh.ok(&["attachments", "list", &id, "--json"]).await.lines();
    assert_eq!(files[0]["filename"], "report.csv", "{files:?}");
    sh.ok(&["attachments", "get", &id, "0"]).await;
    let saved = std::fs::read(sh.home.path().join("report.csv")).expect("saved");
    assert_eq!(saved, b"quarter,total\nQ3,42\n");
    let again = sh.run(&["attachments", "get", &id, "0"]).await;
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);

    // Inbound, DKIM-signed through Postfix: listed, shown with its verdict, its text alone.
    let token = signed_mail(&w, BOT, "Can we meet?", "Tuesday at 10?\r\n").await;
    let inbox = sh.ok(&["messages", "list", "--json"]).await.lines();
    let inbound = inbox.iter().find(|m| m["subject"] == "Can we meet?").expect("in the inbox");
    let id_in = inbound["id"].as_str().expect("id").to_owned();
    let table = sh.ok(&["messages", "list"]).await.stdout;
    assert!(table.contains(&id_in) && table.contains("Can we meet?"), "{table}");
    let view = sh.ok(&["messages", "get", &id_in, "--json"]).await.json();
    assert_eq!(view["authentication"]["dkim"][0]["status"], "pass", "{view}");
    assert_eq!(view["verified_domain"], SENDER_DOMAIN);
    let human = sh.ok(&["messages", "get", &id_in]).await.stdout;
    assert!(
        human.contains(&format!("dkim=pass({SENDER_DOMAIN})")) && human.contains("dmarc=pass"),
        "{human}"
    );
    assert!(human.contains("Tuesday at 10?"), "{human}");
    assert_eq!(sh.ok(&["messages", "get", &id_in, "--text"]).await.stdout.trim(), "Tuesday at 10?");
    let raw = sh.ok(&["messages", "get", &id_in, "--raw"]).await.stdout;
    assert!(raw.contains("DKIM-Signature:") && raw.contains(&token), "the raw MIME: {raw}");

    // The reply threads: same conversation, In-Reply-To the inbound Message-ID.
    let reply = sh.ok(&["reply", &id_in, "--body", "Tuesday works.", "--wait", "--json"]).await.json();
    assert_eq!(reply["status"], "sent", "{reply}");
    let reply_id = reply["message_id"].as_str().expect("id");
    let conv = view["conversation_id"].as_str().expect("conversation");
    let thread =
        sh.ok(&["messages", "list", "--direction", "all", "--conversation", conv, "--json"]).await.lines();
    let ids: Vec<&str> = thread.iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&reply_id) && ids.contains(&id_in.as_str()), "{thread:?}");
    let raw = sh.ok(&["messages", "get", reply_id, "--raw"]).await.stdout;
    assert!(raw.contains(&format!("In-Reply-To: <{token}@{SENDER_DOMAIN}>")), "{raw}");

    // A forward reaches its new recipient (the text above it is required, as by the API).
    assert_eq!(sh.run(&["forward", &id_in, "--to", "bob@example.org"]).await.code, 2);
    let fwd = sh.ok(&["forward", &id_in, "--to", "bob@example.org", "--body", "FYI", "--json"]).await.json();
    assert_eq!(fwd["status"], "accepted");
    let got = next(&mut rx, "the forward").await;
    assert!(got.rcpts.iter().any(|r| r.contains("bob@example.org")), "{:?}", got.rcpts);
    assert!(header(&got.data, "Subject").is_some_and(|s| s.contains("Can we meet?")), "{}", got.data);

    // Review: a held send exits 3, approved with an edit it leaves; twice is a conflict (5).
    let set = sh.ok(&["protection", "set", "--outbound-review", "on", "--hold-ttl", "2h"]).await.stdout;
    assert!(set.contains("gate=allowlist/review"), "{set}");
    let p = sh.ok(&["protection", "get", BOT, "--json"]).await.json();
    assert_eq!(
        (p["outbound"]["gate"]["action"].as_str(), p["holds"]["ttl_seconds"].as_u64()),
        (Some("review"), Some(7200))
    );
    assert_eq!(p["inbound"]["gate"]["action"], "flag", "what was not named is kept: {p}");
    let held =
        sh.run(&["send", "--to", "carol@example.org", "--subject", "Draft", "--body", "Please check."]).await;
    assert_eq!(held.code, 3, "held for review: {}{}", held.stdout, held.stderr);
    let held_id = held.stdout.split_whitespace().nth(1).expect("id").trim_end_matches(':').to_owned();
    let queue = sh.ok(&["reviews", "list", "--json"]).await.lines();
    assert!(queue.iter().any(|r| r["id"] == held_id.as_str()), "{queue:?}");
    assert!(sh.ok(&["reviews", "get", &held_id]).await.stdout.contains("Please check."));
    let approved = sh.ok(&["reviews", "approve", &held_id, "--subject", "Checked draft"]).await.stdout;
    assert!(approved.contains("approved with edits"), "{approved}");
    // (The owner's review notice goes out through the internet too.)
    loop {
        let got = next(&mut rx, "the approved send").await;
        if header(&got.data, "Subject").is_some_and(|s| s.starts_with("Review needed")) {
            continue;
        }
        assert_eq!(header(&got.data, "Subject"), Some("Checked draft"));
        break;
    }
    let twice = sh.run(&["reviews", "approve", &held_id]).await;
    assert_eq!(twice.code, 5, "{}", twice.stderr);
    assert!(
        twice.stderr.contains("message_not_pending") && twice.stderr.contains("request req_"),
        "{}",
        twice.stderr
    );
    let held = sh.run(&["send", "--to", "dan@example.org", "--subject", "No", "--body", "x", "--json"]).await;
    assert_eq!((held.code, held.json()["status"].as_str()), (3, Some("pending_review")));
    let held_id = held.json()["message_id"].as_str().expect("id").to_owned();
    sh.ok(&["reviews", "reject", &held_id, "--reason", "not now"]).await;
    sh.ok(&["protection", "set", "--outbound-review", "off"]).await;

    // A message Postfix refuses (over its message_size_limit) fails: exit 7.
    let big = sh.home.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 450_000]).expect("write");
    let args = [
        "send",
        "--to",
        "erin@example.org",
        "--subject",
        "Big",
        "--body",
        "x",
        "--attach",
        big.to_str().expect("utf-8"),
        "--wait",
    ];
    let failed = sh.run(&args).await;
    assert_eq!(failed.code, 7, "{}{}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains("failed") && failed.stdout.contains("5.3.4"), "{}", failed.stdout);

    // Every error class has its exit code, and errors name the API's code and request id.
    let missing = sh.run(&["messages", "get", "msg_00000000000000000000000000000000"]).await;
    assert_eq!(missing.code, 5);
    assert!(missing.stderr.contains("not_found, HTTP 404, request req_"), "{}", missing.stderr);
    let as_json = sh.run(&["messages", "get", "msg_00000000000000000000000000000000", "--json"]).await;
    let err: Value = serde_json::from_str(as_json.stderr.trim()).expect("a JSON error on stderr");
    assert_eq!(
        (err["error"]["code"].as_str(), err["error"]["exit_code"].as_u64()),
        (Some("not_found"), Some(5))
    );
    let bad_key = Shell::new(&[("E2A_URL", w.api()), ("E2A_API_KEY", "e2a_acct_nope")]);
    assert_eq!(bad_key.run(&["whoami"]).await.code, 4);
    let agent_key = sh.ok(&["keys", "create", "--agent", BOT, "--name", "bot only", "--json"]).await.json();
    let scoped =
        Shell::new(&[("E2A_URL", w.api()), ("E2A_API_KEY", agent_key["key"].as_str().expect("key"))]);
    let refused = scoped.run(&["reviews", "list"]).await;
    assert_eq!(refused.code, 4, "an agent key on an account operation: {}", refused.stderr);
    let no_agent = Shell::pointed_at(&w, None);
    let r = no_agent.run(&["send", "--to", "x@example.org", "--subject", "s", "--body", "b"]).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("E2A_AGENT_EMAIL"), "{}", r.stderr);
    assert_eq!(sh.run(&["send", "--subject", "no recipient", "--body", "b"]).await.code, 2);
    let port = postagent_lab::free_port().expect("port");
    let down = Shell::new(&[("E2A_URL", &format!("http://127.0.0.1:{port}")), ("E2A_API_KEY", "k")]);
    let r = down.run(&["whoami"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot reach"), "{}", r.stderr);

    // Keys: listed without the secret, revoked with --yes only.
    let keys = sh.ok(&["keys", "list", "--json"]).await.lines();
    let key_id = agent_key["id"].as_str().expect("id");
    assert!(keys.iter().any(|k| k["id"] == key_id && k.get("key").is_none()), "{keys:?}");
    assert_eq!(sh.run(&["keys", "delete", key_id]).await.code, 2);
    sh.ok(&["keys", "delete", key_id, "--yes"]).await;
    assert_eq!(scoped.run(&["whoami"]).await.code, 4, "the revoked key no longer works");

    // Agents and domains.
    let agents = sh.ok(&["agents", "list", "--json"]).await.lines();
    assert_eq!(agents.len(), 2);
    let created =
        sh.ok(&["agents", "create", "helper@agents.test", "--name", "Helper", "--json"]).await.json();
    assert_eq!(created["email"], "helper@agents.test");
    sh.ok(&["agents", "update", "helper@agents.test", "--name", "Helper 2"]).await;
    assert_eq!(sh.ok(&["agents", "get", "helper@agents.test", "--json"]).await.json()["name"], "Helper 2");
    assert_eq!(sh.run(&["agents", "delete", "helper@agents.test"]).await.code, 2, "no --yes, no delete");
    sh.ok(&["agents", "delete", "helper@agents.test", "--yes"]).await;
    assert_eq!(sh.run(&["agents", "get", "helper@agents.test"]).await.code, 5);
    let trash = sh.ok(&["agents", "list", "--deleted", "--json"]).await.lines();
    assert!(trash.iter().any(|a| a["email"] == "helper@agents.test"), "{trash:?}");
    sh.ok(&["agents", "restore", "helper@agents.test"]).await;
    assert_eq!(sh.ok(&["agents", "get", "helper@agents.test", "--json"]).await.json()["name"], "Helper 2");
    // (agents.test is the deployment's shared domain, not the account's.)
    let added = sh.ok(&["domains", "add", "newco.test", "--json"]).await.json();
    assert_eq!(added["verified"], false);
    let domains = sh.ok(&["domains", "list", "--json"]).await.lines();
    assert!(domains.iter().any(|d| d["domain"] == "newco.test"), "{domains:?}");
    let records = sh.ok(&["domains", "get", "newco.test"]).await.stdout;
    assert!(records.contains("e2a-verify=") && records.contains("ownership"), "{records}");
    let verify = sh.run(&["domains", "verify", "newco.test"]).await;
    assert_eq!(verify.code, 1, "not verified yet: {}", verify.stderr);

    // A new user's first run: the client file, written private, is all it needs.
    let fresh = Shell::new(&[]);
    assert_eq!(fresh.run(&["whoami"]).await.code, 2, "no key anywhere is a usage error");
    for (k, v) in [("url", w.api()), ("agent_email", BOT)] {
        fresh.ok(&["config", "set", k, v]).await;
    }
    // The key from stdin, so it is in neither the shell's history nor the process list.
    let mut set =
        fresh.command(&["config", "set", "api_key", "-"]).stdin(Stdio::piped()).spawn().expect("spawn");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = set.stdin.take().expect("stdin");
        stdin.write_all(format!("{}\n", w.key).as_bytes()).await.expect("write");
    }
    assert!(set.wait().await.expect("wait").success());
    assert_eq!(fresh.ok(&["whoami", "--json"]).await.json()["scope"], "account");
    assert_eq!(fresh.ok(&["config", "get", "agent_email"]).await.stdout.trim(), BOT);
    let listed = fresh.ok(&["config", "list"]).await.stdout;
    assert!(listed.contains("(file)") && !listed.contains(&w.key), "the key is redacted: {listed}");
    let path = fresh.ok(&["config", "path"]).await.stdout;
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path.trim()).expect("file").permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(fresh.ok(&["messages", "list", "--read-status", "all"]).await.stdout.contains("Can we meet?"));
}

/// A Responses answer whose output text is `text`.
fn model_says(text: &str) -> Answer {
    Answer::Json(
        200,
        json!({"id": "resp_1", "object": "response", "status": "completed", "output": [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}
        ]}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_waits_once_and_bridges_a_model_into_the_conversation() {
    let options = Options {
        agents: vec![BOT, PEER],
        extra_args: vec!["--loop-reply-budget", "1", "--submission-retry-schedule", "1s,1s"],
        ..Options::default()
    };
    let Some(mut w) = MailWorld::start(options).await else { return };
    // The agents' domain publishes SPF and DMARC, as an operator's would, so mail between
    // the agents is verified (the bridge answers only verified senders).
    w.zone.dns().add_txt(AGENT_DOMAIN, "v=spf1 ip4:127.0.0.1 -all");
    w.zone.dns().add_txt(&format!("_dmarc.{AGENT_DOMAIN}"), "v=DMARC1; p=reject");
    let _server = w.serve();
    let bot = Shell::pointed_at(&w, Some(BOT));
    let peer = Shell::pointed_at(&w, Some(PEER));

    // The blocking wait: the first message matching --match, its text alone.
    signed_mail(&w, BOT, "Newsletter", "Nothing to see.\r\n").await;
    signed_mail(&w, BOT, "Sign-in", "Your code: 4242\r\n").await;
    let once = bot.run(&["listen", "--once", "--until", "60s", "--match", "code: [0-9]+", "--text"]).await;
    assert_eq!((once.code, once.stdout.trim()), (0, "Your code: 4242"), "{}", once.stderr);
    let waited = bot.run(&["listen", "--once", "--until", "2s", "--conversation", "conv_none"]).await;
    assert_eq!((waited.code, waited.stdout.trim()), (6, "TIMEOUT"), "{}", waited.stderr);
    assert_eq!(bot.run(&["listen", "--until", "2s"]).await.code, 2, "--until needs --once");

    // Both agents answer everything with a model; the model's answers go out as replies.
    let model = Receiver::start().await.expect("model");
    model.script(vec![
        model_says("Happy to help: Tuesday works."),
        model_says("Noted, see you then."),
        model_says("This answer must never be sent."),
    ]);
    let url = model.url("/v1/responses");
    let bridge = ["listen", "--forward", url.as_str(), "--forward-token", "sk-test", "--model", "test-model"];
    let bot_listener = bot.spawn(&bridge);
    let peer_listener = peer.spawn(&bridge);
    bot_listener.wait_for("connected").await;
    peer_listener.wait_for("connected").await;

    let first = peer
        .ok(&["send", "--to", BOT, "--subject", "Meeting", "--body", "Can we meet on Tuesday?", "--json"])
        .await;
    let first_id = first.json()["message_id"].as_str().expect("id").to_owned();

    // BOT answers (its one reply to PEER), PEER answers that, and BOT's second reply is
    // stopped by the reply budget: the loop ends after three model calls.
    let stopped = bot_listener.wait_for("loop protection").await;
    assert!(stopped.contains("blocked_by_policy"), "{stopped}");
    let hits = model.hits();
    assert_eq!(hits.len(), 3, "bot: {}\npeer: {}", bot_listener.log(), peer_listener.log());
    let ask = hits[0].json();
    assert_eq!(hits[0].header("authorization"), "Bearer sk-test");
    assert_eq!(ask["model"], "test-model");
    let input = ask["input"].as_str().expect("input");
    assert!(
        input.contains("New email for bot@agents.test") && input.contains("From: peer@agents.test ("),
        "{input}"
    );
    // What the sender wrote is fenced by a tag with a nonce the instructions name.
    let fence = input.split("(untrusted):\n").nth(1).and_then(|r| r.split('>').next()).expect("a fence");
    let inside = input.split(&format!("{fence}>")).nth(1).expect("fenced");
    assert!(inside.contains("Subject: Meeting") && inside.contains("Can we meet on Tuesday?"), "{input}");
    assert!(input.contains(&format!("</{}>", &fence[1..])), "{input}");
    let instructions = ask["instructions"].as_str().expect("instructions");
    assert!(instructions.contains("untrusted input") && instructions.contains(fence), "{ask}");

    // The answer came back through Postfix into PEER's inbox, in the first message's
    // conversation; PEER's answer to it is in BOT's.
    let conv = peer.ok(&["messages", "get", &first_id, "--json"]).await.json()["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_owned();
    let answers = until("the model's answer in PEER's inbox", WAIT, || async {
        let r =
            peer.run(&["messages", "list", "--conversation", &conv, "--read-status", "all", "--json"]).await;
        let l = r.lines();
        (!l.is_empty()).then_some(l)
    })
    .await;
    let reply_id = answers[0]["id"].as_str().expect("id");
    assert_eq!(answers[0]["header_from"], BOT);
    let text = peer.ok(&["messages", "get", reply_id, "--text"]).await.stdout;
    assert_eq!(text.trim(), "Happy to help: Tuesday works.");
    let bot_side = bot
        .ok(&["messages", "list", "--conversation", &conv, "--read-status", "all", "--json"])
        .await
        .lines();
    let subjects: Vec<&str> = bot_side.iter().filter_map(|m| m["subject"].as_str()).collect();
    assert_eq!(bot_side.len(), 2, "the first message and PEER's answer: {subjects:?}");
    assert!(peer_listener.log().contains("answered"), "{}", peer_listener.log());
}
