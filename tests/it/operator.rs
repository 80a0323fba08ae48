//! What the operator sees: SIGHUP reloads (applied, restart-only, refused), syslog with
//! facility `mail`, and the Prometheus metrics listener.

use crate::common;

use common::bin::Server;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("postagent.toml");
    let text = format!(
        "api_listen = \"127.0.0.1:0\"\nmilter_listen = \"127.0.0.1:0\"\nlmtp_listen = \"127.0.0.1:0\"\nsocketmap_listen = \"127.0.0.1:0\"\n\
         submission_relay = \"127.0.0.1:9\"\nlog_level = \"info\"\n{extra}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn health(addr: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn sighup_applies_the_level_reports_restart_only_keys_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = config(dir.path(), "");
    let server = Server::start(dir.path(), &["serve", "--config", file.to_str().expect("utf-8")]);
    assert_eq!(health(&server.addr), 200);
    assert!(!server.log().contains("request served"), "debug lines are off at info");

    // log_level is applied in place; the debug-level access log appears from then on.
    std::fs::write(&file, std::fs::read_to_string(&file).expect("read").replace("\"info\"", "\"debug\""))
        .expect("write");
    server.signal("-HUP");
    server.wait_for("configuration reloaded: log_level \"info\" -> \"debug\"");
    assert_eq!(health(&server.addr), 200);
    server.wait_for("request served");

    // A listener change needs a restart: said so, by key, and the old listener keeps serving.
    let moved = std::fs::read_to_string(&file)
        .expect("read")
        .replace("api_listen = \"127.0.0.1:0\"", "api_listen = \"127.0.0.1:1\"");
    std::fs::write(&file, moved).expect("write");
    server.signal("-HUP");
    let line = server.wait_for("only take effect after a restart");
    assert!(line.contains("api_listen") && !line.contains("log_level"), "{line}");
    assert_eq!(health(&server.addr), 200);

    // An invalid file is refused with the reason; the running configuration stays.
    std::fs::write(&file, "log_level = \"debug\"\nwebhook_mode = \"sometimes\"\n").expect("write");
    server.signal("-HUP");
    let line = server.wait_for("configuration reload refused");
    assert!(line.contains("webhook_mode") && line.contains("keeping the running configuration"), "{line}");
    std::fs::write(&file, "this is = = not toml").expect("write");
    server.signal("-HUP");
    server.wait_for("configuration reload refused");
    assert_eq!(health(&server.addr), 200, "still serving after refused reloads");
}

#[test]
fn syslog_target_writes_mail_facility_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&socket).expect("bind a syslog socket");
    syslog.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let file = config(
        dir.path(),
        &format!(
            "log_target = \"syslog\"\nsyslog_facility = \"mail\"\nsyslog_socket = \"{}\"\n",
            socket.display()
        ),
    );
    let mut child = common::bin::postagent(dir.path(), &["serve", "--config", file.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let found = loop {
        let Ok(n) = syslog.recv(&mut buf) else { break None };
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains("API listening on") {
            break Some(line);
        }
        seen.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("no startup line on the syslog socket; got {seen:?}"));
    // facility mail (2) × 8 + informational (6)
    assert!(line.starts_with(&format!("<22>postagent[{}]: ", child.id())), "{line}");
    assert!(!line.contains('\n'), "one line per datagram");
}

/// `name{label}` or `name` value from a Prometheus text page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_postfix_sent_through() {
    use common::mail::{MailWorld, Options};
    use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message};
    let options = Options { extra_args: vec!["--metrics-listen", "127.0.0.1:0"], ..Options::default() };
    let Some(mut w) = MailWorld::start(options).await else { return };
    let server = w.serve();
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("metrics listening on"))
        .map(str::to_owned)
        .expect("metrics line");
    let addr = line.rsplit("metrics listening on ").next().expect("addr").trim().to_owned();

    let message = sample_message("bot@agents.test", "counted", "m1", "Hello.\r\n");
    let qid = w.send(&format!("alice@{SENDER_DOMAIN}"), &["bot@agents.test"], &message).await;
    w.wait_sent(&qid, "bot@agents.test").await;
    let mut smtp = postagent_lab::smtp::Smtp::connect(w.postfix.smtp_addr(), "mail.sender.test").await;
    assert!(smtp.cmd("MAIL FROM:<alice@sender.test>").await.starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<nobody@agents.test>").await.starts_with("550"));
    smtp.cmd("QUIT").await;

    let page = reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().expect("ct").starts_with("text/plain; version=0.0.4"));
    let page = page.text().await.expect("text");
    assert_eq!(sample(&page, "postagent_milter_rcpt_total{class=\"agent\"}"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_milter_rcpt_total{class=\"unknown_agent\"}"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_milter_verdicts_total{result=\"verified\"}"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_lmtp_recipients_total{outcome=\"stored\"}"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_milter_eom_seconds_count"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_lmtp_commit_seconds_count"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_database_up"), 1.0, "{page}");
    assert_eq!(sample(&page, "postagent_websockets_open"), 0.0, "{page}");
    assert!(page.contains("# TYPE postagent_queue_depth gauge"), "{page}");
    assert!(page.contains("postagent_build_info{version="), "{page}");
}

/// A full run at debug level (inbound through Postfix, a webhook with its secret, a send with
/// an attachment, API keys) logs no secret, no body and no attachment byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_carry_secrets_or_bodies() {
    use common::mail::{MailWorld, Options};
    use postagent_lab::lmtp_sink::smtp_sink;
    use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message};
    use reqwest::Method;
    use serde_json::json;
    let (internet, mut out) = smtp_sink(&[]).await;
    let options = Options {
        internet: Some(internet),
        extra_args: vec!["--log-level", "debug", "--webhook-mode", "development"],
        ..Options::default()
    };
    let Some(mut w) = MailWorld::start(options).await else { return };
    let server = w.serve();
    let inbound_body = "INBOUND-BODY-7f3a9c";
    let message = sample_message("bot@agents.test", "secret test", "s1", &format!("{inbound_body}\r\n"));
    let qid = w.send(&format!("alice@{SENDER_DOMAIN}"), &["bot@agents.test"], &message).await;
    w.wait_sent(&qid, "bot@agents.test").await;
    let (_, hook) = w
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/h", "events": ["email.received"]})),
        )
        .await;
    let signing_secret = hook["signing_secret"].as_str().expect("secret").to_owned();
    let (_, minted) = w.call(Method::POST, "/v1/account/api-keys", Some(json!({"name": "x"}))).await;
    let minted = minted["key"].as_str().expect("key").to_owned();
    let outbound_body = "OUTBOUND-BODY-c41d22";
    let attachment = "QVRUQUNITUVOVC1CWVRFUy05ZTE=";
    let (status, _) = w
        .call(
            Method::POST,
            "/v1/agents/bot@agents.test/messages",
            Some(json!({"to": ["ann@example.org"], "subject": "s", "text": outbound_body,
                "attachments": [{"filename": "a.txt", "content_type": "text/plain", "data": attachment}]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    tokio::time::timeout(common::mail::WAIT, out.recv()).await.expect("sent").expect("sink");
    server.wait_for("submitted msg=");
    let secret = std::fs::read_to_string(w.secret_file()).expect("secret file");

    let log = server.log();
    for (what, needle) in [
        ("the account key", w.key.as_str()),
        ("a minted key", minted.as_str()),
        ("a webhook signing secret", signing_secret.as_str()),
        ("the deployment secret", secret.trim()),
        ("an inbound body", inbound_body),
        ("an outbound body", outbound_body),
        ("attachment bytes", attachment),
        ("decoded attachment bytes", "ATTACHMENT-BYTES"),
    ] {
        assert!(!log.contains(needle), "the log carries {what}:\n{log}");
    }
    // Per-message lines lead with the Postfix queue id.
    let stored = log.lines().find(|l| l.contains("stored msg=")).expect("stored line");
    assert!(stored.contains(&format!("{qid}: stored msg=")), "{stored}");
    let submitted = log.lines().find(|l| l.contains("submitted msg=")).expect("submitted line");
    let first = submitted.split(": submitted").next().expect("prefix");
    assert!(
        first
            .rsplit(' ')
            .next()
            .is_some_and(|q| q.len() >= 5 && q.chars().all(|c| c.is_ascii_alphanumeric())),
        "{submitted}"
    );
}

/// Under systemd (`Type=notify`): READY=1 once serving, RELOADING=1/READY=1 around a SIGHUP,
/// STOPPING=1 on SIGTERM.
#[test]
fn systemd_readiness_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&socket).expect("bind");
    notify.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let file = config(dir.path(), "");
    let mut child = common::bin::postagent(dir.path(), &["serve", "--config", file.to_str().expect("utf-8")])
        .env("NOTIFY_SOCKET", &socket)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let next = || {
        let mut buf = [0u8; 128];
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let pid = child.id().to_string();
    let kill = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().expect("kill");
    kill("-HUP");
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    kill("-TERM");
    assert_eq!(next(), "STOPPING=1");
    assert!(child.wait().expect("wait").success());
}

/// Socket activation, as the shipped `.socket` units hand the listeners over: postagent
/// serves on the sockets it is given (by name), leaves a unix one in place when it stops, and
/// because the sockets outlive it, a connection Postfix opens while postagent is down (a
/// crash, `kill -9`) waits in the backlog and is served by the next postagent: no refused
/// connection, so nothing for Postfix to defer.
#[test]
fn systemd_sockets_outlive_a_crash() {
    use std::io::{BufRead, BufReader as Reader, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let lmtp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind lmtp");
    let lmtp_addr = lmtp.local_addr().expect("addr").to_string();
    let maps_path = dir.path().join("socketmap.sock");
    let maps = std::os::unix::net::UnixListener::bind(&maps_path).expect("bind socketmap");
    let maps_flag = format!("unix:{}", maps_path.display());
    let args = [
        "serve",
        "--api-listen",
        "127.0.0.1:0",
        "--milter-listen",
        "",
        "--lmtp-listen",
        &lmtp_addr,
        "--socketmap-listen",
        &maps_flag,
        "--submission-relay",
        "127.0.0.1:9",
    ];
    use std::os::fd::AsFd;
    let (l, m) = (lmtp.as_fd(), maps.as_fd());
    let fds = [("lmtp", &l), ("socketmap", &m)];
    let start = || {
        let server = Server::start_activated(dir.path(), &args, &fds);
        let log = server.log();
        assert!(log.contains(&format!("LMTP listening on {lmtp_addr} (socket from systemd)")), "{log}");
        assert!(log.contains(&format!("socketmap listening on {maps_flag} (socket from systemd)")), "{log}");
        server
    };
    let greeting = |stream: &std::net::TcpStream| {
        let mut line = String::new();
        Reader::new(stream).read_line(&mut line).map(|_| line)
    };
    let mut server = start();
    let first = std::net::TcpStream::connect(&lmtp_addr).expect("connect");
    assert!(greeting(&first).expect("greeting").starts_with("220 "));
    server.signal("-KILL");
    server.wait_exit();
    assert!(maps_path.exists(), "systemd's unix socket stays in place");
    // postagent is down: the connection is accepted by the kernel, not refused, and waits.
    let waiting = std::net::TcpStream::connect(&lmtp_addr).expect("connect while postagent is down");
    waiting.set_read_timeout(Some(std::time::Duration::from_millis(300))).expect("timeout");
    assert!(greeting(&waiting).is_err(), "nobody greets while postagent is down");
    waiting.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
    let _server = start();
    let line = greeting(&waiting).expect("the next postagent greets the waiting connection");
    assert!(line.starts_with("220 "), "{line}");
    (&waiting).write_all(b"QUIT\r\n").expect("quit");
    // A normal stop removes only the sockets postagent created itself.
    drop(_server);
    assert!(maps_path.exists());
}
