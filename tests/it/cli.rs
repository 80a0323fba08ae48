//! The `postagent` binary as an operator runs it: configuration errors, `serve` on the
//! laptop defaults, graceful shutdown, unix sockets and the `admin` commands.

use crate::common;

use common::bin::{Server, postagent, run, run_with_stdin, text};
use std::path::Path;

fn http_get(addr: &str, path: &str, key: Option<&str>) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    })
}

#[test]
fn defaults_need_no_configuration_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("api_listen: \"127.0.0.1:8080\""), "{shown}");
    assert!(shown.contains("data_dir: \".\""), "{shown}");
}

#[test]
fn serve_on_defaults_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &["serve", "--api-listen", "127.0.0.1:0"]);
    let (status, body) = http_get(&server.addr, "/api/health", None);
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));

    // The SQLite file and the secret appear in the working directory, the secret private.
    assert!(dir.path().join("postagent.db").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("hmac.secret")).expect("secret").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    server.signal("-TERM");
    server.wait_for("postagent stopped");
    assert!(server.wait_exit().success());
}

#[test]
fn sigint_also_stops_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &["api", "--api-listen", "127.0.0.1:0"]);
    server.signal("-INT");
    server.wait_for("SIGINT received");
    assert!(server.wait_exit().success());
}

#[test]
fn configuration_errors_name_the_key_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "api_listen = \"127.0.0.1:8080\"\nshared_domian = \"x.org\"\n",
    )
    .expect("write");
    let out = run(dir.path(), &["--config", "bad.toml", "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("shared_domian"), "{}", text(&out.stderr));

    let out = postagent(dir.path(), &["serve"]).env("POSTAGENT_API_LISTEN", "nowhere").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("POSTAGENT_API_LISTEN"), "{}", text(&out.stderr));

    let out = run(dir.path(), &["serve", "--database-url", "mysql://db/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--database-url"), "{}", text(&out.stderr));

    let out = run(dir.path(), &["--config", "missing.toml", "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.toml"), "{}", text(&out.stderr));
}

#[test]
fn config_file_env_and_flags_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.toml"), "shared_domain = \"file.test\"\nlog_format = \"json\"\n")
        .expect("write");
    let out = postagent(dir.path(), &["--config", "p.toml", "--log-format", "plain", "config"])
        .env("POSTAGENT_SHARED_DOMAIN", "env.test")
        .output()
        .expect("run");
    let shown = text(&out.stdout);
    assert!(shown.contains("shared_domain: \"env.test\""), "{shown}");
    assert!(shown.contains("log_format: \"plain\""), "{shown}");
}

#[test]
fn admin_bootstrap_domains_agents_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = run(d, &["admin", "agents", "list"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("admin bootstrap"), "{}", text(&out.stderr));

    let out = run(d, &["admin", "bootstrap", "--email", "a@example.org"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let key =
        stdout.lines().find_map(|l| l.strip_prefix("API key: ")).expect("the key is printed").to_owned();
    assert!(key.starts_with("e2a_acct_") && key.len() == 73, "{key}");
    let again = run(d, &["admin", "bootstrap", "--email", "a@example.org"]);
    assert!(!again.status.success(), "one account per email");

    let out = run(d, &["admin", "domains", "add", "example.org", "--verified"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(d, &["admin", "domains", "add", "pending.example", "--mail-hostname", "mx.example.org"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("TXT  \"e2a-verify=") && shown.contains("MX   10 mx.example.org."), "{shown}");
    let out = run(d, &["admin", "agents", "add", "bot@example.org", "--name", "Bot"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(d, &["admin", "agents", "add", "bot@pending.example"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not verified"), "{}", text(&out.stderr));
    let listed = text(&run(d, &["admin", "agents", "list"]).stdout);
    assert!(listed.contains("bot@example.org") && listed.contains("Bot"), "{listed}");
    let listed = text(&run(d, &["admin", "domains", "list"]).stdout);
    assert!(listed.contains("example.org") && listed.contains("true"), "{listed}");

    let out = run(d, &["admin", "keys", "create", "--agent", "bot@example.org"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let agent_key =
        text(&out.stdout).lines().find_map(|l| l.strip_prefix("API key: ").map(str::to_owned)).expect("key");
    assert!(agent_key.starts_with("e2a_agt_"));

    // The keys work against the server on the same database.
    let server = Server::start(d, &["serve", "--api-listen", "127.0.0.1:0"]);
    let (status, agents) = http_get(&server.addr, "/v1/agents", Some(&key));
    assert_eq!(status, 200);
    assert_eq!(agents["items"][0]["email"], "bot@example.org");
    assert_eq!(agents["items"][0]["domain_verified"], true);
    let (status, own) = http_get(&server.addr, "/v1/agents/bot%40example.org", Some(&agent_key));
    assert_eq!((status, own["name"].as_str()), (200, Some("Bot")));
    let (status, _) = http_get(&server.addr, "/v1/agents", Some(&agent_key));
    assert_eq!(status, 403);
}

#[test]
fn api_on_a_unix_socket_replaces_a_stale_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("api.sock");
    // A socket left behind by a crashed process.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("stale socket"));
    let listen = format!("unix:{}", sock.display());
    let mut server = Server::start(dir.path(), &["serve", "--api-listen", &listen]);
    let mut stream = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    use std::io::{Read, Write};
    stream.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("{\"status\":\"ok\"}"), "{reply}");
    server.signal("-TERM");
    assert!(server.wait_exit().success());
    assert!(!sock.exists(), "the socket is removed on shutdown");

    std::fs::write(&sock, "not a socket").expect("write");
    let out = run(dir.path(), &["serve", "--api-listen", &listen]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a socket"), "{}", text(&out.stderr));
}

/// A DNS server that receives queries and never answers, and says when one arrived: the
/// request that asked is then provably in flight.
struct DeadDns {
    addr: std::net::SocketAddr,
    asked: tokio::sync::mpsc::Receiver<()>,
    _tcp: tokio::net::TcpListener,
}

async fn dead_dns() -> DeadDns {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let addr = udp.local_addr().expect("addr");
    // Also hold the TCP port so a TCP fallback connects and then hears nothing either.
    let tcp = tokio::net::TcpListener::bind(addr).await.expect("tcp");
    let (tx, asked) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while udp.recv_from(&mut buf).await.is_ok() {
            let _ = tx.send(()).await;
        }
    });
    DeadDns { addr, asked, _tcp: tcp }
}

async fn slow_verify_server(dir: &Path, dns: &DeadDns, extra: &[&str]) -> (Server, String) {
    let out = run(dir, &["admin", "bootstrap", "--email", "a@example.org"]);
    let key =
        text(&out.stdout).lines().find_map(|l| l.strip_prefix("API key: ").map(str::to_owned)).expect("key");
    assert!(run(dir, &["admin", "domains", "add", "slow.example"]).status.success());
    let dns_addr = dns.addr.to_string();
    let mut args = vec!["serve", "--api-listen", "127.0.0.1:0", "--dns-server", &dns_addr];
    args.extend_from_slice(extra);
    (Server::start(dir, &args), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dns = dead_dns().await;
    let (mut server, key) = slow_verify_server(dir.path(), &dns, &["--dns-timeout", "2s"]).await;
    let url = format!("http://{}/v1/domains/slow.example/verify", server.addr);
    let request = tokio::spawn(async move { reqwest::Client::new().post(url).bearer_auth(key).send().await });
    dns.asked.recv().await.expect("the verify request reached DNS");
    server.signal("-TERM");
    let res = request.await.expect("join").expect("the in-flight request was answered");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(
        (body["verified"].clone(), body["mx"].clone()),
        (serde_json::json!(false), serde_json::json!("deferred"))
    );
    assert!(tokio::task::spawn_blocking(move || server.wait_exit()).await.expect("join").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dns = dead_dns().await;
    let extra = ["--dns-timeout", "60s", "--shutdown-timeout", "300ms"];
    let (mut server, key) = slow_verify_server(dir.path(), &dns, &extra).await;
    let url = format!("http://{}/v1/domains/slow.example/verify", server.addr);
    let request = tokio::spawn(async move { reqwest::Client::new().post(url).bearer_auth(key).send().await });
    dns.asked.recv().await.expect("the verify request reached DNS");
    server.signal("-TERM");
    let started = std::time::Instant::now();
    let server = tokio::task::spawn_blocking(move || {
        server.wait_for("did not finish in time");
        let status = server.wait_exit();
        (server, status)
    });
    let (_server, status) = server.await.expect("join");
    assert!(status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "stopped long before the DNS timeout");
    assert!(request.await.expect("join").is_err(), "the cut request saw its connection close");
}

#[test]
fn verify_checks_a_delivered_message() {
    use std::os::unix::fs::PermissionsExt;
    let vector: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/vectors/auth-headers.json")).expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("hmac.secret");
    std::fs::write(&secret, format!("{}\n", vector["secret"].as_str().expect("secret"))).expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let message = vector["message"].as_str().expect("message").to_owned();

    let check = |msg: &str, args: &[&str]| run_with_stdin(dir.path(), args, msg.as_bytes());
    let ok = check(&message, &["verify", "--secret-file", "hmac.secret"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let out = text(&ok.stdout);
    assert!(out.contains("verified: true") && out.contains("verified_domain: example.org"), "{out}");

    // With the default configuration the secret is <data_dir>/hmac.secret.
    assert_eq!(check(&message, &["verify"]).status.code(), Some(0));

    let tampered = check(&message.replace("invoice", "lnvoice"), &["verify", "--secret-file", "hmac.secret"]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(text(&tampered.stdout).contains("Body-Hash"), "{}", text(&tampered.stdout));
    let stale = check(&message, &["verify", "--secret-file", "hmac.secret", "--max-age", "60"]);
    assert_eq!(stale.status.code(), Some(1));
    let unsigned = check("From: a@b.example\r\n\r\nhi\r\n", &["verify", "--secret-file", "hmac.secret"]);
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(text(&unsigned.stdout).contains("did not pass through the postagent milter"));
    let missing = check(&message, &["verify", "--secret-file", "nope.secret"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn shell_completions_cover_the_client_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["postagent", "reviews", "attachments", "idempotency-key", "outbound-review"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = run(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn client_commands_never_read_the_server_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A server file that would be a configuration error does not matter to a client
    // command, which fails only for want of its own settings (exit 2, usage).
    std::fs::write(dir.path().join("bad.toml"), "shared_domian = \"x\"\n").expect("write");
    let out = postagent(dir.path(), &["whoami"])
        .env("POSTAGENT_CONFIG", dir.path().join("bad.toml"))
        .env("HOME", dir.path())
        .env_remove("E2A_API_KEY")
        .env_remove("E2A_URL")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("POSTAGENT_CLIENT_CONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no API key") && !err.contains("shared_domian"), "{err}");
}

#[test]
fn admin_exports_and_deletes_an_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    assert!(run(d, &["admin", "bootstrap", "--email", "gone@example.org"]).status.success());
    assert!(run(d, &["admin", "bootstrap", "--email", "stays@example.org"]).status.success());
    assert!(
        run(d, &["admin", "domains", "add", "example.org", "--verified", "--account", "gone@example.org"])
            .status
            .success()
    );
    assert!(
        run(d, &["admin", "agents", "add", "bot@example.org", "--account", "gone@example.org"])
            .status
            .success()
    );

    let out = run(d, &["admin", "accounts", "export", "--account", "gone@example.org", "-o", "export.json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 messages"), "{}", text(&out.stderr));
    let file = d.join("export.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).expect("file").permissions());
    assert_eq!(mode & 0o777, 0o600, "an export is private");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(
        (doc["schema_version"].as_str(), doc["user"]["email"].as_str()),
        (Some("4"), Some("gone@example.org"))
    );
    assert_eq!(doc["agents"][0]["email"], "bot@example.org");
    let again =
        run(d, &["admin", "accounts", "export", "--account", "gone@example.org", "-o", "export.json"]);
    assert!(!again.status.success(), "an existing file is never overwritten");

    let out = run(d, &["admin", "accounts", "delete", "--account", "gone@example.org"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    let out = run(d, &["admin", "accounts", "delete", "--account", "gone@example.org", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let counts: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("counts");
    assert_eq!((counts["agents_deleted"].as_u64(), counts["domains_deleted"].as_u64()), (Some(1), Some(1)));
    let listed = text(&run(d, &["admin", "accounts", "list"]).stdout);
    assert!(listed.contains("stays@example.org") && !listed.contains("gone@example.org"), "{listed}");
}
