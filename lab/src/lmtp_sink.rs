//! A tiny LMTP server standing in for postagent's delivery in tests of the parts in front
//! of it (the milter, the Postfix recipe): it accepts everything and hands each delivered
//! message (envelope and bytes) to the test through a channel. Panics on setup failure,
//! like the tests that use it.
//!
//! [`smtp_sink`] is the same server speaking SMTP: the "internet" a private Postfix relays
//! outbound mail to, which can refuse chosen recipients (so Postfix writes a real DSN).

use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One message as the sink received it, dot-unstuffed, CRLF kept.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The MAIL command line as sent.
    pub mail_from: String,
    /// The RCPT command lines as sent.
    pub rcpts: Vec<String>,
    pub data: String,
}

/// Binds 127.0.0.1:0 and serves until the runtime ends. Replies one `250` per recipient
/// after DATA, as RFC 2033 requires.
pub async fn sink() -> (SocketAddr, mpsc::UnboundedReceiver<Delivered>) {
    serve(false, Vec::new()).await
}

/// An SMTP server on 127.0.0.1:0 that answers `RCPT TO:<address>` with the given reply line
/// (e.g. `550 5.1.1 no such user`) for the listed addresses and accepts everything else.
pub async fn smtp_sink(refuse: &[(&str, &str)]) -> (SocketAddr, mpsc::UnboundedReceiver<Delivered>) {
    serve(true, refuse.iter().map(|(a, r)| (a.to_ascii_lowercase(), (*r).to_owned())).collect()).await
}

async fn serve(
    smtp: bool,
    refuse: Vec<(String, String)>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Delivered>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind lmtp");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let refuse = refuse.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                if w.write_all(b"220 sink ready\r\n").await.is_err() {
                    return;
                }
                let (mut from, mut rcpts) = (String::new(), Vec::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_owned();
                    let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let reply: String = match verb.as_str() {
                        "LHLO" | "EHLO" => "250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into(),
                        "HELO" => "250 sink\r\n".into(),
                        "MAIL" => {
                            from = cmd.clone();
                            rcpts.clear();
                            "250 2.1.0 ok\r\n".into()
                        }
                        "RCPT" => {
                            let lower = cmd.to_ascii_lowercase();
                            match refuse.iter().find(|(a, _)| lower.contains(&format!("<{a}>"))) {
                                Some((_, reply)) => format!("{reply}\r\n"),
                                None => {
                                    rcpts.push(cmd.clone());
                                    "250 2.1.5 ok\r\n".into()
                                }
                            }
                        }
                        // Every recipient refused: no DATA (RFC 5321 §3.3, RFC 2033 §4.2).
                        "DATA" if rcpts.is_empty() => "554 5.5.1 no valid recipients\r\n".into(),
                        "DATA" => {
                            if w.write_all(b"354 go ahead\r\n").await.is_err() {
                                return;
                            }
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            }
                            let n = rcpts.len();
                            let delivered = Delivered {
                                mail_from: from.clone(),
                                rcpts: std::mem::take(&mut rcpts),
                                data,
                            };
                            let _ = tx.send(delivered);
                            // LMTP: one reply per recipient (RFC 2033); SMTP: one.
                            "250 2.0.0 stored\r\n".repeat(if smtp { 1 } else { n })
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        "RSET" | "NOOP" => "250 ok\r\n".into(),
                        _ => "502 5.5.2 unknown command\r\n".into(),
                    };
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}
