//! The signed `X-E2A-Auth-*` header set (design §5.1, `docs/auth-headers.md`).
//!
//! Same names and canonical string as e2a's original contract, so verifiers written for it
//! keep working; postagent's fixes are in what the values mean (`Verified` is an aligned DMARC
//! pass, `Domain-Check` carries every result) and in a `Body-Hash` that survives Postfix.

use super::{Authentication, domain_check};
use crate::secret::Secret;
use crate::sign::{ct_eq, hmac_sha256};
use crate::time::Timestamp;
use sha2::{Digest, Sha256};

pub const VERIFIED: &str = "X-E2A-Auth-Verified";
pub const SENDER: &str = "X-E2A-Auth-Sender";
pub const ENTITY_TYPE: &str = "X-E2A-Auth-Entity-Type";
pub const DOMAIN_CHECK: &str = "X-E2A-Auth-Domain-Check";
pub const DELEGATION: &str = "X-E2A-Auth-Delegation";
pub const TIMESTAMP: &str = "X-E2A-Auth-Timestamp";
pub const MESSAGE_ID: &str = "X-E2A-Auth-Message-Id";
pub const BODY_HASH: &str = "X-E2A-Auth-Body-Hash";
pub const SIGNATURE: &str = "X-E2A-Auth-Signature";

/// Every header of the set, in the order they appear at the top of a signed message.
pub const ALL: [&str; 9] =
    [VERIFIED, SENDER, ENTITY_TYPE, DOMAIN_CHECK, DELEGATION, TIMESTAMP, MESSAGE_ID, BODY_HASH, SIGNATURE];

/// The prefix every header of the set shares; inbound copies are always removed.
pub const PREFIX: &str = "X-E2A-Auth-";

/// Who sent the message: mail from the internet is `human`; mail our API submitted through
/// the originating listener is `agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityType {
    Human,
    Agent,
}

impl EntityType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Agent => "agent",
        }
    }
}

/// What the milter asserts about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub authentication: Authentication,
    /// The RFC 5322 From address whose domain was evaluated ("" when there was none).
    pub sender: String,
    pub entity_type: EntityType,
    /// `agent=<email>;human=<account>` for agent mail, else empty.
    pub delegation: String,
    /// Whole seconds.
    pub timestamp: Timestamp,
    /// The postagent message id (`msg_…`).
    pub message_id: String,
    pub body_hash: String,
}

impl Claims {
    pub fn verified(&self) -> bool {
        self.authentication.verified()
    }
}

/// SHA-256 (lowercase hex) of the body with every space, tab, CR and LF removed.
///
/// Why this canonical form: between the milter and the store the body passes through
/// Postfix's queue and its LMTP client, which may change line ends, strip trailing
/// whitespace and break lines longer than 998 characters. None of that changes which
/// non-whitespace bytes the body holds, in which order.
pub fn body_hash(body: &[u8]) -> String {
    let mut h = Sha256::new();
    for chunk in body.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        h.update(chunk);
    }
    hex::encode(h.finalize())
}

/// The incremental form of [`body_hash`], for a body that arrives in pieces.
#[derive(Default, Clone)]
pub struct BodyHasher(Sha256);

impl BodyHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        for piece in chunk.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
            self.0.update(piece);
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// RFC 3339 UTC with whole seconds, the timestamp's wire form.
fn seconds(t: Timestamp) -> String {
    Timestamp::from_micros(t.as_micros() - t.as_micros().rem_euclid(1_000_000)).to_rfc3339()
}

/// The eight values joined by `\n`, in e2a's order.
pub fn canonical(c: &Claims, domain_check: &str) -> String {
    [
        if c.verified() { "true" } else { "false" },
        c.sender.as_str(),
        c.entity_type.as_str(),
        domain_check,
        c.delegation.as_str(),
        seconds(c.timestamp).as_str(),
        c.message_id.as_str(),
        c.body_hash.as_str(),
    ]
    .join("\n")
}

/// The header set for `claims`, in order, signature last. Values are single lines.
pub fn sign(secret: &Secret, claims: &Claims) -> Vec<(&'static str, String)> {
    let domain_check = domain_check::format(&claims.authentication);
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    let signature = hex::encode(hmac_sha256(secret.expose(), &[canonical(claims, &domain_check).as_bytes()]));
    vec![
        (VERIFIED, if claims.verified() { "true" } else { "false" }.to_owned()),
        (SENDER, one_line(&claims.sender)),
        (ENTITY_TYPE, claims.entity_type.as_str().to_owned()),
        (DOMAIN_CHECK, domain_check),
        (DELEGATION, one_line(&claims.delegation)),
        (TIMESTAMP, seconds(claims.timestamp)),
        (MESSAGE_ID, claims.message_id.clone()),
        (BODY_HASH, claims.body_hash.clone()),
        (SIGNATURE, signature),
    ]
}

/// `raw` with the signed set for `claims` placed on top, as the milter leaves a message
/// (the claims' `body_hash` is recomputed from `raw`'s body). For tools and tests that need a
/// signed message without a milter in the way.
pub fn prepend(secret: &Secret, claims: &Claims, raw: &[u8]) -> Vec<u8> {
    let (_, body) = split_message(raw);
    let claims = Claims { body_hash: body_hash(body), ..claims.clone() };
    let mut out = Vec::with_capacity(raw.len() + 1024);
    for (name, value) in sign(secret, &claims) {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(raw);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no X-E2A-Auth headers: the message did not pass through the postagent milter")]
    Missing,
    #[error("{0} is missing")]
    MissingHeader(&'static str),
    #[error("{0} appears {1} times; a signed message carries exactly one")]
    Duplicate(&'static str, usize),
    #[error("unexpected header {0}")]
    Unexpected(String),
    #[error("{0} is malformed: {1}")]
    Malformed(&'static str, String),
    #[error("the body does not match X-E2A-Auth-Body-Hash (the body was changed after signing)")]
    BodyHash,
    #[error("X-E2A-Auth-Signature does not verify (forged headers, or another deployment secret)")]
    Signature,
    #[error("the signature is {0} s old, more than the {1} s allowed")]
    Expired(i64, i64),
    #[error("the signature's timestamp is in the future")]
    Future,
}

/// Splits a raw message into its header fields (unfolded, `(name, value)`) and its body.
pub fn split_message(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head, body) = match find_blank_line(raw) {
        Some((head_end, body_start)) => (&raw[..head_end], &raw[body_start..]),
        None => (raw, &raw[raw.len()..]),
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':') {
            fields.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    for (_, v) in &mut fields {
        *v = v.trim().to_owned();
    }
    (fields, body)
}

/// End of the header block and start of the body (after the first empty line).
fn find_blank_line(raw: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\n' {
            let rest = &raw[i + 1..];
            if rest.starts_with(b"\r\n") {
                return Some((i + 1, i + 3));
            }
            if rest.starts_with(b"\n") {
                return Some((i + 1, i + 2));
            }
        }
        i += 1;
    }
    None
}

/// Checks the header set of a delivered message. `max_age_secs` bounds the signature's age
/// (`None`: any age); timestamps more than five minutes in the future are refused.
pub fn verify(
    secret: &Secret,
    raw: &[u8],
    now: Timestamp,
    max_age_secs: Option<i64>,
) -> Result<Claims, VerifyError> {
    let (fields, body) = split_message(raw);
    let ours: Vec<&(String, String)> = fields
        .iter()
        .filter(|(n, _)| n.len() >= PREFIX.len() && n[..PREFIX.len()].eq_ignore_ascii_case(PREFIX))
        .collect();
    if ours.is_empty() {
        return Err(VerifyError::Missing);
    }
    for (name, _) in &ours {
        if !ALL.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return Err(VerifyError::Unexpected(name.clone()));
        }
    }
    let one = |header: &'static str| -> Result<&str, VerifyError> {
        let found: Vec<&str> =
            ours.iter().filter(|(n, _)| n.eq_ignore_ascii_case(header)).map(|(_, v)| v.as_str()).collect();
        match found.len() {
            0 => Err(VerifyError::MissingHeader(header)),
            1 => Ok(found[0]),
            n => Err(VerifyError::Duplicate(header, n)),
        }
    };
    let verified = match one(VERIFIED)? {
        "true" => true,
        "false" => false,
        other => return Err(VerifyError::Malformed(VERIFIED, format!("{other:?} is not true or false"))),
    };
    let entity_type = match one(ENTITY_TYPE)? {
        "human" => EntityType::Human,
        "agent" => EntityType::Agent,
        other => return Err(VerifyError::Malformed(ENTITY_TYPE, format!("{other:?}"))),
    };
    let domain_check = one(DOMAIN_CHECK)?;
    let authentication =
        domain_check::parse(domain_check).map_err(|e| VerifyError::Malformed(DOMAIN_CHECK, e))?;
    let stamp = one(TIMESTAMP)?;
    let timestamp = Timestamp::parse_rfc3339(stamp)
        .ok_or_else(|| VerifyError::Malformed(TIMESTAMP, format!("{stamp:?}")))?;
    let message_id = one(MESSAGE_ID)?;
    if crate::ids::MessageId::parse(message_id).is_none() {
        return Err(VerifyError::Malformed(MESSAGE_ID, format!("{message_id:?}")));
    }
    let claimed_hash = one(BODY_HASH)?;
    let signature = one(SIGNATURE)?;
    let claims = Claims {
        authentication,
        sender: one(SENDER)?.to_owned(),
        entity_type,
        delegation: one(DELEGATION)?.to_owned(),
        timestamp,
        message_id: message_id.to_owned(),
        body_hash: claimed_hash.to_owned(),
    };
    let expected = hex::encode(hmac_sha256(secret.expose(), &[canonical(&claims, domain_check).as_bytes()]));
    if !ct_eq(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes()) {
        return Err(VerifyError::Signature);
    }
    // Signed by us, so Verified was computed from this Domain-Check; a mismatch is a bug
    // or a forgery with the secret, and either way not verification.
    if verified != claims.verified() {
        return Err(VerifyError::Malformed(VERIFIED, "disagrees with the signed DMARC result".into()));
    }
    if !ct_eq(body_hash(body).as_bytes(), claimed_hash.as_bytes()) {
        return Err(VerifyError::BodyHash);
    }
    let age = (now.as_micros() - timestamp.as_micros()) / 1_000_000;
    if age < -300 {
        return Err(VerifyError::Future);
    }
    if let Some(max) = max_age_secs
        && age > max
    {
        return Err(VerifyError::Expired(age, max));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vector() -> Value {
        serde_json::from_str(include_str!("../../../docs/vectors/auth-headers.json")).expect("vector json")
    }

    fn text(v: &Value, k: &str) -> String {
        v[k].as_str().unwrap_or_else(|| panic!("vector lacks {k}")).to_owned()
    }

    fn secret(v: &Value) -> Secret {
        Secret::new(text(v, "secret").into_bytes())
    }

    fn claims(v: &Value) -> Claims {
        let auth = domain_check::parse(v["headers"][3][1].as_str().expect("domain check")).expect("parses");
        Claims {
            authentication: auth,
            sender: "alice@example.org".into(),
            entity_type: EntityType::Human,
            delegation: String::new(),
            timestamp: Timestamp::parse_rfc3339("2026-11-21T12:00:00Z").expect("time"),
            message_id: "msg_0123456789abcdef0123456789abcdef".into(),
            body_hash: text(v, "body_hash"),
        }
    }

    fn at(v: &Value) -> Timestamp {
        let _ = v;
        Timestamp::parse_rfc3339("2026-11-21T12:01:00Z").expect("time")
    }

    #[test]
    fn matches_the_golden_vector() {
        let v = vector();
        assert_eq!(body_hash(text(&v, "body").as_bytes()), text(&v, "body_hash"));
        let c = claims(&v);
        assert_eq!(canonical(&c, &domain_check::format(&c.authentication)), text(&v, "canonical"));
        let signed = sign(&secret(&v), &c);
        let expected: Vec<(String, String)> = v["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| (h[0].as_str().unwrap_or("").to_owned(), h[1].as_str().unwrap_or("").to_owned()))
            .collect();
        let got: Vec<(String, String)> = signed.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
        assert_eq!(got, expected);
        let checked =
            verify(&secret(&v), text(&v, "message").as_bytes(), at(&v), Some(3600)).expect("verifies");
        assert_eq!(checked, c);
        assert!(checked.verified());
    }

    #[test]
    fn survives_what_postfix_may_do_to_a_body() {
        let v = vector();
        let msg = text(&v, "message");
        let lf = msg.replace("\r\n", "\n");
        let trailing = msg.replace("invoice.\r\n", "invoice.   \r\n") + "\r\n\r\n";
        let (head, body) = msg.split_once("\r\n\r\n").expect("blank line");
        let broken = format!("{head}\r\n\r\n{}", body.replace("please  file", "please\r\n file"));
        let folded =
            msg.replace("X-E2A-Auth-Domain-Check: spf=pass", "X-E2A-Auth-Domain-Check:\r\n spf=pass");
        for (what, m) in [
            ("LF line ends", lf),
            ("trailing space and lines", trailing),
            ("a broken line", broken),
            ("a folded header", folded),
        ] {
            assert!(verify(&secret(&v), m.as_bytes(), at(&v), None).is_ok(), "{what}");
        }
    }

    #[test]
    fn every_tampering_is_caught() {
        let v = vector();
        let msg = text(&v, "message");
        let s = secret(&v);
        let now = at(&v);
        let cases: Vec<(&str, String, VerifyError)> = vec![
            ("body", msg.replace("invoice", "lnvoice"), VerifyError::BodyHash),
            (
                "sender",
                msg.replace("X-E2A-Auth-Sender: alice@", "X-E2A-Auth-Sender: mallory@"),
                VerifyError::Signature,
            ),
            (
                "verdict",
                msg.replace("dkim=pass (d=example.org s=sel1", "dkim=pass (d=evil.example s=sel1"),
                VerifyError::Signature,
            ),
            (
                "duplicate set",
                format!("X-E2A-AUTH-SIGNATURE: {}\r\n{msg}", "0".repeat(64)),
                VerifyError::Duplicate(SIGNATURE, 2),
            ),
            (
                "extra header",
                format!("X-E2A-Auth-Extra: 1\r\n{msg}"),
                VerifyError::Unexpected("X-E2A-Auth-Extra".into()),
            ),
            (
                "no headers",
                msg.split_once("Received:").map(|(_, r)| format!("Received:{r}")).unwrap_or_default(),
                VerifyError::Missing,
            ),
        ];
        for (what, m, want) in cases {
            assert_eq!(verify(&s, m.as_bytes(), now, None), Err(want), "{what}");
        }
        assert_eq!(
            verify(&Secret::new(vec![b'x'; 64]), msg.as_bytes(), now, None),
            Err(VerifyError::Signature)
        );
        let later = now.plus_secs(7200);
        assert!(matches!(verify(&s, msg.as_bytes(), later, Some(3600)), Err(VerifyError::Expired(_, 3600))));
        let earlier = now.plus_secs(-3600);
        assert_eq!(verify(&s, msg.as_bytes(), earlier, None), Err(VerifyError::Future));
    }

    #[test]
    fn incremental_hash_equals_one_shot() {
        let body = b"line one \r\n\tline two\r\n\r\n";
        let mut h = BodyHasher::default();
        for chunk in body.chunks(3) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), body_hash(body));
    }
}
