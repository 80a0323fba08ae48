//! Sealing small values at rest (ChaCha20-Poly1305 under a key derived from the deployment
//! secret). Used where the store must keep something a client may see again but a reader of
//! the database must not: the cached response of an API-key creation carries the new key.

use crate::secret::Secret;
use crate::sign::hmac_sha256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";

fn key(secret: &Secret, purpose: &str) -> Option<LessSafeKey> {
    let derived = hmac_sha256(secret.expose(), &[b"postagent-seal-v1\n", purpose.as_bytes()]);
    UnboundKey::new(&CHACHA20_POLY1305, &derived).ok().map(LessSafeKey::new)
}

/// Encrypts and authenticates `plaintext` for `purpose`; `None` only if the system random
/// source fails.
pub fn seal(secret: &Secret, purpose: &str, plaintext: &[u8]) -> Option<String> {
    let key = key(secret, purpose)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).ok()?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(purpose.as_bytes()),
        &mut buf,
    )
    .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Some(format!("{PREFIX}{}", B64.encode(out)))
}

/// Decrypts what [`seal`] produced for the same `purpose` and secret; `None` if anything
/// was changed.
pub fn open(secret: &Secret, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
    let raw = B64.decode(sealed.strip_prefix(PREFIX)?).ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = body.to_vec();
    let plain = key(secret, purpose)?.open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf).ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_kind_of_tamper() {
        let secret = Secret::new(vec![1; 32]);
        let sealed = seal(&secret, "idempotency", b"{\"key\":\"e2a_acct_x\"}").expect("seal");
        assert!(!sealed.contains("e2a_acct"), "{sealed}");
        assert_eq!(open(&secret, "idempotency", &sealed).as_deref(), Some(&b"{\"key\":\"e2a_acct_x\"}"[..]));
        assert_ne!(seal(&secret, "idempotency", b"x"), seal(&secret, "idempotency", b"x"), "fresh nonce");
        assert_eq!(open(&secret, "other", &sealed), None, "bound to its purpose");
        assert_eq!(open(&Secret::new(vec![2; 32]), "idempotency", &sealed), None, "bound to the secret");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(&secret, "idempotency", &String::from_utf8(bytes).expect("utf8")), None);
        assert_eq!(open(&secret, "idempotency", "plain text"), None);
    }
}
