//! The published e2a Python SDK (5.3.0 and the newest 5.x), unmodified, driving the mail
//! flows against `postagent serve` behind a real private Postfix: a DKIM-signed message with
//! an attachment delivered through Postfix and the milter, read with its attachment; webhooks
//! created, tested, rotated and verified with `construct_event` on real deliveries; a reply
//! that leaves through Postfix, the answer that comes back into the same conversation, live on
//! `listen()` and the webhook; the event log and a redelivery; a forward; a review approved
//! and one rejected. The test plays the internet: it sends the answer and checks what left.

use crate::common;

use common::mail::{MailWorld, Options, WAIT};
use postagent_lab::lmtp_sink::{Delivered, smtp_sink};
use postagent_lab::mail_lab::SENDER_DOMAIN;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const AGENT: &str = "bot@agents.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_5_3_0_drives_the_mail_flows_through_postfix() {
    drive("mail-5.3.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_5_8_1_drives_the_mail_flows_through_postfix() {
    drive("mail-5.8.1").await;
}

fn invoice() -> String {
    "From: Alice <alice@sender.test>\r\nReply-To: alice@example.org\r\nTo: bot@agents.test\r\n\
     Subject: Invoice 42\r\nMessage-ID: <invoice42@sender.test>\r\nDate: Thu, 03 Dec 2026 07:00:00 +0000\r\n\
     MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b42\r\n\r\n\
     --b42\r\nContent-Type: text/plain\r\n\r\nPlease find the invoice attached.\r\n\
     --b42\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
     Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQgaW52b2ljZSA0Mg==\r\n--b42--\r\n"
        .to_owned()
}

fn answer(reply_id: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: Re: Invoice 42 received\r\n\
         Message-ID: <answer42@example.org>\r\nIn-Reply-To: <{reply_id}@agents.test>\r\n\
         References: <invoice42@sender.test> <{reply_id}@agents.test>\r\n\r\nGreat, thank you.\r\n"
    )
}

fn subject(d: &Delivered) -> String {
    postagent_core::mail::inbound::parse(d.data.as_bytes()).subject
}

async fn drive(client: &'static str) {
    let Some(venv) =
        tokio::task::spawn_blocking(move || postagent_lab::clients::venv(client)).await.expect("join")
    else {
        return;
    };
    let (internet, mut out) = smtp_sink(&[]).await;
    let options = Options {
        agents: vec![AGENT],
        internet: Some(internet),
        extra_args: vec!["--webhook-mode", "development", "--webhook-retry-schedule", "1s"],
        ..Options::default()
    };
    let Some(mut w) = MailWorld::start(options).await else { return };
    let server = w.serve();
    let signed = w.zone.sign(&invoice()).expect("sign");
    let qid = w.send(&format!("alice@{SENDER_DOMAIN}"), &[AGENT], &signed).await;
    w.wait_sent(&qid, AGENT).await;

    let mut child = common::python::spawn_script(&venv, "mail_flows.py", &w.key, w.api());
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut transcript = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if let Some(reply_id) = line.strip_prefix("WAITING ") {
            // The human's answer to the agent's reply, through Postfix's public port.
            let qid = w.send("alice@example.org", &[AGENT], &answer(reply_id)).await;
            w.wait_sent(&qid, AGENT).await;
            stdin.write_all(b"sent\n").await.expect("stdin");
            stdin.flush().await.expect("flush");
        }
        transcript.push(line);
    }
    let status =
        tokio::time::timeout_at(deadline, child.wait()).await.expect("script timed out").expect("wait");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await.expect("stderr");
    }
    assert!(
        status.success() && transcript.last().is_some_and(|l| l == "SDK OK"),
        "SDK script failed ({status}):\nstdout:\n{}\nstderr:\n{err}\nserver log:\n{}",
        transcript.join("\n"),
        server.log()
    );

    // What left through Postfix: the reply, the forward and the approved message, never the
    // rejected one. Review notices may come too (one per hold still pending when the worker
    // got to it: these were decided at once) and are set aside.
    let mut left = Vec::new();
    while left.len() < 3 {
        let d = tokio::time::timeout(WAIT, out.recv()).await.expect("mail left").expect("sink");
        let s = subject(&d);
        if !s.starts_with("Review needed: ") {
            left.push((s, d));
        }
    }
    left.sort_by(|a, b| a.0.cmp(&b.0));
    let subjects: Vec<&str> = left.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, vec!["Approved via SDK", "Fwd: Invoice 42", "Re: Invoice 42"]);
    let fwd = postagent_core::mail::inbound::parse(left[1].1.data.as_bytes());
    assert_eq!(
        fwd.attachments.iter().filter_map(|a| a.filename.as_deref()).collect::<Vec<_>>(),
        vec!["invoice.pdf"]
    );
    assert!(left[2].1.data.contains("In-Reply-To: <invoice42@sender.test>"), "{}", left[2].1.data);
    while let Ok(d) = out.try_recv() {
        assert!(subject(&d).starts_with("Review needed: "), "only notices besides: {}", subject(&d));
    }
}
