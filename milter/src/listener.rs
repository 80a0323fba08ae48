//! The socket the milter accepts Postfix's connections on.

use crate::corked::Corked;
use indymilter::{EitherStream, Listener};
use postagent_core::peers::PeerList;
use std::io;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound milter socket: TCP (`inet:` in `smtpd_milters`), admitting only the peers of its
/// list, or a unix socket (`unix:`, guarded by its mode and group; the shipped choice).
#[derive(Debug)]
pub enum MilterListener {
    Tcp(TcpListener, PeerList),
    Unix(UnixListener),
}

impl MilterListener {
    /// The milter's view of a bound listener: TCP peers are checked against `peers`.
    pub fn new(listener: postagent_core::net::Listener, peers: PeerList) -> Self {
        match listener {
            postagent_core::net::Listener::Tcp(l) => Self::Tcp(l, peers),
            postagent_core::net::Listener::Unix(l) => Self::Unix(l),
        }
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l, _) => {
                l.local_addr().map_or_else(|e| format!("tcp (unknown: {e})"), |a| a.to_string())
            }
            Self::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix socket".to_owned()),
        }
    }
}

/// Every connection is [`Corked`]: the replies written since the milter last read go out in
/// one write (the 15 packets of an end of message included), not one write each.
impl Listener for MilterListener {
    type Io = Corked<EitherStream<TcpStream, UnixStream>>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        match self {
            Self::Tcp(l, peers) => loop {
                let (stream, peer) = match TcpListener::poll_accept(l, cx) {
                    Poll::Ready(Ok(accepted)) => accepted,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                if !peers.allows(peer.ip()) {
                    // Closed before a byte is read or written: a stranger gets no verdict
                    // signed and holds no connection slot.
                    tracing::warn!("NOQUEUE: milter refused connection from {peer}: not in milter_peers");
                    postagent_core::metrics::PEERS_REFUSED.inc("milter");
                    drop(stream);
                    continue;
                }
                // indymilter writes every reply as three small unbuffered writes; with Nagle
                // on, delayed ACKs stall each message by ~44 ms (postfix-lab §2.2: 22 msg/s
                // on one session instead of ~350).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY on a milter connection");
                }
                return Poll::Ready(Ok(Corked::new(EitherStream::Tcp(stream))));
            },
            Self::Unix(l) => {
                UnixListener::poll_accept(l, cx).map_ok(|(stream, _)| Corked::new(EitherStream::Unix(stream)))
            }
        }
    }
}
