//! The signed `X-E2A-Auth-*` header set, version 2 (design §5.1, `docs/auth-headers.md`).
//!
//! The names of e2a's retired set are kept, but a version-2 set is bound to one delivery:
//! besides the verdict it signs the Postfix queue id, keyed tags of the envelope recipients,
//! hashes of the header fields a reader acts on and a body hash that keeps line structure
//! ([`canon`]). A set proves something only for the message and delivery it was made for;
//! copied onto other content, another recipient or another queue entry it proves nothing.

use super::{Authentication, canon, domain_check};
use crate::secret::Secret;
use crate::sign::{ct_eq, hmac_sha256};
use crate::time::Timestamp;

pub const VERSION: &str = "X-E2A-Auth-Version";
pub const VERIFIED: &str = "X-E2A-Auth-Verified";
pub const SENDER: &str = "X-E2A-Auth-Sender";
pub const ENTITY_TYPE: &str = "X-E2A-Auth-Entity-Type";
pub const DOMAIN_CHECK: &str = "X-E2A-Auth-Domain-Check";
pub const DELEGATION: &str = "X-E2A-Auth-Delegation";
pub const TIMESTAMP: &str = "X-E2A-Auth-Timestamp";
pub const MESSAGE_ID: &str = "X-E2A-Auth-Message-Id";
pub const QUEUE_ID: &str = "X-E2A-Auth-Queue-Id";
pub const RECIPIENTS: &str = "X-E2A-Auth-Recipients";
pub const HEADER_HASH: &str = "X-E2A-Auth-Header-Hash";
pub const BODY_HASH: &str = "X-E2A-Auth-Body-Hash";
pub const SIGNATURE: &str = "X-E2A-Auth-Signature";

/// Every header of the set, in the order they appear at the top of a signed message.
pub const ALL: [&str; 13] = [
    VERSION,
    VERIFIED,
    SENDER,
    ENTITY_TYPE,
    DOMAIN_CHECK,
    DELEGATION,
    TIMESTAMP,
    MESSAGE_ID,
    QUEUE_ID,
    RECIPIENTS,
    HEADER_HASH,
    BODY_HASH,
    SIGNATURE,
];

/// The version this code writes and the only one it accepts.
pub const CURRENT_VERSION: &str = "2";

/// The prefix every header of the set shares; inbound copies are always removed.
pub const PREFIX: &str = "X-E2A-Auth-";

/// Hex digits of a recipient tag (64 bits of an HMAC: unguessable without the secret).
const TAG_HEX: usize = 16;
/// Most recipient tags one set carries (Postfix's `smtpd_recipient_limit` default).
pub const MAX_RECIPIENTS: usize = 1000;

/// Who sent the message: mail from the internet is `human`; mail our own submission worker
/// composed and proved with its token is `agent`.
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

/// What the milter asserts about one message, and the delivery it is bound to.
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
    /// The Postfix queue id of the queue entry the set was made for.
    pub queue_id: String,
    /// [`recipient_tag`]s of the envelope recipients on our domains.
    pub recipients: Vec<String>,
    /// [`canon::HeaderHasher`]'s value.
    pub header_hash: String,
    /// [`canon::body_hash`] of the body.
    pub body_hash: String,
}

impl Claims {
    pub fn verified(&self) -> bool {
        self.authentication.verified()
    }

    /// The account id of agent mail's delegation (`human=<account>`).
    pub fn delegated_account(&self) -> Option<&str> {
        if self.entity_type != EntityType::Agent {
            return None;
        }
        self.delegation.split(';').find_map(|kv| kv.strip_prefix("human=")).filter(|a| !a.is_empty())
    }

    /// Whether `address` (an envelope recipient) is one the set was made for.
    pub fn binds_recipient(&self, secret: &Secret, address: &str) -> bool {
        let tag = recipient_tag(secret, &self.message_id, address);
        self.recipients.iter().any(|t| ct_eq(t.as_bytes(), tag.as_bytes()))
    }
}

/// The tag of one envelope recipient in a message's set: keyed, so the list reveals no
/// address (a Bcc recipient stays hidden from the others) and cannot be extended by anyone
/// without the secret; per message, so tags cannot be matched across messages.
pub fn recipient_tag(secret: &Secret, message_id: &str, address: &str) -> String {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
    let mac = hmac_sha256(
        secret.expose(),
        &[b"postagent-rcpt-v2\n", message_id.as_bytes(), b"\n", address.as_bytes()],
    );
    hex::encode(mac)[..TAG_HEX].to_owned()
}

/// RFC 3339 UTC with whole seconds, the timestamp's wire form.
fn seconds(t: Timestamp) -> String {
    Timestamp::from_micros(t.as_micros() - t.as_micros().rem_euclid(1_000_000)).to_rfc3339()
}

/// The twelve values, version first, joined by `\n`.
pub fn canonical(c: &Claims, domain_check: &str) -> String {
    [
        CURRENT_VERSION,
        if c.verified() { "true" } else { "false" },
        c.sender.as_str(),
        c.entity_type.as_str(),
        domain_check,
        c.delegation.as_str(),
        seconds(c.timestamp).as_str(),
        c.message_id.as_str(),
        c.queue_id.as_str(),
        c.recipients.join(" ").as_str(),
        c.header_hash.as_str(),
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
        (VERSION, CURRENT_VERSION.to_owned()),
        (VERIFIED, if claims.verified() { "true" } else { "false" }.to_owned()),
        (SENDER, one_line(&claims.sender)),
        (ENTITY_TYPE, claims.entity_type.as_str().to_owned()),
        (DOMAIN_CHECK, domain_check),
        (DELEGATION, one_line(&claims.delegation)),
        (TIMESTAMP, seconds(claims.timestamp)),
        (MESSAGE_ID, claims.message_id.clone()),
        (QUEUE_ID, one_line(&claims.queue_id)),
        (RECIPIENTS, claims.recipients.join(" ")),
        (HEADER_HASH, claims.header_hash.clone()),
        (BODY_HASH, claims.body_hash.clone()),
        (SIGNATURE, signature),
    ]
}

/// `raw` with the signed set for `claims` placed on top, as the milter leaves a message: the
/// header and body hashes are computed from `raw`, and an empty `queue_id` is taken from its
/// first `Received:`. For tools and tests that need a signed message without a milter.
pub fn prepend(secret: &Secret, claims: &Claims, raw: &[u8]) -> Vec<u8> {
    let (head, body) = split_head(raw);
    let queue_id = if claims.queue_id.is_empty() {
        trace_queue_id(raw).unwrap_or_default()
    } else {
        claims.queue_id.clone()
    };
    let claims = Claims {
        header_hash: header_hash(head),
        body_hash: canon::body_hash(body),
        queue_id,
        ..claims.clone()
    };
    let mut out = Vec::with_capacity(raw.len() + 1024);
    for (name, value) in sign(secret, &claims) {
        let line = if value.is_empty() { format!("{name}:\r\n") } else { format!("{name}: {value}\r\n") };
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(raw);
    out
}

/// The header hash of a header block as the milter computes it: bound fields only, our own
/// set excluded (it is never among the bound names).
pub fn header_hash(head: &[u8]) -> String {
    let mut h = canon::HeaderHasher::default();
    for (name, raw_field) in fields(head) {
        h.add(&String::from_utf8_lossy(name), raw_field);
    }
    h.finish()
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
    #[error("X-E2A-Auth-Version is {0:?}; only version 2 sets (bound to one delivery) are accepted")]
    Version(String),
    #[error("{0} is malformed: {1}")]
    Malformed(&'static str, String),
    #[error("X-E2A-Auth-Signature does not verify (forged headers, or another deployment secret)")]
    Signature,
    #[error("the body does not match X-E2A-Auth-Body-Hash (the body was changed after signing)")]
    BodyHash,
    #[error("header fields changed after signing: {}", .0.join(", "))]
    HeaderHash(Vec<String>),
    #[error("the set was made for queue id {signed}, but this delivery's trace header shows {}", .trace.as_deref().unwrap_or("none"))]
    QueueId { signed: String, trace: Option<String> },
    #[error("the set was not made for the recipient <{0}>")]
    Recipient(String),
    #[error("X-E2A-Auth-Sender is {signed:?} but the message's From is {}", .from.as_deref().map_or("not one address".to_owned(), |f| format!("{f:?}")))]
    Sender { signed: String, from: Option<String> },
    #[error("the signature is {0} s old, more than the {1} s allowed")]
    Expired(i64, i64),
    #[error("the signature's timestamp is in the future")]
    Future,
}

impl VerifyError {
    /// A short name of the check that failed, for log lines and metrics.
    pub fn binding(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MissingHeader(_) | Self::Duplicate(..) | Self::Unexpected(_) | Self::Malformed(..) => {
                "malformed"
            }
            Self::Version(_) => "version",
            Self::Signature => "signature",
            Self::BodyHash => "body",
            Self::HeaderHash(_) => "headers",
            Self::QueueId { .. } => "queue_id",
            Self::Recipient(_) => "recipient",
            Self::Sender { .. } => "sender",
            Self::Expired(..) | Self::Future => "age",
        }
    }
}

/// Splits a raw message at the first empty line: the header block (with its last line end)
/// and the body.
pub fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    match find_blank_line(raw) {
        Some((head_end, body_start)) => (&raw[..head_end], &raw[body_start..]),
        None => (raw, &raw[raw.len()..]),
    }
}

/// The header fields of a header block as they stand, lazily: the name (trimmed) and the raw
/// field (with its folding, without its last line end). Lines without a colon are skipped.
/// Nothing is allocated per field, so a header of millions of fields costs one pass.
pub fn fields(head: &[u8]) -> Fields<'_> {
    Fields { head, pos: 0 }
}

/// The iterator of [`fields`].
pub struct Fields<'a> {
    head: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let head = self.head;
        while self.pos < head.len() {
            let start = self.pos;
            let mut end = head.len();
            let mut i = start;
            while let Some(nl) = head[i..].iter().position(|&b| b == b'\n') {
                let at = i + nl;
                if head.get(at + 1).is_some_and(|&c| c == b' ' || c == b'\t') {
                    i = at + 1;
                    continue;
                }
                end = at;
                break;
            }
            self.pos = if end == head.len() { end } else { end + 1 };
            let end = if end > start && head[end - 1] == b'\r' { end - 1 } else { end };
            let line = &head[start..end];
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                return Some((line[..colon].trim_ascii(), line));
            }
        }
        None
    }
}

/// Our own fields (`X-E2A-Auth-*`, unfolded `(name, value)`), at most one more than a set has:
/// past that the set is malformed whatever follows, and a flood of them costs nothing.
fn our_fields(head: &[u8]) -> Vec<(String, String)> {
    fields(head)
        .filter(|(name, _)| is_ours_bytes(name))
        .take(ALL.len() + 2)
        .map(|(name, raw_field)| {
            let field = canon::undo_postfix_breaks(raw_field);
            let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
            let value: Vec<u8> = field
                .get(colon + 1..)
                .unwrap_or(&[])
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            (String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(&value).trim().to_owned())
        })
        .collect()
}

/// End of the header block and start of the body (after the first empty line).
fn find_blank_line(raw: &[u8]) -> Option<(usize, usize)> {
    if raw.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if raw.starts_with(b"\n") {
        return Some((0, 1));
    }
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

/// The Postfix queue id from the first `Received:` header of the header block: the trace
/// header the last Postfix that queued this message wrote for it.
///
/// Postfix writes the id on a line of its own making, never on one the client fills in:
/// smtpd `Received: from <helo> (…)` ⏎ `\tby host (Postfix) with ESMTP id 4Xyz12345` ⏎
/// `\tfor <…>; date`, pickup `Received: by host (Postfix, from userid 0)` ⏎
/// `\tid 4Xyz12345; date`. So the id is read from the first physical line that starts with
/// `by ` (its last words `id <qid>`), or from the `id <qid>;` line after it, after undoing
/// Postfix's own long-line breaks: a HELO of `id FAKE` or one long enough to push text onto
/// a continuation line cannot place an id. Only the first `Received:` counts: Postfix
/// prepends it to whatever the message carried, so everything below it may be the sender's.
/// A signed set is bound to this id.
pub fn trace_queue_id(message: &[u8]) -> Option<String> {
    let (head, _) = split_head(message);
    let (_, field) = fields(head).find(|(name, _)| name.eq_ignore_ascii_case(b"received"))?;
    let field = canon::undo_postfix_breaks(field);
    let text = String::from_utf8_lossy(&field);
    let mut lines = text.lines().map(str::trim);
    let first = lines.next()?;
    let first = first.get(first.find(':')? + 1..)?.trim_start();
    let mut lines = std::iter::once(first).chain(lines);
    let by = lines.find(|l| l.starts_with("by "))?;
    let words: Vec<&str> = by.split_whitespace().collect();
    let id = match words.as_slice() {
        [.., id, qid] if id.eq_ignore_ascii_case("id") => qid.trim_end_matches(';'),
        _ => {
            let next = lines.next()?;
            let mut words = next.split_whitespace();
            if !words.next()?.eq_ignore_ascii_case("id") {
                return None;
            }
            words.next()?.trim_end_matches(';')
        }
    };
    // Short ids are hex, long ids (enable_long_queue_ids) base-52ish; both are alphanumeric.
    ((5..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| id.to_owned())
}

/// The delivery a set is checked against: this message's trace queue id is read from the
/// message itself; the recipient is the LMTP RCPT (or `None` when no recipient is known, as
/// for `postagent verify` without `--recipient`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery<'a> {
    pub recipient: Option<&'a str>,
    /// Checks the queue id against the first `Received:` (off only for tools that look at a
    /// set outside any delivery).
    pub check_queue_id: bool,
}

/// Checks the header set of a delivered message: its form, its signature, its age, that it
/// belongs to this content (header and body hashes) and, per `delivery`, to this queue entry
/// and recipient. `max_age_secs` bounds the signature's age (`None`: any age); timestamps
/// more than five minutes in the future are refused. The first failing check is the answer,
/// so a report names the first binding that broke.
pub fn verify(
    secret: &Secret,
    raw: &[u8],
    now: Timestamp,
    max_age_secs: Option<i64>,
    delivery: Delivery<'_>,
) -> Result<Claims, VerifyError> {
    let (head, body) = split_head(raw);
    let ours = our_fields(head);
    let claims = verify_set(secret, &ours, &header_hash(head), &canon::body_hash(body), now, max_age_secs)?;
    if delivery.check_queue_id {
        let trace = trace_queue_id(raw);
        if trace.as_deref() != Some(claims.queue_id.as_str()) {
            return Err(VerifyError::QueueId { signed: claims.queue_id.clone(), trace });
        }
    }
    if let Some(rcpt) = delivery.recipient
        && !claims.binds_recipient(secret, rcpt)
    {
        return Err(VerifyError::Recipient(rcpt.to_owned()));
    }
    Ok(claims)
}

/// Checks a set given as its `X-E2A-Auth-*` fields (unfolded values) against the header and
/// body hashes of the message it travels in: everything but the delivery bindings. The
/// milter uses it on a message that comes back signed (a content filter re-injecting it).
pub fn verify_set(
    secret: &Secret,
    ours: &[(String, String)],
    header_hash: &str,
    body_hash: &str,
    now: Timestamp,
    max_age_secs: Option<i64>,
) -> Result<Claims, VerifyError> {
    if ours.is_empty() {
        return Err(VerifyError::Missing);
    }
    for (name, _) in ours {
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
    // A set without a version is e2a's (or postagent's first) unbound form.
    let version = ours.iter().find(|(n, _)| n.eq_ignore_ascii_case(VERSION)).map_or("1", |(_, v)| v.as_str());
    if version != CURRENT_VERSION {
        return Err(VerifyError::Version(version.to_owned()));
    }
    for h in ALL {
        one(h)?;
    }
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
    let recipients: Vec<String> =
        one(RECIPIENTS)?.split_whitespace().take(MAX_RECIPIENTS + 1).map(str::to_owned).collect();
    if recipients.len() > MAX_RECIPIENTS {
        return Err(VerifyError::Malformed(RECIPIENTS, format!("more than {MAX_RECIPIENTS} recipient tags")));
    }
    if recipients.iter().any(|t| t.len() != TAG_HEX || !t.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(VerifyError::Malformed(RECIPIENTS, "not a list of recipient tags".into()));
    }
    let signature = one(SIGNATURE)?;
    let claims = Claims {
        authentication,
        sender: one(SENDER)?.to_owned(),
        entity_type,
        delegation: one(DELEGATION)?.to_owned(),
        timestamp,
        message_id: message_id.to_owned(),
        queue_id: one(QUEUE_ID)?.to_owned(),
        recipients,
        header_hash: one(HEADER_HASH)?.to_owned(),
        body_hash: one(BODY_HASH)?.to_owned(),
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
    if !ct_eq(body_hash.as_bytes(), claims.body_hash.as_bytes()) {
        return Err(VerifyError::BodyHash);
    }
    if !ct_eq(header_hash.as_bytes(), claims.header_hash.as_bytes()) {
        return Err(VerifyError::HeaderHash(canon::changed_headers(&claims.header_hash, header_hash)));
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

/// Whether a header name belongs to the set's namespace (every such field is ours to write).
pub fn is_ours(name: &str) -> bool {
    is_ours_bytes(name.as_bytes())
}

fn is_ours_bytes(name: &[u8]) -> bool {
    name.get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests;
