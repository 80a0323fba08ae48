//! A minimal SMTP client for driving a private Postfix in tests: one command, one (possibly
//! multi-line) reply; panics with the conversation so far when the server misbehaves.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub struct Smtp {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Smtp {
    /// Connects and returns the client with the server's banner, nothing said yet.
    pub async fn connect_raw(addr: SocketAddr) -> (Smtp, String) {
        let (r, w) = tokio::net::TcpStream::connect(addr).await.expect("connect smtp").into_split();
        let mut s = Smtp { r: BufReader::new(r), w };
        let banner = s.reply().await;
        (s, banner)
    }

    /// Connects, checks the banner and says EHLO `helo`.
    pub async fn connect(addr: SocketAddr, helo: &str) -> Smtp {
        let (mut s, banner) = Smtp::connect_raw(addr).await;
        assert!(banner.starts_with("220"), "{banner}");
        let ehlo = s.cmd(&format!("EHLO {helo}")).await;
        assert!(ehlo.starts_with("250"), "{ehlo}");
        s
    }

    /// The next reply, all its lines.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(60), self.r.read_line(&mut line))
                .await
                .expect("SMTP reply in time")
                .expect("read reply");
            assert!(n > 0, "SMTP connection closed; so far: {all}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub async fn cmd(&mut self, cmd: &str) -> String {
        self.w.write_all(format!("{cmd}\r\n").as_bytes()).await.expect("write");
        self.reply().await
    }

    /// MAIL, RCPT…, DATA and the message (dot-stuffed here, CRLF line ends); panics unless
    /// MAIL, every RCPT and DATA succeed; returns the final reply.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &str) -> String {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        assert!(r.starts_with("250"), "MAIL: {r}");
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
        }
        self.data(message).await
    }

    /// DATA and the message (dot-stuffed here, CRLF line ends), after MAIL and RCPTs the
    /// caller has sent; panics unless DATA gets 354; returns the final reply.
    pub async fn data(&mut self, message: &str) -> String {
        let r = self.cmd("DATA").await;
        assert!(r.starts_with("354"), "DATA: {r}");
        let normalised = message.replace("\r\n", "\n").replace('\n', "\r\n");
        let mut wire = String::new();
        for line in normalised.split_inclusive("\r\n") {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
        }
        if !wire.ends_with("\r\n") {
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.w.write_all(wire.as_bytes()).await.expect("write message");
        self.reply().await
    }
}
