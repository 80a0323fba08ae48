//! Webhook signatures, both schemes on every POST (design §5.3):
//!
//! - e2a: `X-E2A-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`, HMAC-SHA256 over `"<t>.<body>"`
//!   keyed with the whole secret string, `whsec_` prefix included;
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature:
//!   v1,<base64>[ v1,<base64>]`, HMAC-SHA256 over `"<id>.<t>.<body>"` keyed with the
//!   base64-decoded part after `whsec_`.
//!
//! Our secrets are `whsec_` + 64 lowercase hex characters, which is also valid base64, so one
//! stored secret serves both schemes. During a rotation the previous secret signs too.

use crate::sign::hmac_sha256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A new subscription secret: `whsec_` + 32 random bytes in hex.
pub fn mint_secret() -> String {
    crate::ids::mint("whsec_", 32)
}

/// What a subscription secret is sealed for (`crate::seal`): the database keeps only
/// sealed secrets, so a reader of it (a backup, a replica's disk) cannot sign webhooks.
const SEAL_PURPOSE: &str = "webhook-secret";

/// A subscription secret as the store keeps it.
pub fn seal_secret(deployment: &crate::secret::Secret, secret: &str) -> Option<String> {
    crate::seal::seal(deployment, SEAL_PURPOSE, secret.as_bytes())
}

/// The secret of a stored value: sealed (opened with the deployment secret) or, for a row a
/// replica has not migrated yet, a plain `whsec_` secret. `None` when it cannot be opened
/// (another deployment secret, or a damaged value).
pub fn reveal_secret(deployment: &crate::secret::Secret, stored: &str) -> Option<String> {
    if is_plain(stored) {
        return Some(stored.to_owned());
    }
    crate::seal::open(deployment, SEAL_PURPOSE, stored).and_then(|b| String::from_utf8(b).ok())
}

/// A secret stored before secrets were sealed.
pub fn is_plain(stored: &str) -> bool {
    stored.starts_with("whsec_")
}

/// The signature headers of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub e2a_signature: String,
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
}

/// The e2a MAC of `body` at `t` under `secret` (lowercase hex).
pub fn e2a_mac(secret: &str, t: i64, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]))
}

/// The Standard Webhooks signature (`v1,<base64>`), or `None` when the secret's key part is
/// not base64 (a secret we did not mint).
pub fn standard_signature(secret: &str, id: &str, t: i64, body: &[u8]) -> Option<String> {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mac = hmac_sha256(&key, &[id.as_bytes(), b".", t.to_string().as_bytes(), b".", body]);
    Some(format!("v1,{}", B64.encode(mac)))
}

/// Signs `body` (event `id`) at `t` with `current`, and also with `previous` while a rotation
/// grace period runs; the current secret's signature comes first in both headers.
pub fn sign(current: &str, previous: Option<&str>, id: &str, t: i64, body: &[u8]) -> SignatureHeaders {
    let secrets: Vec<&str> = std::iter::once(current).chain(previous).collect();
    let mut e2a = format!("t={t}");
    for s in &secrets {
        e2a.push_str(",v1=");
        e2a.push_str(&e2a_mac(s, t, body));
    }
    let standard: Vec<String> = secrets.iter().filter_map(|s| standard_signature(s, id, t, body)).collect();
    SignatureHeaders {
        e2a_signature: e2a,
        webhook_id: id.to_owned(),
        webhook_timestamp: t.to_string(),
        webhook_signature: standard.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_sealed_and_revealed() {
        let deployment = crate::secret::Secret::new(vec![3; 32]);
        let secret = mint_secret();
        let sealed = seal_secret(&deployment, &secret).expect("seal");
        assert!(!sealed.contains(&secret[6..]) && !is_plain(&sealed), "{sealed}");
        assert_eq!(reveal_secret(&deployment, &sealed).as_deref(), Some(secret.as_str()));
        assert_eq!(reveal_secret(&deployment, &secret).as_deref(), Some(secret.as_str()), "not yet migrated");
        assert_eq!(reveal_secret(&crate::secret::Secret::new(vec![4; 32]), &sealed), None);
    }
    use serde_json::Value;

    fn vector(name: &str) -> Value {
        let path = format!("{}/../docs/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("vector json")
    }

    #[test]
    fn e2a_golden_vector_single_and_dual() {
        let v = vector("e2a-webhook-signing-vector.json");
        let t = v["timestamp"].as_i64().expect("t");
        let body = v["body"].as_str().expect("body").as_bytes();
        let current = v["current_secret"].as_str().expect("current");
        let previous = v["previous_secret"].as_str().expect("previous");
        let single = sign(current, None, "evt_vector", t, body);
        assert_eq!(single.e2a_signature, v["single_header"].as_str().expect("single"));
        let dual = sign(current, Some(previous), "evt_vector", t, body);
        assert_eq!(dual.e2a_signature, v["dual_header"].as_str().expect("dual"));
        // Keying with the secret minus its prefix gives another MAC: the prefix is part of the key.
        assert_ne!(e2a_mac("current_vector", t, body), e2a_mac(current, t, body));
    }

    #[test]
    fn standard_webhooks_golden_vector() {
        let v = vector("standard-webhooks-vector.json");
        let sig = standard_signature(
            v["secret"].as_str().expect("secret"),
            v["webhook_id"].as_str().expect("id"),
            v["webhook_timestamp"].as_i64().expect("t"),
            v["body"].as_str().expect("body").as_bytes(),
        );
        assert_eq!(sig.as_deref(), v["webhook_signature"].as_str());
    }

    #[test]
    fn minted_secrets_serve_both_schemes() {
        let s = mint_secret();
        assert!(s.starts_with("whsec_") && s.len() == 70, "{s}");
        assert!(s[6..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let h = sign(&s, Some(&mint_secret()), "evt_1", 1_700_000_000, b"{}");
        assert_eq!(h.webhook_signature.split(' ').count(), 2);
        assert!(h.webhook_signature.split(' ').all(|p| p.starts_with("v1,")));
        assert_eq!(h.e2a_signature.matches(",v1=").count(), 2);
    }
}
