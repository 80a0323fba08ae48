//! One SMTP transaction with Postfix's originating listener, over TCP (`HOST:PORT`) or a
//! unix socket (`unix:PATH`, the shipped set-up: `$queue_directory/public/postagent-submit`,
//! reachable only by root, postfix and the postdrop group, so no local user can submit there).
//!
//! lettre's transports dial TCP themselves; its connection type takes any stream, so both
//! kinds share one path here.

use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::extension::ClientId;
use postagent_core::config::ListenAddr;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// How a try ended, as the worker needs to know it.
pub enum Sent {
    /// The final reply to the message (`250 2.0.0 Ok: queued as …`).
    Accepted(String),
    Permanent(String),
    Temporary(String),
}

/// Where and how to submit.
#[derive(Debug, Clone)]
pub struct Relay {
    pub addr: ListenAddr,
    pub helo: String,
    /// The whole transaction, connect to QUIT.
    pub timeout: Duration,
}

impl Relay {
    pub fn describe(&self) -> String {
        self.addr.to_string()
    }

    /// Connects, sends `raw` for `envelope`, quits.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Sent {
        match tokio::time::timeout(self.timeout, self.transaction(envelope, raw)).await {
            Ok(sent) => sent,
            Err(_) => {
                Sent::Temporary(format!("no answer from {} within {:?}", self.describe(), self.timeout))
            }
        }
    }

    async fn transaction(&self, envelope: &Envelope, raw: &[u8]) -> Sent {
        let stream: Box<dyn AsyncTokioStream> = match &self.addr {
            ListenAddr::Tcp(a) => match TcpStream::connect(a.as_str()).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    Box::new(s)
                }
                Err(e) => return Sent::Temporary(format!("cannot connect to {a}: {e}")),
            },
            ListenAddr::Unix(p) => match UnixStream::connect(p).await {
                Ok(s) => Box::new(Unix(s)),
                Err(e) => return Sent::Temporary(format!("cannot connect to unix:{}: {e}", p.display())),
            },
        };
        let hello = ClientId::Domain(self.helo.clone());
        let mut conn = match AsyncSmtpConnection::connect_with_transport(stream, &hello).await {
            Ok(c) => c,
            Err(e) if e.is_permanent() => return Sent::Permanent(e.to_string()),
            Err(e) => return Sent::Temporary(e.to_string()),
        };
        match conn.send(envelope, raw).await {
            Ok(resp) => {
                // The message is Postfix's once it said 250; a failed QUIT changes nothing.
                let _ = conn.quit().await;
                Sent::Accepted(format!("{} {}", resp.code(), resp.message().collect::<Vec<_>>().join(" ")))
            }
            // lettre has already said QUIT and closed the connection after a refusal.
            Err(e) if e.is_permanent() => Sent::Permanent(e.to_string()),
            Err(e) => Sent::Temporary(e.to_string()),
        }
    }
}

/// A unix stream as lettre's stream type (which asks for a peer IP address it only logs).
#[derive(Debug)]
struct Unix(UnixStream);

impl AsyncTokioStream for Unix {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a unix socket has no IP peer"))
    }
}

impl AsyncRead for Unix {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Unix {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
