use super::*;
use serde_json::Value;

fn vector() -> Value {
    serde_json::from_str(include_str!("../../../../docs/vectors/auth-headers.json")).expect("vector json")
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("vector lacks {k}")).to_owned()
}

fn secret(v: &Value) -> Secret {
    Secret::new(text(v, "secret").into_bytes())
}

fn claims(v: &Value) -> Claims {
    let c = &v["claims"];
    let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("claims lack {k}")).to_owned();
    Claims {
        authentication: domain_check::parse(&s("domain_check")).expect("parses"),
        sender: s("sender"),
        entity_type: EntityType::Human,
        delegation: s("delegation"),
        timestamp: Timestamp::parse_rfc3339(&s("timestamp")).expect("time"),
        message_id: s("message_id"),
        queue_id: s("queue_id"),
        recipients: v["recipient_tags"]
            .as_array()
            .expect("tags")
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect(),
        header_hash: text(v, "header_hash"),
        body_hash: text(v, "body_hash"),
    }
}

fn at() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-21T12:01:00Z").expect("time")
}

fn delivery(rcpt: &str) -> Delivery<'_> {
    Delivery { recipient: Some(rcpt), check_queue_id: true }
}

#[test]
fn matches_the_golden_vector() {
    let v = vector();
    let s = secret(&v);
    let original = text(&v, "original");
    let (head, body) = split_head(original.as_bytes());
    assert_eq!(canon::body_hash(body), text(&v, "body_hash"));
    assert_eq!(header_hash(head), text(&v, "header_hash"));
    let rcpts: Vec<String> = v["envelope_recipients"]
        .as_array()
        .expect("rcpts")
        .iter()
        .map(|r| r.as_str().unwrap_or("").into())
        .collect();
    let tags: Vec<String> =
        rcpts.iter().map(|r| recipient_tag(&s, "msg_0123456789abcdef0123456789abcdef", r)).collect();
    assert_eq!(serde_json::json!(tags), v["recipient_tags"]);
    let c = claims(&v);
    assert_eq!(canonical(&c, &domain_check::format(&c.authentication)), text(&v, "canonical"));
    let got: Vec<(String, String)> = sign(&s, &c).into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
    let want: Vec<(String, String)> = v["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| (h[0].as_str().unwrap_or("").to_owned(), h[1].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(prepend(&s, &c, original.as_bytes()), text(&v, "message").into_bytes());
    for rcpt in &rcpts {
        let checked =
            verify(&s, text(&v, "message").as_bytes(), at(), Some(3600), delivery(rcpt)).expect("verifies");
        assert_eq!(checked, c);
        assert!(checked.verified());
    }
}

#[test]
fn survives_what_postfix_does_in_transit() {
    let v = vector();
    let s = secret(&v);
    let msg = text(&v, "message");
    let lmtp = text(&v, "as_delivered_by_postfix_lmtp");
    assert_ne!(lmtp, msg, "the vector has lines Postfix breaks");
    let lf = msg.replace("\r\n", "\n");
    let trailing = msg.replace("invoice.  \r\n", "invoice.\t \r\n") + "\r\n\r\n";
    let folded = msg.replace("Subject:  Invoice\t42", "Subject:\r\n Invoice 42");
    for (what, m) in [
        ("LMTP line breaks", lmtp),
        ("LF line ends", lf),
        ("trailing white space and lines", trailing),
        ("refolding", folded),
    ] {
        let r = verify(&s, m.as_bytes(), at(), None, delivery("bot@agents.example.net"));
        assert!(r.is_ok(), "{what}: {r:?}");
    }
}

#[test]
fn every_tampering_is_caught_and_named() {
    let v = vector();
    let msg = text(&v, "message");
    let s = secret(&v);
    let rcpt = "bot@agents.example.net";
    let (head, body) = msg.split_once("\r\n\r\n").expect("blank line");
    let cases: Vec<(&str, String, VerifyError)> = vec![
        ("a word of the body", msg.replace("invoice.", "lnvoice."), VerifyError::BodyHash),
        (
            "a removed soft line break",
            format!("{head}\r\n\r\n{}", body.replacen("agent,\r\n\r\n", "agent,\r\n", 1)),
            VerifyError::BodyHash,
        ),
        (
            "a split line",
            format!("{head}\r\n\r\n{}", body.replacen("please  file", "please\r\nfile", 1)),
            VerifyError::BodyHash,
        ),
        (
            "the subject",
            msg.replace("Invoice\t42", "Invoice 43"),
            VerifyError::HeaderHash(vec!["subject".into()]),
        ),
        (
            "the From",
            msg.replace("From: Alice <alice@", "From: Alice <mallory@"),
            VerifyError::HeaderHash(vec!["from".into()]),
        ),
        (
            "an added Reply-To",
            msg.replace("X-Mailer:", "Reply-To: evil@example.net\r\nX-Mailer:"),
            VerifyError::HeaderHash(vec!["reply-to".into()]),
        ),
        (
            "a second To",
            msg.replace("X-Mailer:", "To: evil@example.net\r\nX-Mailer:"),
            VerifyError::HeaderHash(vec!["to".into()]),
        ),
        (
            "the claimed sender",
            msg.replace("X-E2A-Auth-Sender: alice@", "X-E2A-Auth-Sender: mallory@"),
            VerifyError::Signature,
        ),
        (
            "the verdict",
            msg.replace("dkim=pass (d=example.org s=sel1", "dkim=pass (d=evil.example s=sel1"),
            VerifyError::Signature,
        ),
        (
            "the recipient tags",
            msg.replace("X-E2A-Auth-Recipients: ", "X-E2A-Auth-Recipients: 0123456789abcdef "),
            VerifyError::Signature,
        ),
        (
            "a duplicated set",
            format!("X-E2A-AUTH-SIGNATURE: {}\r\n{msg}", "0".repeat(64)),
            VerifyError::Duplicate(SIGNATURE, 2),
        ),
        (
            "an unknown field",
            format!("X-E2A-Auth-Extra: 1\r\n{msg}"),
            VerifyError::Unexpected("X-E2A-Auth-Extra".into()),
        ),
        (
            "no set",
            msg.split_once("Received:").map(|(_, r)| format!("Received:{r}")).unwrap_or_default(),
            VerifyError::Missing,
        ),
        ("a version-1 set", msg.replace("X-E2A-Auth-Version: 2\r\n", ""), VerifyError::Version("1".into())),
        (
            "another queue entry",
            format!(
                "Received: by mx.agents.example.net (Postfix, from userid 1000)\r\n\tid 4dQ9NEWQUEUE1; Sat, 21 Nov 2026 12:05:00 +0000\r\n{msg}"
            ),
            VerifyError::QueueId { signed: "4dQ1xk0sYzz9sWL".into(), trace: Some("4dQ9NEWQUEUE1".into()) },
        ),
    ];
    for (what, m, want) in cases {
        assert_eq!(verify(&s, m.as_bytes(), at(), None, delivery(rcpt)), Err(want), "{what}");
    }
    assert_eq!(
        verify(&s, msg.as_bytes(), at(), None, delivery("other@agents.example.net")),
        Err(VerifyError::Recipient("other@agents.example.net".into()))
    );
    assert!(
        verify(&s, msg.as_bytes(), at(), None, delivery("OPS@agents.example.net")).is_ok(),
        "case-insensitive"
    );
    assert_eq!(
        verify(&Secret::new(vec![b'x'; 64]), msg.as_bytes(), at(), None, delivery(rcpt)),
        Err(VerifyError::Signature)
    );
    let later = at().plus_secs(7200);
    assert!(matches!(
        verify(&s, msg.as_bytes(), later, Some(3600), delivery(rcpt)),
        Err(VerifyError::Expired(_, 3600))
    ));
    let earlier = at().plus_secs(-3600);
    assert_eq!(verify(&s, msg.as_bytes(), earlier, None, delivery(rcpt)), Err(VerifyError::Future));
    let outside = Delivery { recipient: None, check_queue_id: false };
    let moved = format!("Received: by x (Postfix) id 4dQ9NEWQUEUE1\r\n{msg}");
    assert!(verify(&s, moved.as_bytes(), at(), None, outside).is_ok(), "tools may skip the delivery checks");
}

#[test]
fn delegation_names_the_account_of_agent_mail_only() {
    let v = vector();
    let mut c = claims(&v);
    c.delegation = "agent=bot@agents.example.net;human=acct_1".into();
    assert_eq!(c.delegated_account(), None, "human mail delegates nothing");
    c.entity_type = EntityType::Agent;
    assert_eq!(c.delegated_account(), Some("acct_1"));
    c.delegation = "agent=bot@agents.example.net;human=".into();
    assert_eq!(c.delegated_account(), None);
}

#[test]
fn trace_queue_id_is_the_first_received() {
    let msg = b"Received: from client.example (unknown [127.0.0.1])\r\n\
        \tby mx.postagent.test (Postfix) with ESMTP id 4dQ1xk0sYzz9sWL\r\n\
        \tfor <a@agents.test>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n\
        Received: by evil.example with SMTP id FORGED123;\r\n\
        Subject: id NOTME\r\n\r\nbody\r\n";
    assert_eq!(trace_queue_id(msg).as_deref(), Some("4dQ1xk0sYzz9sWL"));
    let short = b"X-Other: 1\r\nreceived: from x (x [192.0.2.1])\r\n\tby mx (Postfix) with ESMTP id 3A2B1C4D5E;\r\n\tSat\r\n\r\n";
    assert_eq!(trace_queue_id(short).as_deref(), Some("3A2B1C4D5E"));
    let pickup = b"Received: by mx.lab.test (Postfix, from userid 0)\r\n\tid C3C2598C1D2; Mon,  7 Dec 2026 00:31:38 +0000 (UTC)\r\n\r\n";
    assert_eq!(trace_queue_id(pickup).as_deref(), Some("C3C2598C1D2"));
    assert_eq!(trace_queue_id(b"Subject: no\r\n\r\nReceived: by x id ABCDEF123\r\n"), None);
    assert_eq!(trace_queue_id(b"Received: by x with LMTP\r\n\r\n"), None);
    assert_eq!(trace_queue_id(b""), None);
}

#[test]
fn trace_queue_id_ignores_what_the_client_wrote() {
    // Postfix joins a multi-word HELO into one name: `HELO id 4ABC123` reads `from id 4ABC123`.
    let helo = b"Received: from id 4ABC123 (unknown [192.0.2.9])\r\n\
        \tby mx.postagent.test (Postfix) with ESMTP id 4REAL5678\r\n\
        \tfor <a@agents.test>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n\r\n";
    assert_eq!(trace_queue_id(helo).as_deref(), Some("4REAL5678"));
    // A HELO long enough that Postfix's delivery breaks the line right before a fake `by`:
    // the break (CRLF SP after exactly 998 octets) is undone before the lines are read.
    let prefix = "Received: from ";
    let fake = " by evil (Postfix) with ESMTP id 4FAKE1234";
    let pad = "a".repeat(canon::POSTFIX_LINE_LIMIT - prefix.len());
    let broken = format!(
        "{prefix}{pad}\r\n{fake} (unknown [192.0.2.9])\r\n\
         \tby mx.postagent.test (Postfix) with ESMTP id 4REAL5678;\r\n\
         \tSat, 21 Nov 2026 10:00:00 +0000 (UTC)\r\n\r\n"
    );
    assert_eq!(trace_queue_id(broken.as_bytes()).as_deref(), Some("4REAL5678"));
    // The recipient line is the client's too.
    let rcpt = b"Received: from c (unknown [192.0.2.9])\r\n\
        \tby mx.postagent.test (Postfix) with ESMTP\r\n\
        \tfor <\"by x id 4FAKE1234\"@agents.test>; Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\n";
    assert_eq!(trace_queue_id(rcpt), None);
}

#[test]
fn hostile_header_blocks_cost_one_pass() {
    let s = Secret::new(vec![7; 32]);
    // Millions of tiny fields: no set, found without a value per field.
    let mut tiny = "a:x\n".repeat(2_500_000).into_bytes();
    tiny.extend_from_slice(b"\nbody\n");
    assert_eq!(verify(&s, &tiny, at(), None, Delivery::default()), Err(VerifyError::Missing));
    // A flood of our own fields: refused, with only a set's worth read.
    let flood = format!("{}\r\nbody\r\n", "X-E2A-Auth-Sender: a@b.test\r\n".repeat(200_000));
    assert!(verify(&s, flood.as_bytes(), at(), None, Delivery::default()).is_err());
    assert_eq!(our_fields(flood.as_bytes()).len(), ALL.len() + 2);
}

#[test]
fn a_set_names_at_most_max_recipients() {
    let v = vector();
    let s = secret(&v);
    let mut c = claims(&v);
    c.recipients = (0..=MAX_RECIPIENTS).map(|i| format!("{i:016x}")).collect();
    let ours: Vec<(String, String)> = sign(&s, &c).into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
    assert!(matches!(
        verify_set(&s, &ours, &c.header_hash, &c.body_hash, at(), None),
        Err(VerifyError::Malformed(RECIPIENTS, _))
    ));
    c.recipients.pop();
    let ours: Vec<(String, String)> = sign(&s, &c).into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
    assert!(verify_set(&s, &ours, &c.header_hash, &c.body_hash, at(), None).is_ok());
}

#[test]
fn fields_keep_folding_and_skip_junk() {
    let head = b"A: 1\r\n\tfolded\r\nnot a field\r\nB :2\nC:3";
    let got: Vec<(&[u8], &[u8])> = fields(head).collect();
    assert_eq!(
        got,
        vec![(&b"A"[..], &b"A: 1\r\n\tfolded"[..]), (&b"B"[..], &b"B :2"[..]), (&b"C"[..], &b"C:3"[..]),]
    );
}
