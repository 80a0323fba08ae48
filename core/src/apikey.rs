//! API keys: `e2a_acct_` or `e2a_agt_` followed by 64 lowercase hex characters. Only the
//! SHA-256 of the whole key is stored; the plaintext is shown once, at creation.

use crate::sign::sha256_hex;

pub const ACCOUNT_PREFIX: &str = "e2a_acct_";
pub const AGENT_PREFIX: &str = "e2a_agt_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    Account,
    Agent,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "account" => Some(Self::Account),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// A freshly minted key. `Debug` hides the plaintext.
pub struct NewKey {
    pub plaintext: String,
    pub hash: String,
    pub prefix: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

pub fn mint(scope: KeyScope) -> NewKey {
    let prefix = match scope {
        KeyScope::Account => ACCOUNT_PREFIX,
        KeyScope::Agent => AGENT_PREFIX,
    };
    let plaintext = crate::ids::mint(prefix, 32);
    NewKey { hash: hash(&plaintext), prefix: plaintext.chars().take(16).collect(), plaintext }
}

/// The stored form of a presented key.
pub fn hash(plaintext: &str) -> String {
    sha256_hex(plaintext.as_bytes())
}

/// Whether a bearer token has the shape of one of our keys (cheap pre-check before a lookup;
/// legacy unprefixed `e2a_<hex>` keys are accepted as the contract says).
pub fn looks_like_key(token: &str) -> bool {
    let hex_part = token
        .strip_prefix(ACCOUNT_PREFIX)
        .or_else(|| token.strip_prefix(AGENT_PREFIX))
        .or_else(|| token.strip_prefix("e2a_"));
    hex_part.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_have_the_contract_shape() {
        let k = mint(KeyScope::Agent);
        assert!(k.plaintext.starts_with("e2a_agt_"));
        assert_eq!(k.plaintext.len(), 8 + 64);
        assert_eq!(k.prefix, &k.plaintext[..16]);
        assert_eq!(k.hash, hash(&k.plaintext));
        assert_eq!(k.hash.len(), 64);
        assert!(looks_like_key(&k.plaintext));
        assert!(!format!("{k:?}").contains(&k.plaintext));
        assert!(!looks_like_key("e2a_acct_123"));
        assert!(!looks_like_key("Bearer"));
    }
}
