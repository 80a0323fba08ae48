//! Property tests of the LMTP server: arbitrary command and DATA streams, cut into arbitrary
//! reads (as pipelining and TCP deliver them), through the real session over an in-memory
//! socket. No panic, every command answered, and what the backend receives is exactly the
//! message that was dot-stuffed onto the wire.
//!
//! `PROPTEST_CASES` sets the number of cases (a few hundred in the test suite; the campaign
//! in `tests/props/campaign` runs many more).

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::{RecordingBackend, dot_stuff, test_config};

/// Runs one session over an in-memory socket: writes `chunks` (then closes the write side)
/// and returns everything the server answered.
fn converse(chunks: Vec<Vec<u8>>, backend: Arc<RecordingBackend>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let (client, server) = tokio::io::duplex(4096);
        let (_stop_tx, stop) = watch::channel(false);
        let config = Arc::new(crate::lmtp::LmtpConfig {
            command_timeout: Duration::from_secs(5),
            data_timeout: Duration::from_secs(5),
            ..test_config()
        });
        let session =
            tokio::spawn(crate::lmtp::session::serve(server, "props".into(), backend, config, stop));
        let (mut r, mut w) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            for c in chunks {
                if w.write_all(&c).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut out)).await;
        let _ = writer.await;
        let _ = session.await;
        out
    })
}

/// Cuts `stream` at the given fractions.
fn cut(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        out.push(stream[at..p].to_vec());
        at = p;
    }
    out.push(stream[at..].to_vec());
    out
}

/// Message lines: arbitrary bytes without CR or LF, often starting with dots.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "\\.[ -~]{0,20}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        "[\\x00-\\x09\\x0b\\x0c\\x0e-\\x7f]{0,40}",
    ]
}

proptest! {
    #[test]
    fn any_message_in_any_reads_arrives_byte_for_byte(
        lines in proptest::collection::vec(line(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        rcpts in 1usize..=3,
    ) {
        let mut message = String::from("Subject: prop\r\n\r\n");
        for l in &lines {
            message.push_str(l);
            message.push_str("\r\n");
        }
        let mut stream = String::from("LHLO client.test\r\nMAIL FROM:<s@sender.test>\r\n");
        for i in 0..rcpts {
            stream.push_str(&format!("RCPT TO:<a{i}@agents.test>\r\n"));
        }
        stream.push_str("DATA\r\n");
        stream.push_str(&dot_stuff(&message));
        stream.push_str("QUIT\r\n");
        let backend = Arc::new(RecordingBackend::default());
        let replies = converse(cut(stream.as_bytes(), &cuts), backend.clone());
        let text = String::from_utf8_lossy(&replies);
        let deliveries = backend.deliveries();
        if message.len() <= test_config().max_message_bytes {
            prop_assert_eq!(deliveries.len(), 1, "{}", text);
            prop_assert_eq!(deliveries[0].data.as_ref(), message.as_bytes());
            prop_assert_eq!(deliveries[0].envelope.recipients.len(), rcpts);
            prop_assert_eq!(text.matches("250 2.0.0 <").count(), rcpts, "{}", text);
        } else {
            prop_assert!(deliveries.is_empty());
            prop_assert_eq!(text.matches("5.3.4").count(), rcpts, "{}", text);
        }
        prop_assert!(text.ends_with("221 2.0.0 bye\r\n") || text.contains("221 "), "{}", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_every_line_gets_an_answer(
        stream in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let backend = Arc::new(RecordingBackend::default());
        let replies = converse(cut(&stream, &cuts), backend.clone());
        // The greeting always comes; after it, only whole reply lines.
        prop_assert!(replies.starts_with(b"220 "));
        prop_assert!(replies.ends_with(b"\r\n"));
        for d in backend.deliveries() {
            prop_assert!(d.data.len() <= test_config().max_message_bytes);
        }
    }
}
