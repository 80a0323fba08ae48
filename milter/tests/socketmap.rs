//! The socketmap server against Postfix's own client: `postmap -q` over TCP and a unix
//! socket, for every map, with the directory up and down; and a raw client that sends what
//! Postfix never would.

mod common;

use common::FakeDirectory;
use postagent_core::config::ListenAddr;
use postagent_core::net::{Listener, SocketOptions};
use postagent_core::peers::PeerList;
use postagent_lab::require;
use postagent_milter::socketmap::{self, SocketmapConfig};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, oneshot};

const POSTMAP: &str = "/usr/sbin/postmap";

fn config() -> SocketmapConfig {
    SocketmapConfig {
        shared_domain: common::SHARED_DOMAIN.into(),
        secret: common::secret(),
        transport: "postagent:inet:127.0.0.1:2424".into(),
        recipient_delimiter: "+".into(),
        cache_ttl: Duration::from_secs(60),
        max_connections: 8,
        idle_timeout: Duration::from_secs(5),
        peers: PeerList::loopback(),
    }
}

/// A socketmap on `addr` until the sender is dropped; the bus sender empties its cache.
async fn serve(
    addr: &str,
    directory: Arc<FakeDirectory>,
) -> (String, oneshot::Sender<()>, broadcast::Sender<Arc<postagent_core::bus::BusMessage>>) {
    let listener = Listener::bind(&ListenAddr::parse(addr).expect("address"), &SocketOptions::default())
        .await
        .expect("bind");
    let local = listener.local();
    let (stop, stopped) = oneshot::channel::<()>();
    let (bus, rx) = broadcast::channel(16);
    tokio::spawn(socketmap::run(listener, directory, config(), rx, async move {
        let _ = stopped.await;
    }));
    (local, stop, bus)
}

/// `postmap -q KEY TABLE` with an empty main.cf: (exit code, stdout, stderr). Exit 0 is
/// found, 1 not found or (with `query error` on stderr) a failed lookup.
fn postmap(dir: &Path, key: &str, table: &str) -> (i32, String, String) {
    let out =
        Command::new(POSTMAP).arg("-c").arg(dir).args(["-q", key, table]).output().expect("run postmap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn postmap_reads_every_map() {
    if !require(POSTMAP, "install the postfix package") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("main.cf"), "compatibility_level = 3.6\n").expect("main.cf");
    let directory = FakeDirectory::new(&["own.test"], &["bot@own.test", "helper@agents.test"]);
    let (tcp, _stop, _bus) = serve("127.0.0.1:0", directory.clone()).await;
    let sock = dir.path().join("socketmap.sock");
    let (_, _stop_unix, _bus_unix) = serve(&format!("unix:{}", sock.display()), directory.clone()).await;
    let cases = [
        ("domains", "own.test", 0, "own.test"),
        ("domains", "agents.test", 0, "agents.test"),
        ("domains", "example.org", 1, ""),
        ("transport", "bot@own.test", 0, "postagent:inet:127.0.0.1:2424"),
        ("transport", "own.test", 0, "postagent:inet:127.0.0.1:2424"),
        ("transport", "example.org", 1, ""),
        ("recipients", "bot@own.test", 0, "bot@own.test"),
        ("recipients", "BOT+Signup@own.test", 0, "bot+signup@own.test"),
        ("recipients", "helper@agents.test", 0, "helper@agents.test"),
        ("recipients", "nobody@own.test", 1, ""),
        ("recipients", "someone@example.org", 1, ""),
        ("recipients-or-foreign", "someone@example.org", 0, "someone@example.org"),
    ];
    for endpoint in [format!("inet:{tcp}"), format!("unix:{}", sock.display())] {
        for (map, key, code, value) in cases {
            let table = format!("socketmap:{endpoint}:{map}");
            let (got, stdout, stderr) = postmap(dir.path(), key, &table);
            assert_eq!((got, stdout.as_str()), (code, value), "{table} {key}: {stderr}");
        }
    }
    // The store down: an answer still cached stands; a new question gets TEMP, a failed
    // lookup (Postfix's callers tempfail), never "not found".
    directory.set_failing(true);
    let recipients = format!("socketmap:inet:{tcp}:recipients");
    assert_eq!(postmap(dir.path(), "bot@own.test", &recipients).0, 0, "cached");
    let (code, _, stderr) = postmap(dir.path(), "new@own.test", &recipients);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("temporary error: database is unreachable") && stderr.contains("query error"),
        "a failed query, with its reason in Postfix's log, not \"not found\": {stderr}"
    );
}

#[tokio::test]
async fn hostile_clients_cost_little() {
    let directory = FakeDirectory::new(&["own.test"], &["bot@own.test"]);
    let (tcp, _stop, bus) = serve("127.0.0.1:0", directory).await;
    // A length that could never fit is refused from its digits, before anything is read.
    let mut c = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    c.write_all(b"999999999999:").await.expect("write");
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("PERM malformed request: longer than 4096 bytes"), "{text}");
    // A megabyte of digits-free junk is answered at its first byte.
    let mut c = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    let _ = c.write_all(&vec![b'x'; 1 << 20]).await;
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).contains("PERM malformed request: no length"));
    // A well-behaved client on the same server still gets answers, and a directory change
    // on the bus is heard.
    let mut c = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    c.write_all(b"16:domains own.test,").await.expect("write");
    let mut buf = [0u8; 15];
    c.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"11:OK own.test,");
    bus.send(Arc::new(postagent_core::bus::BusMessage::Directory)).expect("send");
}
