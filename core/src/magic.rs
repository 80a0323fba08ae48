//! Capability tokens: `base64url(payload) + "." + base64url(HMAC-SHA256(secret, payload))`,
//! unpadded (contract §3.5 attachment downloads, §7.6 magic links). Stateless: whoever holds
//! one may do exactly what its payload says until it expires, nothing else.
//!
//! Magic links carry `"<message_id>|<approve|reject>|<exp_unix>"` and expire ten minutes
//! after the hold does. "Already used" needs no state either: a decided hold is no longer
//! pending, and the page says so.

use crate::secret::Secret;
use crate::sign::{ct_eq, hmac_sha256};
use crate::time::Timestamp;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// A magic link outlives its hold by this much, so a reviewer clicking at the last moment
/// sees "expired" from the hold, not a broken link.
pub const LINK_GRACE_SECS: i64 = 600;

pub fn sign(secret: &Secret, payload: &str) -> String {
    let mac = hmac_sha256(secret.expose(), &[payload.as_bytes()]);
    format!("{}.{}", B64.encode(payload), B64.encode(mac))
}

/// The payload of a token whose MAC is ours.
pub fn open(secret: &Secret, token: &str) -> Option<String> {
    let (payload_b64, mac_b64) = token.trim().split_once('.')?;
    let payload = B64.decode(payload_b64).ok()?;
    let mac = B64.decode(mac_b64).ok()?;
    if !ct_eq(&mac, &hmac_sha256(secret.expose(), &[&payload])) {
        return None;
    }
    String::from_utf8(payload).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// Why a magic link does not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Missing, tampered, or for the other action.
    Invalid,
    Expired,
}

/// The token of a console sign-in link for the stored login `login_id`. The row holds the
/// account and the expiry; the MAC makes the id unguessable and unforgeable. The payload's
/// prefix cannot be a message id, so a review token never opens a session, nor the reverse.
pub fn sign_in_token(secret: &Secret, login_id: &str) -> String {
    sign(secret, &format!("console-login|{login_id}"))
}

/// The login id of a sign-in token we minted.
pub fn open_sign_in(secret: &Secret, token: &str) -> Option<String> {
    open(secret, token)?.strip_prefix("console-login|").map(str::to_owned)
}

pub fn link_token(secret: &Secret, message_id: &str, action: Action, expires_at: Timestamp) -> String {
    sign(secret, &format!("{message_id}|{}|{}", action.as_str(), expires_at.as_micros() / 1_000_000))
}

/// The message id a valid, unexpired token for `action` names.
pub fn check_link(secret: &Secret, token: &str, action: Action, now: Timestamp) -> Result<String, LinkError> {
    let payload = open(secret, token).ok_or(LinkError::Invalid)?;
    let mut parts = payload.split('|');
    let (Some(id), Some(act), Some(exp), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::Invalid);
    };
    let exp: i64 = exp.parse().map_err(|_| LinkError::Invalid)?;
    if act != action.as_str() || !id.starts_with("msg_") {
        return Err(LinkError::Invalid);
    }
    if exp.saturating_mul(1_000_000) <= now.as_micros() {
        return Err(LinkError::Expired);
    }
    Ok(id.to_owned())
}

/// The approve and reject URLs for a held message whose hold expires at `hold_expires`.
pub fn links(base: &str, secret: &Secret, message_id: &str, hold_expires: Timestamp) -> (String, String) {
    let exp = hold_expires.plus_secs(LINK_GRACE_SECS);
    // base64url has no characters that need escaping in a query value.
    (
        format!("{base}/v1/approve?t={}", link_token(secret, message_id, Action::Approve, exp)),
        format!("{base}/v1/reject?t={}", link_token(secret, message_id, Action::Reject, exp)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        let s = Secret::new(vec![1; 32]);
        let now = Timestamp::from_micros(1_800_000_000_000_000);
        let t = link_token(&s, "msg_ab", Action::Approve, now.plus_secs(60));
        assert_eq!(check_link(&s, &t, Action::Approve, now).as_deref(), Ok("msg_ab"));
        assert_eq!(check_link(&s, &t, Action::Reject, now), Err(LinkError::Invalid), "wrong action");
        assert_eq!(check_link(&s, &t, Action::Approve, now.plus_secs(61)), Err(LinkError::Expired));
        let mut tampered = t.clone();
        tampered.insert(1, 'x');
        assert_eq!(check_link(&s, &tampered, Action::Approve, now), Err(LinkError::Invalid));
        assert_eq!(check_link(&Secret::new(vec![2; 32]), &t, Action::Approve, now), Err(LinkError::Invalid));
        assert_eq!(check_link(&s, "", Action::Approve, now), Err(LinkError::Invalid));
        let (p, _) = t.split_once('.').expect("two parts");
        assert_eq!(B64.decode(p).expect("b64"), format!("msg_ab|approve|{}", 1_800_000_060).into_bytes());
    }
}
