//! The socket the milter accepts Postfix's connections on.

use indymilter::{EitherStream, Listener};
use std::io;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound milter socket: loopback TCP (`inet:` in `smtpd_milters`) or a unix socket
/// (`unix:`, the choice for a chrooted Postfix).
#[derive(Debug)]
pub enum MilterListener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl MilterListener {
    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l.local_addr().map_or_else(|e| format!("tcp (unknown: {e})"), |a| a.to_string()),
            Self::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix socket".to_owned()),
        }
    }
}

impl Listener for MilterListener {
    type Io = EitherStream<TcpStream, UnixStream>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        match self {
            Self::Tcp(l) => TcpListener::poll_accept(l, cx).map_ok(|(stream, _)| {
                // indymilter writes every reply as three small unbuffered writes; with Nagle
                // on, delayed ACKs stall each message by ~44 ms (postfix-lab §2.2: 22 msg/s
                // on one session instead of ~350).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY on a milter connection");
                }
                EitherStream::Tcp(stream)
            }),
            Self::Unix(l) => {
                UnixListener::poll_accept(l, cx).map_ok(|(stream, _)| EitherStream::Unix(stream))
            }
        }
    }
}
