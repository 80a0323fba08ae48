//! A milter connection whose replies go out together: written into a buffer, sent when the
//! milter next waits for Postfix (a read), when the buffer is full, or at shutdown.
//!
//! Why: indymilter writes every protocol message with a flush, so at end of message the 14
//! headers postagent inserts and the final verdict were 15 writes, each waking Postfix's
//! milter client to read one packet. The milter protocol is strictly request and reply: every
//! reply is followed by a read of Postfix's next command (or the end of the connection), so
//! holding replies until that read never delays one past the moment Postfix could act on it.
//! (indymilter buffers both directions itself; this only changes when its flushes happen.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Replies larger than this go out before the next read anyway.
const MAX_HELD: usize = 64 * 1024;

pub struct Corked<S> {
    inner: S,
    held: Vec<u8>,
    /// How much of `held` is already written.
    sent: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Corked<S> {
    pub fn new(stream: S) -> Self {
        Self { inner: stream, held: Vec::new(), sent: 0 }
    }

    /// Writes out everything held.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Corked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Whatever Postfix is to answer must be on its way before we wait for it.
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.held.len() + data.len() > MAX_HELD {
            ready!(self.poll_send(cx))?;
        }
        self.held.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    /// Held until the next read (see the module documentation).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replies_leave_together_at_the_next_read() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut corked = Corked::new(ours);
        corked.write_all(b"one").await.expect("write");
        corked.flush().await.expect("flush");
        corked.write_all(b"two").await.expect("write");
        corked.flush().await.expect("flush");
        // Nothing went out yet: the peer has nothing to read.
        let mut probe = [0u8; 8];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), theirs.read(&mut probe)).await;
        assert!(early.is_err(), "a held reply leaked");
        // Waiting for the peer sends both at once; the peer's command then arrives.
        theirs.write_all(b"next").await.expect("peer writes");
        let mut cmd = [0u8; 4];
        corked.read_exact(&mut cmd).await.expect("read");
        assert_eq!(&cmd, b"next");
        let mut got = [0u8; 6];
        theirs.read_exact(&mut got).await.expect("peer reads");
        assert_eq!(&got, b"onetwo");
    }

    #[tokio::test]
    async fn shutdown_and_large_replies_are_sent() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut corked = Corked::new(ours);
        let big = vec![b'x'; MAX_HELD + 10];
        corked.write_all(b"a").await.expect("write");
        corked.write_all(&big).await.expect("write");
        let mut first = vec![0u8; 1];
        theirs.read_exact(&mut first).await.expect("the held byte left before the large reply");
        corked.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).await.expect("read rest");
        assert_eq!(rest.len(), big.len());
    }
}
