//! Recipient strings as the API accepts them: `addr@example.org` or `Name <addr@example.org>`
//! (the display name may be quoted). Anything that could end a header line or smuggle a
//! second address is refused here, before a byte of MIME is written.

use crate::ids::AgentEmail;

/// One mailbox: an optional display name and the address (lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// CR, LF or another control character: a header injection attempt, never an address.
    #[error("must not contain line breaks or control characters")]
    ControlCharacter,
    #[error("{0:?} is not an email address")]
    Invalid(String),
}

/// `true` for characters that must never reach a header value.
pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// A bare `local@domain`, lowercased (the same rules as agent addresses: dot-atom local part,
/// no quoted strings, an LDH domain).
pub fn parse_address(s: &str) -> Result<String, AddressError> {
    if has_control(s) {
        return Err(AddressError::ControlCharacter);
    }
    let s = s.trim();
    AgentEmail::parse(s).map(|e| e.to_string()).ok_or_else(|| AddressError::Invalid(s.to_owned()))
}

/// `addr`, `<addr>`, `Name <addr>` or `"Name" <addr>`.
pub fn parse_mailbox(s: &str) -> Result<Mailbox, AddressError> {
    if has_control(s) {
        return Err(AddressError::ControlCharacter);
    }
    let t = s.trim();
    let invalid = || AddressError::Invalid(t.to_owned());
    let Some(open) = t.rfind('<') else {
        return Ok(Mailbox { name: None, address: parse_address(t)? });
    };
    let inner = t[open + 1..].strip_suffix('>').ok_or_else(invalid)?;
    let address = parse_address(inner)?;
    let raw_name = t[..open].trim();
    let name = match raw_name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => {
            // An unquoted name must not carry address syntax of its own ("a@b, c@d <e@f>").
            if raw_name.contains([',', ';', '<', '>', '"', '@']) {
                return Err(invalid());
            }
            raw_name.to_owned()
        }
    };
    let name = name.trim().to_owned();
    Ok(Mailbox { name: (!name.is_empty()).then_some(name), address })
}

/// The bare address of each mailbox (for comparisons and the envelope).
pub fn bare(list: &[Mailbox]) -> Vec<String> {
    list.iter().map(|m| m.address.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes() {
        let m = parse_mailbox("Ann Example <Ann@Example.ORG>").expect("named");
        assert_eq!(m, Mailbox { name: Some("Ann Example".into()), address: "ann@example.org".into() });
        let q = parse_mailbox("\"Doe, John\" <j@x.test>").expect("quoted");
        assert_eq!(q.name.as_deref(), Some("Doe, John"));
        assert_eq!(parse_mailbox("b@x.test").expect("bare").name, None);
        assert_eq!(parse_mailbox("<b@x.test>").expect("bracketed").address, "b@x.test");
        for bad in [
            "",
            "no-at",
            "a@",
            "@x.test",
            "a..b@x.test",
            "a@b@c",
            "x <a@b.test",
            "a@-x.test",
            "a, b <c@d.test>",
        ] {
            assert!(matches!(parse_mailbox(bad), Err(AddressError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn line_breaks_are_injection_not_addresses() {
        for bad in ["a@x.test\r\nBcc: victim@y.test", "Name\n <a@x.test>", "a@x.test\r", "a\u{0}@x.test"] {
            assert_eq!(parse_mailbox(bad), Err(AddressError::ControlCharacter), "{bad:?}");
        }
    }
}
