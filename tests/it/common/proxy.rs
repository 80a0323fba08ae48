//! A TCP proxy between Postfix's LMTP client and postagent's LMTP server that can interfere
//! at exactly the moments the failure tests need, which no timing trick could hit reliably:
//!
//! - [`Mode::HoldConnection`]: the next connection is accepted but not forwarded until
//!   [`LmtpProxy::release`] (so a test can break the store while Postfix waits);
//! - [`Mode::SwallowFinalReply`]: the next connection is forwarded until the server's `354`,
//!   after which everything the server says is withheld from Postfix and reported to the test
//!   instead. When the server dies, Postfix's side is closed without those replies: exactly
//!   "postagent committed, then was killed before its 250 reached Postfix".
//!
//! Every later connection passes through untouched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PassThrough,
    HoldConnection,
    SwallowFinalReply,
}

pub struct LmtpProxy {
    pub addr: SocketAddr,
    release: Arc<Notify>,
    /// What the server said after `354` on a [`Mode::SwallowFinalReply`] connection.
    pub swallowed: mpsc::UnboundedReceiver<String>,
    /// One `()` per [`Mode::HoldConnection`] connection, once it is being held.
    pub held: mpsc::UnboundedReceiver<()>,
}

impl LmtpProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (connected per connection, so the
    /// server may be down and come back between connections).
    pub async fn start(upstream: SocketAddr, mode: Mode) -> LmtpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(Mutex::new(mode));
        let release = Arc::new(Notify::new());
        let (tx, swallowed) = mpsc::unbounded_channel();
        let (held_tx, held) = mpsc::unbounded_channel();
        let (m, r) = (mode, Arc::clone(&release));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // One interference per mode: the connection after it passes through.
                let this = std::mem::replace(&mut *m.lock().expect("mode"), Mode::PassThrough);
                if this == Mode::HoldConnection {
                    let _ = held_tx.send(());
                }
                tokio::spawn(serve(client, upstream, this, Arc::clone(&r), tx.clone()));
            }
        });
        LmtpProxy { addr, release, swallowed, held }
    }

    /// Lets a [`Mode::HoldConnection`] connection proceed.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mode: Mode,
    release: Arc<Notify>,
    swallowed: mpsc::UnboundedSender<String>,
) {
    if mode == Mode::HoldConnection {
        release.notified().await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    if mode != Mode::SwallowFinalReply {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_r, &mut server_w).await;
    });
    let mut seen = Vec::new();
    let mut forwarded = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = match server_r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        // Forward up to and including the 354 line; withhold everything after it.
        let limit = find_line_end(&seen, b"354 ").unwrap_or(seen.len());
        if limit > forwarded {
            if client_w.write_all(&seen[forwarded..limit]).await.is_err() {
                break;
            }
            forwarded = limit;
        }
        if forwarded < seen.len() && seen.ends_with(b"\r\n") {
            let _ = swallowed.send(String::from_utf8_lossy(&seen[forwarded..]).into_owned());
        }
    }
    // The server is gone: Postfix's side closes without ever seeing those replies.
}

/// The end (after its CRLF) of the first line starting with `prefix`.
fn find_line_end(data: &[u8], prefix: &[u8]) -> Option<usize> {
    let mut start = 0;
    while start < data.len() {
        let end = data[start..].iter().position(|&b| b == b'\n').map(|p| start + p + 1)?;
        if data[start..].starts_with(prefix) {
            return Some(end);
        }
        start = end;
    }
    None
}
