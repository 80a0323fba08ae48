//! The published e2a Python SDK, installed from PyPI into a venv and run unmodified against
//! a real `postagent serve`: info, account, API keys, domains (with real DNS verification
//! through a loopback DNS server), agents, sending (self-send, queued, idempotent, reply) and
//! the review queue (protection, hold, approve with an edit, reject, agent keys refused).

use crate::common;

use common::bin::{Server, run, text};
use postagent_lab::{DnsServer, PgCluster};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MAIL_HOST: &str = "mx.sdk.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_5_3_0_drives_the_foundation() {
    drive("sdk-5.3.0", None).await;
}

/// The same flows with the server on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_5_3_0_drives_the_foundation_on_postgres() {
    let Some(cluster) = PgCluster::shared() else { return };
    let url = cluster.create_database().expect("database");
    drive("sdk-5.3.0", Some(url)).await;
}

/// The newest 5.x at the time of writing, pinned so a PyPI release cannot change CI's
/// verdict without a commit; bump it on purpose. It requires `DomainView.capabilities`,
/// which 5.3.0 does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_5_8_1_drives_the_foundation() {
    drive("sdk-5.8.1", None).await;
}

/// `database_url = None` runs the server on its default SQLite file.
async fn drive(client: &'static str, database_url: Option<String>) {
    let Some(venv) =
        tokio::task::spawn_blocking(move || postagent_lab::clients::venv(client)).await.expect("join")
    else {
        return;
    };
    let version = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", "import importlib.metadata as m; print(m.version('e2a'))"])
        .output()
        .expect("python");
    eprintln!("e2a SDK {}", text(&version.stdout).trim());

    let dns = DnsServer::start().await.expect("dns");
    dns.add_mx("sdk.example", 10, MAIL_HOST);
    let data = tempfile::tempdir().expect("tempdir");
    let mut db_flags: Vec<&str> = Vec::new();
    if let Some(url) = &database_url {
        db_flags.extend(["--database-url", url.as_str()]);
    }
    let bootstrap = [&["admin", "bootstrap", "--email", "sdk@example.org"][..], &db_flags].concat();
    let out = run(data.path(), &bootstrap);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key =
        text(&out.stdout).lines().find_map(|l| l.strip_prefix("API key: ").map(str::to_owned)).expect("key");
    let dns_addr = dns.addr().to_string();
    let serve = [
        &[
            "serve",
            "--api-listen",
            "127.0.0.1:0",
            "--shared-domain",
            "agents.test",
            "--dns-server",
            &dns_addr,
            "--mail-hostname",
            MAIL_HOST,
        ][..],
        &db_flags,
    ]
    .concat();
    let server = Server::start(data.path(), &serve);
    run_script(&venv, &server, &key, &dns).await;
}

async fn run_script(venv: &Path, server: &Server, key: &str, dns: &DnsServer) {
    let mut child =
        common::python::spawn_script(venv, "foundation.py", key, &format!("http://{}", server.addr));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let mut transcript = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if let Some(rest) = line.strip_prefix("TOKEN ") {
            let (domain, token) = rest.split_once(' ').expect("TOKEN domain token");
            dns.add_txt(domain, token);
            stdin.write_all(b"published\n").await.expect("stdin");
            stdin.flush().await.expect("flush");
        }
        transcript.push(line);
    }
    let status =
        tokio::time::timeout_at(deadline, child.wait()).await.expect("script timed out").expect("wait");
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await.expect("stderr");
    assert!(
        status.success() && transcript.last().is_some_and(|l| l == "SDK OK"),
        "SDK script failed ({status}):\nstdout:\n{}\nstderr:\n{err}",
        transcript.join("\n")
    );
}
