//! Property tests of ingest: arbitrary MIME trees (nested multiparts, encoded and plain
//! nested messages, digests, bad encodings, stray boundaries) are parsed within the caps, the
//! view never holds more than they allow, and what is stored is the bytes as received. And of
//! the canonical forms the signed set hashes: chunking and Postfix's long-line breaks never
//! change them.
//!
//! `PROPTEST_CASES` sets the number of cases (`tests/props/campaign` runs many more).

use postagent_core::auth::canon::{BodyHasher, body_hash};
use postagent_core::mail::inbound;
use postagent_core::mime::{self, Caps};
use postagent_core::secret::Secret;
use postagent_core::time::Timestamp;
use proptest::prelude::*;

/// A MIME part as text (headers, blank line, body), `depth` levels deep at most.
fn part(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        "[ -~]{0,40}".prop_map(|t| format!("Content-Type: text/plain\r\n\r\n{t}\r\n")),
        "[A-Za-z0-9+/]{0,60}".prop_map(|b| format!(
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=f.bin\r\n\r\n{b}\r\n"
        )),
        "[ -~]{0,30}".prop_map(|t| format!("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>{t}=\r\n</p>\r\n")),
        Just("\r\n".to_owned()),
        Just("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogeEB5Lnoiu\r\n".to_owned()),
        "[ -~\r\n]{0,80}",
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = part(depth - 1);
    prop_oneof![
        2 => leaf,
        1 => (proptest::collection::vec(inner.clone(), 0..6), "[a-z0-9]{1,8}", prop_oneof![Just("mixed"), Just("alternative"), Just("digest"), Just("related")])
            .prop_map(|(parts, b, sub)| {
                let mut s = format!("Content-Type: multipart/{sub}; boundary=\"{b}\"\r\n\r\npreamble\r\n");
                for p in parts {
                    s.push_str(&format!("--{b}\r\n{p}"));
                }
                s.push_str(&format!("--{b}--\r\n"));
                s
            }),
        1 => inner.prop_map(|p| format!("Content-Type: message/rfc822\r\n\r\nFrom: n@x.test\r\nSubject: nested\r\n{p}")),
    ]
    .boxed()
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (part(4), proptest::collection::vec("[ -~]{0,30}", 0..5)).prop_map(|(body, extra)| {
        let mut m = String::from("From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nSubject: prop\r\nMIME-Version: 1.0\r\n");
        for e in extra {
            m.push_str(&format!("X-Extra: {e}\r\n"));
        }
        m.push_str(&body);
        m.into_bytes()
    })
}

fn small_caps() -> Caps {
    Caps { max_parts: 8, max_attachments: 3, max_depth: 3, max_header_fields: 20, max_header_bytes: 2048 }
}

proptest! {
    #[test]
    fn any_mime_tree_is_viewed_within_the_caps(raw in message()) {
        for caps in [Caps::default(), small_caps()] {
            let view = mime::parse(&raw, caps);
            if let Some(m) = view.parse() {
                prop_assert!(m.parts.len() <= caps.max_parts.max(1), "{} parts", m.parts.len());
            }
            let parsed = inbound::parse_with(&raw, caps);
            prop_assert!(parsed.attachments.len() <= caps.max_attachments);
            prop_assert!(parsed.to.len() <= inbound::MAX_ADDRESSES);
        }
        // What is stored is what was received.
        let p = inbound::prepare(&Secret::new(vec![1; 32]), raw.clone(), "a@example.org", &["bot@agents.test".into()], Timestamp::now());
        prop_assert_eq!(&p.raw, &raw);
        prop_assert!(p.claims.is_none(), "no set, no claims");
        // Every attachment the rows number can be fetched by its index.
        for a in &p.parsed.attachments {
            prop_assert!(inbound::attachment_bytes(&raw, usize::try_from(a.index).unwrap_or(usize::MAX)).is_some());
        }
    }

    #[test]
    fn the_body_hash_ignores_chunking_and_postfix_breaks(
        lines in proptest::collection::vec("[ -~\t]{0,2500}", 0..6),
        cuts in proptest::collection::vec(1usize..500, 0..20),
    ) {
        let body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        let whole = body_hash(body.as_bytes());
        // Any chunking.
        let mut h = BodyHasher::new();
        let mut rest = body.as_bytes();
        for c in &cuts {
            let (a, b) = rest.split_at((*c).min(rest.len()));
            h.update(a);
            rest = b;
        }
        h.update(rest);
        prop_assert_eq!(h.finish(), whole.clone());
        // What Postfix's LMTP client sends: every line over 998 octets broken with CRLF SP.
        let mut broken = String::new();
        for l in &lines {
            let mut first = true;
            let mut rest = l.as_str();
            while !rest.is_empty() || first {
                let take = if first { 998 } else { 997 };
                let n = rest.char_indices().nth(take).map_or(rest.len(), |(i, _)| i);
                if !first {
                    broken.push(' ');
                }
                broken.push_str(&rest[..n]);
                rest = &rest[n..];
                if !rest.is_empty() {
                    broken.push_str("\r\n");
                }
                first = false;
            }
            broken.push_str("\r\n");
        }
        prop_assert_eq!(body_hash(broken.as_bytes()), whole);
    }
}
