//! The submission token: how the milter knows a message was composed by postagent's own
//! submission worker for one of its agents, rather than claimed to be.
//!
//! The worker adds `X-E2A-Submission` to every agent message it hands to Postfix's
//! originating listener, freshly for each try. The value is an HMAC under the deployment
//! secret over the message's identity (its postagent id, also in `X-E2A-Message-Id`), the
//! account it was sent for, the time, the From address, the hashes of the header fields
//! Postfix never adds ([`super::canon::TOKEN_HEADERS`]) and the body hash of
//! [`super::canon`]. The milter checks it, always deletes it, and only then signs the
//! message as `entity_type=agent` with its delegation. Anything else that can reach the
//! originating listener (a local process, a SASL user of a submission service with the same
//! `{daemon_name}`) has no token, so its mail is `human` whatever its From says; a token
//! copied onto other content, another From or a later time proves nothing.

use crate::secret::Secret;
use crate::sign::{ct_eq, hmac_sha256};
use crate::time::Timestamp;

pub const HEADER: &str = "X-E2A-Submission";

/// How long a token is good for. The worker mints one per try, and the milter sees the
/// message within the submission's own SMTP exchange, so minutes are plenty; replicas'
/// clocks may differ a little.
pub const MAX_AGE_SECS: i64 = 15 * 60;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub message_id: String,
    pub account_id: String,
}

impl Submission {
    /// The signed set's delegation for this submission.
    pub fn delegation(&self, agent: &str) -> String {
        format!("agent={};human={}", agent.to_ascii_lowercase(), self.account_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("the token names message {token} but X-E2A-Message-Id is {}", .header.as_deref().unwrap_or("missing"))]
    Identity { token: String, header: Option<String> },
    #[error("the token is {0} s old")]
    Stale(i64),
    #[error("the token does not verify (another From, other headers or body, or a forgery)")]
    Mac,
}

fn mac(secret: &Secret, m: &str, a: &str, t: i64, from: &str, header_hash: &str, body_hash: &str) -> String {
    let t = t.to_string();
    let from = from.to_ascii_lowercase();
    let parts: [&[u8]; 12] = [
        b"postagent-submission-v1\n",
        m.as_bytes(),
        b"\n",
        a.as_bytes(),
        b"\n",
        t.as_bytes(),
        b"\n",
        from.as_bytes(),
        b"\n",
        header_hash.as_bytes(),
        b"\n",
        body_hash.as_bytes(),
    ];
    hex::encode(hmac_sha256(secret.expose(), &parts))
}

/// The header value for one try: `v=1; m=<msg>; a=<account>; t=<unix>; s=<hex>`.
pub fn mint(
    secret: &Secret,
    message_id: &str,
    account_id: &str,
    from: &str,
    header_hash: &str,
    body_hash: &str,
    now: Timestamp,
) -> String {
    let t = now.as_micros() / 1_000_000;
    let s = mac(secret, message_id, account_id, t, from, header_hash, body_hash);
    format!("v=1; m={message_id}; a={account_id}; t={t}; s={s}")
}

/// `raw` (a composed outbound message) with a fresh token on top, as the submission worker
/// hands it to Postfix.
pub fn stamp(
    secret: &Secret,
    raw: &[u8],
    message_id: &str,
    account_id: &str,
    agent: &str,
    now: Timestamp,
) -> Vec<u8> {
    let (head, body) = super::headers::split_head(raw);
    let mut headers = super::canon::HeaderHasher::default();
    for (name, field) in super::headers::fields(head) {
        headers.add(&String::from_utf8_lossy(name), field);
    }
    let token = mint(
        secret,
        message_id,
        account_id,
        agent,
        &headers.finish_only(&super::canon::TOKEN_HEADERS),
        &super::canon::body_hash(body),
        now,
    );
    let mut out = Vec::with_capacity(raw.len() + 200);
    out.extend_from_slice(format!("{HEADER}: {token}\r\n").as_bytes());
    out.extend_from_slice(raw);
    out
}

/// Checks a token against the message it arrived with.
pub fn check(
    secret: &Secret,
    value: &str,
    message_id_header: Option<&str>,
    from: &str,
    header_hash: &str,
    body_hash: &str,
    now: Timestamp,
) -> Result<Submission, TokenError> {
    let mut fields = [None::<&str>; 5];
    for part in value.split(';') {
        let (k, v) = part.trim().split_once('=').ok_or(TokenError::Malformed)?;
        let slot = match k {
            "v" => 0,
            "m" => 1,
            "a" => 2,
            "t" => 3,
            "s" => 4,
            _ => return Err(TokenError::Malformed),
        };
        if fields[slot].replace(v).is_some() {
            return Err(TokenError::Malformed);
        }
    }
    let [Some("1"), Some(m), Some(a), Some(t), Some(s)] = fields else { return Err(TokenError::Malformed) };
    if crate::ids::MessageId::parse(m).is_none()
        || a.is_empty()
        || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(TokenError::Malformed);
    }
    let t: i64 = t.parse().map_err(|_| TokenError::Malformed)?;
    if message_id_header.map(str::trim) != Some(m) {
        return Err(TokenError::Identity {
            token: m.to_owned(),
            header: message_id_header.map(str::to_owned),
        });
    }
    let expected = mac(secret, m, a, t, from, header_hash, body_hash);
    if !ct_eq(expected.as_bytes(), s.to_ascii_lowercase().as_bytes()) {
        return Err(TokenError::Mac);
    }
    let age = now.as_micros() / 1_000_000 - t;
    if !(-300..=MAX_AGE_SECS).contains(&age) {
        return Err(TokenError::Stale(age));
    }
    Ok(Submission { message_id: m.to_owned(), account_id: a.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "msg_0123456789abcdef0123456789abcdef";

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-12-07T10:00:00Z").expect("time")
    }

    #[test]
    fn round_trip_and_every_binding() {
        let s = Secret::new(vec![9; 32]);
        let token = mint(&s, MSG, "usr_abc", "Bot@Agents.test", "from=aa", "bb", now());
        let ok = check(&s, &token, Some(MSG), "bot@agents.test", "from=aa", "bb", now().plus_secs(60));
        assert_eq!(ok, Ok(Submission { message_id: MSG.into(), account_id: "usr_abc".into() }));
        assert_eq!(
            ok.map(|sub| sub.delegation("Bot@Agents.test")).as_deref(),
            Ok("agent=bot@agents.test;human=usr_abc")
        );
        let c = |v: &str, mid: Option<&str>, from: &str, hh: &str, bh: &str, at: Timestamp| {
            check(&s, v, mid, from, hh, bh, at)
        };
        assert_eq!(c(&token, Some(MSG), "other@agents.test", "from=aa", "bb", now()), Err(TokenError::Mac));
        assert_eq!(c(&token, Some(MSG), "bot@agents.test", "from=ab", "bb", now()), Err(TokenError::Mac));
        assert_eq!(c(&token, Some(MSG), "bot@agents.test", "from=aa", "bc", now()), Err(TokenError::Mac));
        assert!(matches!(
            c(&token, None, "bot@agents.test", "from=aa", "bb", now()),
            Err(TokenError::Identity { .. })
        ));
        assert!(matches!(
            c(
                &token,
                Some("msg_ffffffffffffffffffffffffffffffff"),
                "bot@agents.test",
                "from=aa",
                "bb",
                now()
            ),
            Err(TokenError::Identity { .. })
        ));
        assert_eq!(
            c(&token, Some(MSG), "bot@agents.test", "from=aa", "bb", now().plus_secs(3600)),
            Err(TokenError::Stale(3600))
        );
        let other =
            check(&Secret::new(vec![8; 32]), &token, Some(MSG), "bot@agents.test", "from=aa", "bb", now());
        assert_eq!(other, Err(TokenError::Mac));
        let moved = token.replace("a=usr_abc", "a=usr_xyz");
        assert_eq!(c(&moved, Some(MSG), "bot@agents.test", "from=aa", "bb", now()), Err(TokenError::Mac));
        for bad in ["", "v=1", "v=2; m=x", &format!("{token}; x=1"), &format!("{token}; s=00")] {
            assert_eq!(
                c(bad, Some(MSG), "bot@agents.test", "from=aa", "bb", now()),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }
}
