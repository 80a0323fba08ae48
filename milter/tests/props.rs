//! Property tests of the milter's header surgery: arbitrary header blocks with forged copies
//! of our fields in every letter case, folded values and `Authentication-Results` in our name,
//! applied as Postfix applies the milter's deletions and insertions. Exactly one signed set
//! survives, no forged field does, and the header hash the milter computes as the fields go by
//! is the one the LMTP server computes from the message Postfix delivers.
//!
//! `PROPTEST_CASES` sets the number of cases (`tests/props/campaign` runs many more).

use postagent_core::auth::Authentication;
use postagent_core::auth::canon::HeaderHasher;
use postagent_core::auth::headers::{self, Claims, Delivery, EntityType, PREFIX};
use postagent_core::secret::Secret;
use postagent_core::time::Timestamp;
use postagent_core::vocab::Alignment;
use postagent_milter::headers::{CONVERSATION_ID, Surgery};
use proptest::prelude::*;

const AUTHSERV: &str = "mx.test";

fn case(name: &str, pattern: u8) -> String {
    name.chars()
        .enumerate()
        .map(
            |(i, c)| {
                if (pattern >> (i % 8)) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
            },
        )
        .collect()
}

fn field() -> impl Strategy<Value = (String, String)> {
    let names = prop_oneof![
        Just("From"),
        Just("To"),
        Just("Cc"),
        Just("Subject"),
        Just("Received"),
        Just("X-Other"),
        Just("X-E2A-Auth-Verified"),
        Just("X-E2A-Auth-Signature"),
        Just("X-E2A-Auth-Version"),
        Just("X-E2A-Auth-Recipients"),
        Just("X-E2A-Auth-Forged"),
        Just("X-E2A-Submission"),
        Just("X-E2A-Conversation-Id"),
        Just("Authentication-Results"),
        Just("Reply-To"),
    ];
    let values = prop_oneof![
        "[ -~]{0,60}",
        Just(format!("{AUTHSERV}; dmarc=pass")),
        Just(format!("(c) {} 1 ; spf=pass", AUTHSERV.to_ascii_uppercase())),
        Just("relay.example; spf=pass".to_owned()),
        ("[ -~]{1,30}", "[ -~]{1,30}").prop_map(|(a, b)| format!("{a}\n\t{b}")),
    ];
    (names, any::<u8>(), values).prop_map(|(n, p, v)| (case(n, p), v))
}

/// Deletes as Postfix does for `smfi_chgheader(name, index, NULL)`: the index-th field of
/// that name, counted case-insensitively over the current headers.
fn delete(fields: &mut Vec<(String, String)>, name: &str, index: i32) -> bool {
    let pos = fields
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n.eq_ignore_ascii_case(name))
        .nth(usize::try_from(index - 1).unwrap_or(usize::MAX))
        .map(|(i, _)| i);
    match pos {
        Some(i) => {
            fields.remove(i);
            true
        }
        None => false,
    }
}

fn field_bytes(name: &str, value: &str) -> Vec<u8> {
    format!("{name}: {}", value.replace('\n', "\r\n")).into_bytes()
}

fn claims() -> Claims {
    // Aligned through SPF alone: no DKIM signature.
    let mut auth = Authentication::aligned_pass("example.org", "s1");
    auth.dkim.clear();
    auth.dmarc.aligned_by = vec![Alignment::Spf];
    let secret = Secret::new(vec![5; 32]);
    Claims {
        authentication: auth,
        sender: "a@example.org".into(),
        entity_type: EntityType::Human,
        delegation: String::new(),
        timestamp: Timestamp::now(),
        message_id: "msg_0123456789abcdef0123456789abcdef".into(),
        queue_id: "4QPROP".into(),
        recipients: vec![headers::recipient_tag(
            &secret,
            "msg_0123456789abcdef0123456789abcdef",
            "bot@agents.test",
        )],
        header_hash: String::new(),
        body_hash: String::new(),
    }
}

proptest! {
    #[test]
    fn one_set_survives_and_no_forged_field(
        fields in proptest::collection::vec(field(), 0..40),
        keep_conversation in any::<bool>(),
        body in "[ -~]{0,200}",
    ) {
        let secret = Secret::new(vec![5; 32]);
        // The milter's view, field by field, as Session::header feeds it.
        let mut surgery = Surgery::default();
        let mut hasher = HeaderHasher::default();
        for (n, v) in &fields {
            surgery.add(n, v.as_bytes(), AUTHSERV);
            hasher.add(n, &field_bytes(n, v));
        }
        prop_assert!(!surgery.overflowed());
        if !keep_conversation {
            hasher.forget(CONVERSATION_ID);
        }
        let mut c = claims();
        c.header_hash = hasher.finish();
        c.body_hash = postagent_core::auth::canon::body_hash(format!("{body}\r\n").as_bytes());
        // Postfix applies the deletions, last first, then the insertions at the top.
        let mut delivered = fields.clone();
        for d in surgery.deletions(keep_conversation) {
            prop_assert!(delete(&mut delivered, &d.name, d.index), "deletion {d:?} found its field");
        }
        let mut raw = Vec::new();
        for (n, v) in headers::sign(&secret, &c) {
            raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        for (n, v) in &delivered {
            raw.extend_from_slice(&field_bytes(n, v));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(format!("\r\n{body}\r\n").as_bytes());
        // No forged field survives: every X-E2A-Auth-* left is ours, no token, no result
        // in our name, a conversation id only where it is kept.
        for (n, v) in &delivered {
            prop_assert!(!n.to_ascii_lowercase().starts_with(&PREFIX.to_ascii_lowercase()), "{n}");
            prop_assert!(!n.eq_ignore_ascii_case("X-E2A-Submission"));
            if n.eq_ignore_ascii_case("Authentication-Results") {
                prop_assert!(postagent_milter::headers::authserv_id_of(v.as_bytes()).is_none_or(|id| !id.eq_ignore_ascii_case(AUTHSERV)), "{v}");
            }
        }
        let conversations = |f: &[(String, String)]| f.iter().filter(|(n, _)| n.eq_ignore_ascii_case(CONVERSATION_ID)).count();
        prop_assert_eq!(conversations(&delivered), if keep_conversation { conversations(&fields) } else { 0 });
        // Exactly one set, and it verifies for the delivered message: the milter's header
        // hash is the one the LMTP server computes.
        let delivery = Delivery { recipient: Some("bot@agents.test"), check_queue_id: false };
        let checked = headers::verify(&secret, &raw, Timestamp::now(), None, delivery);
        prop_assert!(checked.is_ok(), "{:?}\n{}", checked, String::from_utf8_lossy(&raw));
    }
}
