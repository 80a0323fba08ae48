//! `postagent lab` as a person uses it: start it, copy the swaks command it prints, send,
//! and read the stored message back over `/v1`.

use crate::common;

use common::bin::{BIN, run_with_stdin};
use common::mail::{header_count, raw_of};
use postagent_lab::postfix::require_postfix;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const AGENT: &str = "hello@agents.lab.test";

/// Lines of one of the lab's output streams, as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The next line containing `needle`; panics with what was seen after 30 s.
fn next_containing(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line with {needle:?} ({e}); seen:\n{}", seen.join("\n")),
        }
    }
}

fn swaks(command: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(command).output().expect("run swaks");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{command}\n{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

async fn get(http: &reqwest::Client, api: &str, key: &str, path: &str) -> Value {
    let r = http.get(format!("{api}{path}")).bearer_auth(key).send().await.expect("GET");
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_swaks_command_stores_a_verified_message() {
    if !require_postfix() || !postagent_lab::require("swaks", "install the swaks package") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_port = postagent_lab::free_port().expect("port").to_string();
    let mut lab = Command::new(BIN)
        .args(["lab", "--dir"])
        .arg(dir.path())
        .args(["--smtp-port", &smtp_port, "--api-listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postagent lab");
    let out = lines_of(lab.stdout.take().expect("stdout"));
    let log = lines_of(lab.stderr.take().expect("stderr"));

    let api_line = next_containing(&out, " API http://");
    let api = api_line.split("API ").nth(1).and_then(|s| s.split(',').next()).expect("API url").to_owned();
    let key = next_containing(&out, "API key").split_whitespace().last().expect("key").to_owned();
    let plain = next_containing(&out, "swaks ").trim().to_owned();
    let signed = next_containing(&out, "swaks ").trim().to_owned();
    assert!(signed.contains("--data") && signed.contains("signed.eml"), "{signed}");

    let said = swaks(&plain);
    assert!(said.contains("250 2.0.0 Ok: queued as"), "{said}");
    let stored = next_containing(&log, "stored msg=");
    assert!(stored.contains(&format!("agent={AGENT}")), "{stored}");

    let http = reqwest::Client::new();
    let list = get(&http, &api, &key, &format!("/v1/agents/{AGENT}/messages")).await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    let id = items[0]["id"].as_str().expect("id");
    let view = get(&http, &api, &key, &format!("/v1/agents/{AGENT}/messages/{id}")).await;
    assert_eq!(view["verified_domain"], "sender.test", "{view}");
    assert_eq!(view["authentication"]["dmarc"]["status"], "pass", "{view}");
    assert_eq!(view["authentication"]["spf"]["aligned"], true, "{view}");
    let raw = raw_of(&view);
    assert_eq!(header_count(&raw, "X-E2A-Auth-Signature"), 1);
    assert_eq!(header_count(&raw, "X-E2A-Auth-Verified"), 1);
    let verdict = run_with_stdin(dir.path(), &["verify", "--secret-file", "hmac.secret"], &raw);
    assert!(verdict.status.success(), "{}", String::from_utf8_lossy(&verdict.stdout));

    // The DKIM-signed sample passes DKIM too.
    let said = swaks(&signed);
    assert!(said.contains("250 2.0.0 Ok: queued as"), "{said}");
    next_containing(&log, "stored msg=");
    let list = get(&http, &api, &key, &format!("/v1/agents/{AGENT}/messages")).await;
    let newest = list["items"][0]["id"].as_str().expect("id");
    let view = get(&http, &api, &key, &format!("/v1/agents/{AGENT}/messages/{newest}")).await;
    assert_eq!(view["authentication"]["dkim"][0]["status"], "pass", "{view}");
    assert_eq!(view["authentication"]["dkim"][0]["domain"], "sender.test", "{view}");

    // Ctrl-C stops everything, the private Postfix included.
    let kill = Command::new("kill").args(["-INT", &lab.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let status = lab.wait().expect("wait");
    assert!(status.success(), "lab exit: {status}");
    let refused = std::net::TcpStream::connect(("127.0.0.1", smtp_port.parse::<u16>().expect("port")));
    assert!(refused.is_err(), "the private Postfix still listens after the lab stopped");
}
