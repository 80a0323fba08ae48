//! The envelope sender of outbound mail: a VERP address that names the message, so a
//! delivery status notification routed back to our LMTP server says which message bounced.
//!
//! `bounce+<msg id>.<tag>@<agent domain>`: the agent's own domain already routes to postagent
//! (no new DNS or transport entry), `bounce+` cannot be an agent on the shared domain (slugs
//! have no `+`), and the tag (an HMAC of the message id under the deployment secret, as in
//! BATV) means nobody can forge a bounce for a message without having received its address.

use crate::secret::Secret;
use crate::sign::{ct_eq, hmac_sha256};

const PREFIX: &str = "bounce+";
const TAG_HEX: usize = 12;

fn tag(secret: &Secret, message_id: &str) -> String {
    hex::encode(hmac_sha256(secret.expose(), &[b"verp\n", message_id.as_bytes()]))[..TAG_HEX].to_owned()
}

pub fn bounce_address(secret: &Secret, message_id: &str, domain: &str) -> String {
    format!("{PREFIX}{message_id}.{}@{domain}", tag(secret, message_id))
}

/// Whether the local part has the bounce form at all (before the tag is checked): such a
/// recipient is never an agent.
pub fn looks_like_bounce(address: &str) -> bool {
    address.get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// The message id named by a genuine bounce address.
pub fn parse_bounce(secret: &Secret, address: &str) -> Option<String> {
    let (local, _) = address.rsplit_once('@')?;
    let rest = local.get(PREFIX.len()..).filter(|_| looks_like_bounce(local))?.to_ascii_lowercase();
    let (id, given) = rest.rsplit_once('.')?;
    let well_formed = id.len() == 36
        && id.starts_with("msg_")
        && id[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (well_formed && ct_eq(given.as_bytes(), tag(secret, id).as_bytes())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = Secret::new(vec![7; 32]);
        let id = "msg_0123456789abcdef0123456789abcdef";
        let a = bounce_address(&s, id, "agents.test");
        assert!(a.starts_with("bounce+msg_") && a.ends_with("@agents.test"), "{a}");
        assert_eq!(parse_bounce(&s, &a).as_deref(), Some(id));
        assert_eq!(parse_bounce(&s, &a.to_ascii_uppercase()).as_deref(), Some(id), "case-insensitive");
        let forged = a.replacen(".", ".0", 1);
        assert_eq!(parse_bounce(&s, &forged), None);
        assert_eq!(parse_bounce(&Secret::new(vec![8; 32]), &a), None, "another deployment's tag");
        assert_eq!(parse_bounce(&s, "bot@agents.test"), None);
        assert!(looks_like_bounce("Bounce+x@y.test") && !looks_like_bounce("bot@y.test"));
    }
}
