//! Header surgery: which inbound headers go, and the `Authentication-Results` that comes.
//!
//! Deletion is by (name, per-name index), the only addressing the milter protocol has
//! (`smfi_chgheader`). Postfix matches names case-insensitively and counts every field of
//! that name the milter was shown, so indices are computed over the headers exactly as
//! received. Deleting the first of two equal names would renumber the second, so deletions
//! run from the last header to the first (the bug behind OpenDKIM CVE-2022-48521), and all of
//! them run before anything is inserted.

use postagent_core::auth::Authentication;
use postagent_core::auth::headers::PREFIX;

/// Names compared case-insensitively, as RFC 5322 and Postfix do.
pub const CONVERSATION_ID: &str = "X-E2A-Conversation-Id";
pub const AUTHENTICATION_RESULTS: &str = "Authentication-Results";

/// One `smfi_chgheader(name, index, NULL)`: delete the `index`-th (1-based) field named
/// `name`, counted case-insensitively over the headers as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub index: i32,
}

/// The deletions for a message's `headers` (name, value as received), in the order they must
/// be sent: highest position first.
///
/// Removed: every `X-E2A-Auth-*` (only the milter writes those), every
/// `X-E2A-Conversation-Id` unless the message comes from our originating listener (threading
/// trusts it), and every `Authentication-Results` carrying our authserv-id (a forged verdict
/// in our name; other hops' results are kept).
pub fn deletions<N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &[(N, V)],
    authserv_id: &str,
    originating: bool,
) -> Vec<Deletion> {
    let mut seen: Vec<(String, i32)> = Vec::new();
    let mut out = Vec::new();
    for (name, value) in headers {
        let name = name.as_ref().trim();
        let lower = name.to_ascii_lowercase();
        let index = match seen.iter_mut().find(|(n, _)| *n == lower) {
            Some((_, count)) => {
                *count += 1;
                *count
            }
            None => {
                seen.push((lower, 1));
                1
            }
        };
        let doomed = starts_with_ignore_case(name, PREFIX)
            || (!originating && name.eq_ignore_ascii_case(CONVERSATION_ID))
            || (name.eq_ignore_ascii_case(AUTHENTICATION_RESULTS)
                && authserv_id_of(value.as_ref()).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)));
        if doomed {
            out.push(Deletion { name: name.to_owned(), index });
        }
    }
    out.reverse();
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 §2.2: the first token,
/// possibly followed by a version, before the first `;`), ignoring comments and folding.
pub fn authserv_id_of(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let head = text.split(';').next().unwrap_or("");
    let mut plain = String::with_capacity(head.len());
    let mut depth = 0usize;
    for c in head.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let id = plain.split_whitespace().next()?;
    Some(id.trim_matches('"').to_owned())
}

/// Which SPF identity was checked: MAIL FROM's domain, or HELO's for the null sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfIdentity {
    MailFrom,
    Helo,
}

/// The RFC 8601 `Authentication-Results` value for `auth`, on one line:
/// `mx.example; spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org
/// header.s=sel1; dmarc=pass (p=reject) header.from=example.org`.
pub fn authentication_results(authserv_id: &str, auth: &Authentication, identity: SpfIdentity) -> String {
    let mut parts = vec![value(authserv_id)];
    let mut spf = format!("spf={}", status(&auth.spf.status));
    if let Some(d) = &auth.spf.domain {
        let ptype = match identity {
            SpfIdentity::MailFrom => "smtp.mailfrom",
            SpfIdentity::Helo => "smtp.helo",
        };
        spf.push_str(&format!(" {ptype}={}", value(d)));
    }
    parts.push(spf);
    if auth.dkim.is_empty() {
        parts.push("dkim=none".to_owned());
    }
    for d in &auth.dkim {
        let mut item = format!("dkim={}", status(&d.status));
        if let Some(detail) = &d.detail {
            item.push_str(&format!(" ({})", comment(detail)));
        }
        if let Some(domain) = &d.domain {
            item.push_str(&format!(" header.d={}", value(domain)));
        }
        if let Some(selector) = &d.selector {
            item.push_str(&format!(" header.s={}", value(selector)));
        }
        parts.push(item);
    }
    let mut dmarc = format!("dmarc={}", status(&auth.dmarc.status));
    if let Some(p) = &auth.dmarc.policy {
        dmarc.push_str(&format!(" (p={})", comment(p)));
    }
    if let Some(d) = &auth.dmarc.domain {
        dmarc.push_str(&format!(" header.from={}", value(d)));
    }
    parts.push(dmarc);
    parts.join("; ")
}

/// Result keywords are ours, but never let one break the grammar.
fn status(s: &str) -> &str {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase()) { s } else { "permerror" }
}

/// An RFC 8601 `value` (RFC 2045 token or quoted-string): a hostile `d=` like
/// `x; dmarc=pass` must stay one quoted value, never become a second result.
fn value(s: &str) -> String {
    let token = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@' | b'+'));
    if token {
        return s.to_owned();
    }
    let inner: String = s
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { format!("\\{c}") } else { c.to_string() })
        .collect();
    format!("\"{inner}\"")
}

/// Text inside `( … )`: no parentheses, backslashes or control characters.
fn comment(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\')).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postagent_core::auth::{DkimResult, DmarcResult, SpfResult};

    #[test]
    fn deletes_ours_last_to_first_case_insensitively() {
        let h = [
            ("Received", "from x"),
            ("X-E2A-AUTH-Verified", " true"),
            ("Authentication-Results", " mx.test; spf=pass"),
            ("x-e2a-auth-verified", " true"),
            ("Authentication-Results", " other.example; dkim=pass"),
            ("X-E2A-Conversation-Id", " conv_1"),
            ("AUTHENTICATION-RESULTS", " (forged)\r\n\tMX.TEST 1 ; dmarc=pass"),
            ("X-E2A-Auth-Signature", " 00"),
        ];
        let names = |d: Vec<Deletion>| d.into_iter().map(|d| (d.name, d.index)).collect::<Vec<_>>();
        assert_eq!(
            names(deletions(&h, "mx.test", false)),
            vec![
                ("X-E2A-Auth-Signature".to_owned(), 1),
                ("AUTHENTICATION-RESULTS".to_owned(), 3),
                ("X-E2A-Conversation-Id".to_owned(), 1),
                ("x-e2a-auth-verified".to_owned(), 2),
                ("Authentication-Results".to_owned(), 1),
                ("X-E2A-AUTH-Verified".to_owned(), 1),
            ]
        );
        let originating = names(deletions(&h, "mx.test", true));
        assert!(!originating.iter().any(|(n, _)| n == "X-E2A-Conversation-Id"));
        assert_eq!(originating.len(), 5);
    }

    #[test]
    fn reads_authserv_ids() {
        assert_eq!(authserv_id_of(b" mx.test; spf=pass").as_deref(), Some("mx.test"));
        assert_eq!(authserv_id_of(b"mx.test 1; none").as_deref(), Some("mx.test"));
        assert_eq!(authserv_id_of(b" (c) mx.test").as_deref(), Some("mx.test"));
        assert_eq!(authserv_id_of(b" ; x"), None);
    }

    #[test]
    fn formats_authentication_results_safely() {
        let auth = Authentication {
            spf: SpfResult {
                status: "pass".into(),
                domain: Some("example.org".into()),
                aligned: Some(true),
                detail: None,
            },
            dkim: vec![
                DkimResult {
                    status: "pass".into(),
                    domain: Some("example.org".into()),
                    selector: Some("sel1".into()),
                    aligned: Some(true),
                    detail: None,
                },
                DkimResult {
                    status: "fail".into(),
                    domain: Some("evil; dmarc=pass".into()),
                    selector: None,
                    aligned: None,
                    detail: Some("body hash (mismatch)".into()),
                },
            ],
            dmarc: DmarcResult {
                status: "pass".into(),
                domain: Some("example.org".into()),
                policy: Some("reject".into()),
                aligned_by: vec!["spf".into(), "dkim".into()],
                detail: None,
            },
        };
        assert_eq!(
            authentication_results("mx.test", &auth, SpfIdentity::MailFrom),
            "mx.test; spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org header.s=sel1; \
             dkim=fail (body hash mismatch) header.d=\"evil; dmarc=pass\"; dmarc=pass (p=reject) header.from=example.org"
        );
    }
}
