//! A tiny LMTP server standing in for postagent's delivery in tests of the parts in front
//! of it (the milter, the Postfix recipe): it accepts everything and hands each delivered
//! message (envelope and bytes) to the test through a channel. Panics on setup failure,
//! like the tests that use it.

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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind lmtp");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                if w.write_all(b"220 sink LMTP ready\r\n").await.is_err() {
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
                        "LHLO" => "250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into(),
                        "MAIL" => {
                            from = cmd.clone();
                            rcpts.clear();
                            "250 2.1.0 ok\r\n".into()
                        }
                        "RCPT" => {
                            rcpts.push(cmd.clone());
                            "250 2.1.5 ok\r\n".into()
                        }
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
                            "250 2.0.0 stored\r\n".repeat(n)
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
