//! Identifiers and the two names the contract keys resources by (agent email, domain name).
//!
//! Ids are a type prefix plus lowercase hex from the OS random source, as e2a mints them
//! (`msg_<32hex>`, `apk_<32hex>`, …). Emails and domains are normalised to lowercase ASCII.

use rand::RngCore;
use std::fmt;

/// `prefix` + `2 * bytes` lowercase hex characters of OS randomness.
pub fn mint(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    format!("{prefix}{}", hex::encode(buf))
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $bytes:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn mint() -> Self {
                Self(mint($prefix, $bytes))
            }

            /// Accepts only the exact shape this server mints.
            pub fn parse(s: &str) -> Option<Self> {
                let hex = s.strip_prefix($prefix)?;
                let ok = hex.len() == $bytes * 2
                    && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| Self(s.to_owned()))
            }

            /// Wraps a value read back from our own store.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

prefixed_id!(/// An account (the contract's `user.id`).
    AccountId, "usr_", 16);
prefixed_id!(/// An API key row (never the key itself).
    ApiKeyId, "apk_", 16);
prefixed_id!(/// A stored message.
    MessageId, "msg_", 16);
prefixed_id!(/// A conversation (thread).
    ConversationId, "conv_", 16);
prefixed_id!(/// An outbox event.
    EventId, "evt_", 16);
prefixed_id!(/// A webhook subscription.
    WebhookId, "wh_", 16);
prefixed_id!(/// One webhook delivery (an event for a subscription).
    DeliveryId, "whd_", 16);

/// An agent's address: lowercase, one `@`, a valid domain. The agent's identity in the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentEmail {
    full: String,
    at: usize,
}

impl AgentEmail {
    /// Parses and lowercases an address. Quoted local parts and anything outside printable
    /// ASCII are refused: agent addresses are created by us and must survive every MTA.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 320 {
            return None;
        }
        let lower = s.to_ascii_lowercase();
        let at = lower.rfind('@')?;
        let (local, domain) = (&lower[..at], &lower[at + 1..]);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
        if !local_ok || DomainName::parse(domain).is_none() {
            return None;
        }
        Some(Self { full: lower, at })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn local_part(&self) -> &str {
        &self.full[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }

    /// Splits an address extension off, as Postfix's `recipient_delimiter` does: at the first
    /// character of the local part that is one of `delimiters`, `bot+signup@d` gives
    /// (`bot@d`, `signup`). `None` without a delimiter, or when nothing is left before it.
    pub fn split_extension(&self, delimiters: &str) -> Option<(AgentEmail, String)> {
        let local = self.local_part();
        let cut = local.find(|c: char| delimiters.contains(c))?;
        if cut == 0 {
            return None;
        }
        let base = AgentEmail::parse(&format!("{}@{}", &local[..cut], self.domain()))?;
        Some((base, local[cut + 1..].to_owned()))
    }
}

impl fmt::Display for AgentEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// A DNS domain name as users register it: lowercase LDH labels, at least two of them, no
/// trailing dot, no IP literals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return None;
        }
        let labels: Vec<&str> = lower.split('.').collect();
        if labels.len() < 2 {
            return None;
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let tld_ok = labels.last().is_some_and(|t| t.bytes().any(|b| b.is_ascii_alphabetic()));
        (labels.iter().all(|l| label_ok(l)) && tld_ok).then_some(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Shared-domain slug rules (contract §8.3): 2–40 of `[a-z0-9-]`, no leading or trailing
/// hyphen, and not one of the role names people would mistake for the operator.
pub fn slug_problem(local: &str) -> Option<&'static str> {
    const RESERVED: &[&str] = &[
        "admin",
        "postmaster",
        "abuse",
        "noreply",
        "no-reply",
        "mailer-daemon",
        "info",
        "help",
        "demo",
        "test",
        "www",
        "mail",
        "agent",
        "api",
        "system",
        "root",
    ];
    let shape_ok = (2..=40).contains(&local.len())
        && !local.starts_with('-')
        && !local.ends_with('-')
        && local.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !shape_ok {
        Some("slug must be 2-40 characters of a-z, 0-9 and '-', not starting or ending with '-'")
    } else if RESERVED.contains(&local) {
        Some("slug is reserved")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_parse_and_foreign_shapes_do_not() {
        let id = MessageId::mint();
        assert_eq!(id.as_str().len(), 4 + 32);
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert!(MessageId::parse("msg_XYZ").is_none());
        assert!(MessageId::parse(&id.as_str().to_uppercase()).is_none());
        assert!(ApiKeyId::parse(id.as_str()).is_none());
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        let e = AgentEmail::parse("Bot@Agents.Example.ORG").expect("valid");
        assert_eq!(e.as_str(), "bot@agents.example.org");
        assert_eq!(e.local_part(), "bot");
        assert_eq!(e.domain(), "agents.example.org");
        for bad in ["", "bot", "@x.org", "bot@", "a b@x.org", "bot@localhost", "a..b@x.org", "bot@x.org\r\n"]
        {
            assert!(AgentEmail::parse(bad).is_none(), "{bad:?}");
        }
        assert!(AgentEmail::parse("a\"b@x.org").is_none());
    }

    #[test]
    fn domains_and_slugs() {
        assert_eq!(DomainName::parse("Example.ORG.").map(|d| d.0), Some("example.org".into()));
        for bad in ["example", "-x.org", "x-.org", "1.2.3.4", "a_b.org", "x..org"] {
            assert!(DomainName::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(slug_problem("my-bot"), None);
        assert!(slug_problem("admin").is_some());
        assert!(slug_problem("a").is_some());
        assert!(slug_problem("-ab").is_some());
        assert!(slug_problem("a.b").is_some());
    }
}
